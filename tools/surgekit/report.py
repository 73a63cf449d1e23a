"""The demonstration's report: a CSV timeline, an SVG chart drawn by hand
and a Markdown summary whose numbers are computed from the timeline."""
import csv
import math
from xml.sax.saxutils import escape

COLUMNS = [
    "t_seconds", "time_utc", "queue", "running", "retry", "dead_list",
    "replicas", "replicas_desired", "cpu_cores", "cpu_request_cores",
    "submitted", "done", "succeeded", "failed", "dead",
    "queue_read", "queue_burn",   # queue is their sum; empty in reports made before the split
]
INT_COLUMNS = {"queue", "running", "retry", "dead_list", "replicas", "replicas_desired",
               "submitted", "done", "succeeded", "failed", "dead", "queue_read", "queue_burn"}


# ---------------------------------------------------------------- CSV

def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def write_csv(path, samples):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for s in samples:
            w.writerow([_cell(s.get(c)) for c in COLUMNS])


JOB_COLUMNS = ["id", "type", "state", "attempts", "worker", "latency_seconds"]


def write_jobs_csv(path, rows):
    """Every job of the burst and its final state: the list "jobs lost"
    is counted from, for anyone who wants to look a job up in Redis."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(JOB_COLUMNS)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in JOB_COLUMNS])


def read_jobs_csv(path):
    """The rows of jobs.csv; latency_seconds is a float or None."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        v = r.get("latency_seconds") or ""
        r["latency_seconds"] = float(v) if v else None
    return rows


def read_csv(path):
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            s = {}
            for c in COLUMNS:
                v = row.get(c, "")
                if c == "time_utc":
                    s[c] = v
                elif v == "":
                    s[c] = None
                elif c in INT_COLUMNS:
                    s[c] = int(float(v))
                else:
                    s[c] = float(v)
            out.append(s)
    return out


# ---------------------------------------------------------------- numbers

def _first(samples, pred, after=-1.0):
    for s in samples:
        if s["t_seconds"] > after and pred(s):
            return s
    return None


def percentile(sorted_values, p):
    """The nearest-rank p-th percentile (0 < p <= 100) of sorted values."""
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def read_latency(job_rows):
    """{n, p50, p99, max} in seconds of the burst's read jobs that finished:
    from each job's own created_at (the api accepted it) to its finished_at
    (its outcome was written); None without any."""
    lat = sorted(r["latency_seconds"] for r in job_rows
                 if r.get("type") == "read" and r.get("latency_seconds") is not None)
    if not lat:
        return None
    return {"n": len(lat), "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": lat[-1]}


def fmt_latency(lat):
    if not lat:
        return "no read finished"
    return (f"p50 {lat['p50']:.3f} s, p99 {lat['p99']:.3f} s, max {lat['max']:.3f} s "
            f"({lat['n']} reads)")


def summarize(samples, accepted, final_counts=None, drained_expected=True, read_latency=None):
    """The figures of the summary, computed from the timeline.

    accepted: jobs the api answered 202 to; final_counts: the last complete
    sweep of their states {succeeded, failed, dead, queued, running, missing};
    read_latency: what read_latency() made of jobs.csv."""
    if not samples:
        raise ValueError("no sample was recorded")
    first = samples[0]
    initial = first["replicas"]
    peak_r = max(samples, key=lambda s: (s["replicas"] or 0))
    peak_q = max(samples, key=lambda s: (s["queue"] or 0))
    cpu = [s for s in samples if s["cpu_cores"] is not None]
    peak_cpu = max(cpu, key=lambda s: s["cpu_cores"]) if cpu else None
    desired_up = _first(samples, lambda s: s["replicas_desired"] is not None
                        and s["replicas_desired"] > (initial or 0))
    scaled_up = _first(samples, lambda s: (s["replicas"] or 0) > (initial or 0))
    drained = _first(samples, lambda s: s["queue"] == 0 and s["done"] >= accepted,
                     after=peak_q["t_seconds"] - 1e-9) if accepted else None
    scale_down = None
    if drained and peak_r["replicas"] and peak_r["replicas"] > (initial or 0):
        scale_down = _first(samples, lambda s: (s["replicas"] or 0) < peak_r["replicas"],
                            after=peak_r["t_seconds"])
    fc = dict(final_counts or {})
    finished = fc.get("succeeded", 0) + fc.get("failed", 0) + fc.get("dead", 0)
    in_flight = fc.get("queued", 0) + fc.get("running", 0)
    # Lost: accepted with 202, then neither finished nor still queued or
    # running anywhere (the api no longer knows the job).
    lost = accepted - finished - in_flight
    util = None
    if peak_cpu and peak_cpu.get("cpu_request_cores"):
        util = peak_cpu["cpu_cores"] / peak_cpu["cpu_request_cores"]
    return {
        "duration": samples[-1]["t_seconds"],
        "samples": len(samples),
        "initial_replicas": initial,
        "peak_replicas": peak_r["replicas"],
        "peak_replicas_t": peak_r["t_seconds"],
        "final_replicas": samples[-1]["replicas"],
        "desired_up_t": desired_up["t_seconds"] if desired_up else None,
        "scale_up_t": scaled_up["t_seconds"] if scaled_up else None,
        "scale_up_replicas": scaled_up["replicas"] if scaled_up else None,
        "scale_down_t": scale_down["t_seconds"] if scale_down else None,
        "peak_queue": peak_q["queue"],
        "peak_queue_t": peak_q["t_seconds"],
        "drain_t": drained["t_seconds"] if drained else None,
        "peak_cpu_cores": peak_cpu["cpu_cores"] if peak_cpu else None,
        "peak_cpu_t": peak_cpu["t_seconds"] if peak_cpu else None,
        "peak_cpu_utilisation": util,
        "accepted": accepted,
        "succeeded": fc.get("succeeded", 0),
        "failed": fc.get("failed", 0),
        "dead": fc.get("dead", 0),
        "unfinished": in_flight,
        "missing": fc.get("missing", 0),
        "lost": lost,
        "read_latency": read_latency,
        "drained_expected": drained_expected,
    }


def fmt_t(t):
    if t is None:
        return "—"
    t = int(round(t))
    return f"{t // 60}:{t % 60:02d}" if t >= 60 else f"{t} s"


def summary_markdown(fig, meta):
    """meta: title, when, target, burst (text), files (list)."""
    L = [f"# {meta.get('title', 'surge scaling demonstration')}", ""]
    L += [f"- **When:** {meta.get('when', '')}", f"- **Where:** {meta.get('target', '')}",
          f"- **Load:** {meta.get('burst', '')}", ""]
    L += ["![queue depth, replicas and CPU over time](chart.svg)", "", "## Results", "",
          "| | |", "| --- | --- |"]
    if fig["scale_up_t"] is not None:
        up = (f"{fmt_t(fig['scale_up_t'])} after the burst "
              f"({fig['initial_replicas']} → {fig['scale_up_replicas']} replicas)")
    else:
        up = f"no scale-up seen: replicas stayed at {fig['initial_replicas']}"
    L.append(f"| Time to scale up | {up} |")
    if fig["desired_up_t"] is not None:
        L.append(f"| Autoscaler asked for more workers | {fmt_t(fig['desired_up_t'])} after the burst |")
    L.append(f"| Peak replicas | {fig['peak_replicas']} (at {fmt_t(fig['peak_replicas_t'])}) |")
    L.append(f"| Peak queue depth | {fig['peak_queue']} jobs waiting (at {fmt_t(fig['peak_queue_t'])}) |")
    if fig["peak_cpu_cores"] is not None:
        cpu = f"{fig['peak_cpu_cores']:.2f} cores (at {fmt_t(fig['peak_cpu_t'])})"
        if fig["peak_cpu_utilisation"] is not None:
            cpu += f", {fig['peak_cpu_utilisation'] * 100:.0f} % of the workers' CPU requests"
        L.append(f"| Peak worker CPU | {cpu} |")
    if fig["drain_t"] is not None:
        drain = f"{fmt_t(fig['drain_t'])}: queue empty and every job finished"
    else:
        drain = "not drained when the recording ended"
    L.append(f"| Time to drain | {drain} |")
    if fig["scale_down_t"] is not None:
        L.append(f"| Scale-down started | {fmt_t(fig['scale_down_t'])} after the burst |")
    L.append(f"| Jobs accepted (202) | {fig['accepted']} |")
    L.append(f"| Jobs succeeded / failed / dead | {fig['succeeded']} / {fig['failed']} / {fig['dead']} |")
    if fig["unfinished"]:
        L.append(f"| Jobs still queued or running at the end | {fig['unfinished']} |")
    L.append(f"| **Jobs lost** | **{fig['lost']}** |")
    L.append(f"| **Read latency during the burst** | **{fmt_latency(fig.get('read_latency'))}** |")
    L += ["", "## How these numbers are computed", "",
          "- Every figure comes from `timeline.csv` (one row per sample, "
          f"{fig['samples']} samples over {fmt_t(fig['duration'])}).",
          "- *Time to scale up*: the first sample with more worker replicas than at the burst.",
          "- *Time to drain*: the first sample after the queue's peak with the queue empty and every "
          "job of the burst in a final state.",
          "- *Jobs lost*: jobs accepted with 202 that are neither finished (succeeded, failed, dead) nor "
          "still queued or running, according to a final `GET /jobs/{id}` of every one of them "
          "(`jobs.csv` lists each job, its last state, attempts and worker).",
          "- *Read latency during the burst*: for each read job of the burst, from its own `created_at` "
          "(the api accepted it) to its `finished_at` (its result was written), as `GET /jobs/{id}` "
          "gives them (`latency_seconds` in `jobs.csv`); nearest-rank percentiles. Reads have a queue "
          "of their own, so they do not wait behind the burns.",
          ""]
    if meta.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    if meta.get("files"):
        L += ["## Files", ""] + [f"- `{f}`" for f in meta["files"]] + [""]
    return "\n".join(L)


# ---------------------------------------------------------------- SVG

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
C_QUEUE = "#2563eb"
C_REPLICAS = "#ea580c"
C_CPU = "#16a34a"
C_GRID = "#e5e7eb"
C_AXIS = "#6b7280"
C_TEXT = "#111827"


def nice_step(span, ticks=5):
    if span <= 0:
        return 1
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _num(v):
    return f"{v:.1f}".rstrip("0").rstrip(".")


def time_ticks(duration):
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 10:
            return step
    return 3600


def svg_chart(samples, fig, title, subtitle):
    W, H = 960, 620
    left, right = 78, 930
    top1, bot1 = 118, 318      # panel 1: the queue
    top2, bot2 = 378, 558      # panel 2: replicas and CPU
    t_max = max(samples[-1]["t_seconds"], 1e-9)
    x = lambda t: left + (right - left) * (t / t_max)

    q_vals = [s["queue"] or 0 for s in samples]
    q_top = max(max(q_vals), 1)
    q_step = nice_step(q_top)
    q_max = q_step * math.ceil(q_top / q_step)
    yq = lambda v: bot1 - (bot1 - top1) * (v / q_max)

    r_vals = [s["replicas"] or 0 for s in samples]
    d_vals = [s["replicas_desired"] for s in samples]
    c_vals = [s["cpu_cores"] for s in samples]
    creq = [s["cpu_request_cores"] for s in samples]
    tops = r_vals + [v for v in d_vals if v is not None] + [v for v in c_vals if v is not None] \
        + [v for v in creq if v is not None]
    r_top = max(max(tops), 1)
    r_step = nice_step(r_top, 4)
    r_max = r_step * math.ceil(r_top / r_step)
    if r_max <= r_top:  # headroom: the top line never sits on the frame
        r_max += r_step
    yr = lambda v: bot2 - (bot2 - top2) * (v / r_max)

    o = []
    a = o.append
    a(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
      f'font-family="{FONT}" font-size="13">')
    a(f"<title>{escape(title)}</title>")
    a(f"<desc>{escape(subtitle)}</desc>")
    a(f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>')
    a(f'<text x="{left}" y="36" font-size="20" font-weight="bold" fill="{C_TEXT}">{escape(title)}</text>')
    a(f'<text x="{left}" y="58" font-size="13" fill="{C_AXIS}">{escape(subtitle)}</text>')

    # time grid (both panels)
    step = time_ticks(t_max)
    t = 0
    while t <= t_max + 1e-9:
        xx = x(t)
        for (pt, pb) in ((top1, bot1), (top2, bot2)):
            a(f'<line x1="{xx:.1f}" y1="{pt}" x2="{xx:.1f}" y2="{pb}" stroke="{C_GRID}"/>')
        a(f'<text x="{xx:.1f}" y="{bot2 + 20}" text-anchor="middle" fill="{C_AXIS}">{fmt_t(t) if t else "0"}</text>')
        t += step
    a(f'<text x="{(left + right) / 2:.0f}" y="{bot2 + 44}" text-anchor="middle" fill="{C_AXIS}">'
      f'time since the burst</text>')

    # panel 1 axis
    v = 0
    while v <= q_max + 1e-9:
        a(f'<line x1="{left}" y1="{yq(v):.1f}" x2="{right}" y2="{yq(v):.1f}" stroke="{C_GRID}"/>')
        a(f'<text x="{left - 8}" y="{yq(v) + 4:.1f}" text-anchor="end" fill="{C_AXIS}">{_num(v)}</text>')
        v += q_step
    a(f'<text x="{left}" y="{top1 - 28}" font-size="15" font-weight="bold" fill="{C_TEXT}">Jobs waiting in the queue</text>')

    # panel 2 axis
    v = 0
    while v <= r_max + 1e-9:
        a(f'<line x1="{left}" y1="{yr(v):.1f}" x2="{right}" y2="{yr(v):.1f}" stroke="{C_GRID}"/>')
        a(f'<text x="{left - 8}" y="{yr(v) + 4:.1f}" text-anchor="end" fill="{C_AXIS}">{_num(v)}</text>')
        v += r_step
    a(f'<text x="{left}" y="{top2 - 28}" font-size="15" font-weight="bold" fill="{C_TEXT}">Worker replicas and CPU (cores)</text>')

    for (pt, pb) in ((top1, bot1), (top2, bot2)):
        a(f'<line x1="{left}" y1="{pb}" x2="{right}" y2="{pb}" stroke="{C_AXIS}"/>')
        a(f'<line x1="{left}" y1="{pt}" x2="{left}" y2="{pb}" stroke="{C_AXIS}"/>')

    def values_attr(vals):
        return ",".join("" if v is None else _num(float(v)) for v in vals)

    # queue: filled area + line
    pts = [(x(s["t_seconds"]), yq(q)) for s, q in zip(samples, q_vals)]
    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
    area = f"M{pts[0][0]:.1f},{bot1} L" + " L".join(f"{px:.1f},{py:.1f}" for px, py in pts) + \
        f" L{pts[-1][0]:.1f},{bot1} Z"
    a(f'<path d="{area}" fill="{C_QUEUE}" fill-opacity="0.15" stroke="none"/>')
    a(f'<polyline id="series-queue" data-values="{values_attr(q_vals)}" points="{line}" fill="none" '
      f'stroke="{C_QUEUE}" stroke-width="2.5" stroke-linejoin="round"/>')

    def step_points(vals):
        out, prev = [], None
        for s, v in zip(samples, vals):
            if v is None:
                continue
            px = x(s["t_seconds"])
            if prev is not None:
                out.append(f"{px:.1f},{yr(prev):.1f}")
            out.append(f"{px:.1f},{yr(v):.1f}")
            prev = v
        return " ".join(out)

    if any(v is not None for v in creq):
        a(f'<polyline id="series-cpu-request" data-values="{values_attr(creq)}" points="{step_points(creq)}" '
          f'fill="none" stroke="{C_CPU}" stroke-width="1.5" stroke-dasharray="2,4" opacity="0.8"/>')
    if any(v is not None for v in d_vals):
        a(f'<polyline id="series-desired" data-values="{values_attr(d_vals)}" points="{step_points(d_vals)}" '
          f'fill="none" stroke="{C_REPLICAS}" stroke-width="2" stroke-dasharray="7,5"/>')
    a(f'<polyline id="series-replicas" data-values="{values_attr(r_vals)}" points="{step_points(r_vals)}" '
      f'fill="none" stroke="{C_REPLICAS}" stroke-width="3" stroke-linejoin="round"/>')
    cpts = " ".join(f"{x(s['t_seconds']):.1f},{yr(c):.1f}" for s, c in zip(samples, c_vals) if c is not None)
    a(f'<polyline id="series-cpu" data-values="{values_attr(c_vals)}" points="{cpts}" fill="none" '
      f'stroke="{C_CPU}" stroke-width="2" stroke-linejoin="round"/>')

    # markers
    marks = []
    if fig.get("scale_up_t") is not None:
        marks.append((fig["scale_up_t"], "scale-up", C_REPLICAS))
    if fig.get("drain_t") is not None:
        marks.append((fig["drain_t"], "drained", C_QUEUE))
    for i, (mt, label, color) in enumerate(marks):
        xx = x(mt)
        for (pt, pb) in ((top1 - 6, bot1), (top2, bot2)):
            a(f'<line class="marker" x1="{xx:.1f}" y1="{pt}" x2="{xx:.1f}" y2="{pb}" stroke="{color}" '
              f'stroke-width="1.5" stroke-dasharray="4,4"/>')
        anchor = "end" if xx > right - 120 else "start"
        dx = -5 if anchor == "end" else 5
        a(f'<text x="{xx + dx:.1f}" y="{top1 + 14 + 16 * i}" text-anchor="{anchor}" font-size="12" '
          f'fill="{color}" font-weight="bold">{escape(label)} {fmt_t(mt)}</text>')

    # legends
    def legend(items, y):
        xx = right
        parts = []
        for label, color, dash in reversed(items):
            w = 7.2 * len(label) + 34
            xx -= w
            d = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(f'<line x1="{xx:.0f}" y1="{y - 4}" x2="{xx + 22:.0f}" y2="{y - 4}" stroke="{color}" stroke-width="3"{d}/>'
                         f'<text x="{xx + 28:.0f}" y="{y}" fill="{C_TEXT}">{escape(label)}</text>')
        a("".join(parts))

    legend([("queue depth", C_QUEUE, None)], top1 - 28)
    items = [("replicas", C_REPLICAS, None)]
    if any(v is not None for v in d_vals):
        items.append(("desired", C_REPLICAS, "7,5"))
    items.append(("CPU used", C_CPU, None))
    if any(v is not None for v in creq):
        items.append(("CPU requested", C_CPU, "2,4"))
    legend(items, top2 - 28)
    a("</svg>")
    return "\n".join(o) + "\n"

"""Open-loop load: jobs submitted at a steady rate by a few threads, each
with its own keep-alive connection, bounded by a duration and a count."""
import random
import threading
import time

from .api import ApiError, SurgeApi


class LoadResult:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.accepted = {"read": 0, "burn": 0}
        self.errors = {}        # "HTTP 503 unavailable" / "connection: ..." -> count
        self.latencies = []

    def add_ok(self, job_type, seconds):
        with self.lock:
            self.sent += 1
            self.accepted[job_type] += 1
            self.latencies.append(seconds)

    def add_err(self, what):
        with self.lock:
            self.sent += 1
            self.errors[what] = self.errors.get(what, 0) + 1

    def percentile(self, q):
        with self.lock:
            lat = sorted(self.latencies)
        if not lat:
            return None
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    @property
    def ok(self):
        return sum(self.accepted.values())

    @property
    def failed(self):
        return sum(self.errors.values())


def run_load(api_url, rate, duration, count, burn_share, burn_seconds, item_max, threads=4,
             seed=None, progress=None, stop=None):
    """Submits min(count, rate*duration) jobs at `rate` per second; a share
    burn_share of them are burn jobs of burn_seconds, the rest reads of a
    random item in 1..item_max. progress(result, elapsed) is called about
    every 0.5 s, and once more with a fourth argument True at the end.
    Returns the LoadResult."""
    total = min(count, int(rate * duration)) if count else int(rate * duration)
    res = LoadResult()
    rnd = random.Random(seed)
    plan = []
    for _ in range(total):
        if rnd.random() < burn_share:
            plan.append(("burn", {"seconds": burn_seconds}))
        else:
            plan.append(("read", {"item_id": rnd.randint(1, item_max)}))
    next_index = [0]
    idx_lock = threading.Lock()
    stop = stop or threading.Event()
    t0 = time.monotonic()

    def worker():
        api = SurgeApi(api_url, timeout=10)
        try:
            while not stop.is_set():
                with idx_lock:
                    i = next_index[0]
                    if i >= total:
                        return
                    next_index[0] += 1
                due = t0 + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    if stop.wait(delay):
                        return
                if time.monotonic() - t0 > duration + 1.0:
                    return
                job_type, params = plan[i]
                started = time.monotonic()
                try:
                    api.submit(job_type, params)
                    res.add_ok(job_type, time.monotonic() - started)
                except ApiError as e:
                    code = (e.body or {}).get("error", {}).get("code", "") if isinstance(e.body, dict) else ""
                    res.add_err(f"HTTP {e.status} {code}".strip())
                except ConnectionError as e:
                    res.add_err(f"connection: {e}")
        finally:
            api.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(threads, total or 1)))]
    for t in ts:
        t.start()
    try:
        while any(t.is_alive() for t in ts):
            for t in ts:
                t.join(0.5 / len(ts))
            if progress:
                progress(res, time.monotonic() - t0, total)
    except KeyboardInterrupt:
        stop.set()
        for t in ts:
            t.join(5)
        raise
    if progress:
        progress(res, time.monotonic() - t0, total, True)
    return res

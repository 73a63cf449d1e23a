"""Just enough PromQL reading for the tests: the vector selectors of an
expression, the expressions of the dashboard and of the rules, and the
substitution of Grafana's template variables."""
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring/grafana/surge-dashboard.json"
RULES = ROOT / "monitoring/rules/surge.rules.yml"

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
               "bottomk", "topk", "quantile"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Metrics that come from outside surge: kube-state-metrics, cAdvisor, KEDA.
EXTERNAL_PREFIXES = ("kube_", "container_", "keda_")
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# What the live test puts in place of Grafana's variables.
TEMPLATE_VALUES = {
    "${datasource}": "",
    "$__rate_interval": "30s",
    "$__range": "2m",
    "$namespace": "surge",
    "$queue_target": "2",
}


def substitute(expr):
    for k in sorted(TEMPLATE_VALUES, key=len, reverse=True):
        expr = expr.replace(k, TEMPLATE_VALUES[k])
    assert "$" not in expr, f"unknown template variable left in {expr!r}"
    return expr


def _skip_string(s, i):
    q = s[i]
    i += 1
    while i < len(s) and s[i] != q:
        i += 2 if s[i] == "\\" else 1
    return i + 1


def _skip_group(s, i, open_ch, close_ch):
    depth = 0
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_ch}{close_ch} in {s!r}")


def selectors(expr):
    """The vector selectors of expr, as written: ['surge_queue_depth{namespace=~"surge"}', 'up', ...]."""
    out = []
    s = expr
    i = 0
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c == "[":
            i = _skip_group(s, i, "[", "]")
            continue
        if c == "{":  # a selector without a name: {__name__=...}
            j = _skip_group(s, i, "{", "}")
            out.append(s[i:j])
            i = j
            continue
        if c.isdigit() or (c == "." and i + 1 < len(s) and s[i + 1].isdigit()):
            j = i
            while j < len(s) and (s[j].isalnum() or s[j] in ".+-" and s[j - 1] in "eE"):
                j += 1
            i = max(j, i + 1)
            continue
        m = IDENT.match(s, i)
        if not m:
            i += 1
            continue
        name = m.group(0)
        j = m.end()
        k = j
        while k < len(s) and s[k] in " \t\n":
            k += 1
        if name.lower() in LABEL_LIST_KEYWORDS and k < len(s) and s[k] == "(":
            i = _skip_group(s, k, "(", ")")
            continue
        if k < len(s) and s[k] == "(":
            i = k  # a function or an aggregation
            continue
        if name in AGGREGATORS and re.match(r"(by|without)\s*\(", s[k:]):
            i = k  # sum by (...) (...)
            continue
        if name.lower() in KEYWORDS:
            i = j
            continue
        if k < len(s) and s[k] == "{":
            end = _skip_group(s, k, "{", "}")
            out.append(name + s[k:end])
            i = end
        else:
            out.append(name)
            i = j
    return out


def metric_name(selector):
    m = IDENT.match(selector)
    if m:
        return m.group(0)
    m = re.search(r'__name__\s*=\s*"([^"]+)"', selector)
    return m.group(1) if m else None


def is_external(expr):
    return any(metric_name(sel) and metric_name(sel).startswith(EXTERNAL_PREFIXES)
               for sel in selectors(expr))


def dashboard():
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(dash=None):
    dash = dash or dashboard()
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs(dash=None):
    """[(panel title, expr as written)] of every query of the dashboard."""
    out = []
    for p in dashboard_panels(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((p["title"], t["expr"]))
    for v in (dash or dashboard())["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict) and q.get("query", "").startswith("label_values("):
            inner = q["query"][len("label_values("):-1].rsplit(",", 1)[0]
            out.append((f"variable {v['name']}", inner))
    return out


def rules():
    return yaml.safe_load(RULES.read_text())


def rule_exprs(doc=None):
    """[(kind, name, expr)] of every rule: kind is 'record' or 'alert'."""
    out = []
    for g in (doc or rules())["groups"]:
        for r in g["rules"]:
            kind = "record" if "record" in r else "alert"
            out.append((kind, r[kind], r["expr"]))
    return out

"""test_grafana.py - the Grafana provisioning and dashboard JSON are sound.

- every PromQL query of deploy/grafana/dashboards/*.json names only metrics of
  the known list (the original system's names plus the operator series beside them);
- every query is valid PromQL (promtool check rules parses it);
- the seed's six panels are there; panels use the provisioned datasource uid;
- the provisioning files point at the paths docker-compose mounts;
- webhook deliveries are not bot executions: every bot panel leaves out the
  broker's built-in type "webhook" (bot_type, queue_name, semaphore_name),
  and webhook panels show the deliveries, the webhook queue and its limit
  apart, so the limit of 10000 is never drawn beside 3, 5 and 10.
"""
import glob
import json
import os
import re
import subprocess
import tempfile

import harness
from harness import check

import yaml

ROOT = harness.ROOT
GRAFANA = os.path.join(ROOT, "deploy", "grafana")

# Metric families our services export: the original system's names, plus every family a
# service registers in its C source (bm_metrics_counter/gauge/histogram with
# a literal name).  Histograms count with their _bucket/_sum/_count series.
# test_prometheus.py checks the same queries against a live stack.
ISSUE6 = {
    "bot_executions_total", "bot_execution_duration_seconds", "webhook_deliveries_total",
    "webhook_delivery_duration_seconds", "queue_size", "semaphore_usage", "semaphore_waiting",
}
ISSUE6_HISTOGRAMS = {"bot_execution_duration_seconds", "webhook_delivery_duration_seconds"}


def registered_metrics():
    """{name: kind} for every family registered in the services' sources."""
    found = {}
    pattern = re.compile(r'bm_metrics_(counter|gauge|histogram)\s*\(\s*[^,()]+,\s*"([A-Za-z_:][A-Za-z0-9_:]*)"')
    for comp in ("broker", "gateway", "webhook", "mock", "workers"):
        for path in glob.glob(os.path.join(ROOT, comp, "*.c")):
            for kind, name in pattern.findall(open(path, errors="replace").read()):
                found[name] = kind
    return found


REGISTERED = registered_metrics()
KNOWN = ISSUE6 | set(REGISTERED)
HISTOGRAMS = ISSUE6_HISTOGRAMS | {n for n, k in REGISTERED.items() if k == "histogram"}

SEED_PANELS = {
    "total executions": "bot_executions_total",
    "execution rate by type": "bot_executions_total",
    "duration": "bot_execution_duration_seconds",
    "webhook delivery status": "webhook_deliveries_total",
    "queue size": "queue_size",
    "semaphore usage": "semaphore_usage",
}

PROMQL_WORDS = {
    # aggregations, functions and keywords that look like identifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "abs", "ceil", "floor", "round", "clamp_min", "clamp_max",
    "label_replace", "label_join", "time", "vector", "scalar", "sort", "sort_desc",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "last_over_time",
    "absent", "changes", "resets", "inf", "nan",
}


def metric_names(expr):
    """The metric names a PromQL expression selects (simple lexical parse)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    e = re.sub(r"\{[^}]*\}", "", e)                         # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                        # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):                            # a function call
            if word not in PROMQL_WORDS:
                raise harness.TestFailure("FAILED: unknown function %s in %r" % (word, expr))
            continue
        if word.lower() in PROMQL_WORDS or word.startswith("$"):
            continue
        names.add(word)
    return names


def family(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[:-len(suffix)] in HISTOGRAMS:
            return name[:-len(suffix)]
    return name


def promql_valid(exprs):
    """Run promtool check rules over the expressions; returns (rc, output)."""
    rules = {"groups": [{"name": "grafana", "rules": [
        {"record": "grafana:query:%d" % i, "expr": e.replace("$__rate_interval", "1m")
                                                   .replace("$__interval", "1m")
                                                   .replace("$__range", "1h")}
        for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
        path = f.name
    try:
        out = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True, timeout=30)
        return out.returncode, out.stdout + out.stderr
    finally:
        os.unlink(path)


# Series the broker labels by bot type, and the label each one uses.
BOT_LABELS = {"bot_executions_total": "bot_type", "bot_execution_duration_seconds": "bot_type",
              "job_wait_seconds": "bot_type", "broker_jobs_submitted_total": "bot_type",
              "queue_size": "queue_name", "semaphore_usage": "semaphore_name",
              "semaphore_waiting": "semaphore_name", "semaphore_limit": "semaphore_name"}


def webhook_matcher(expr, name):
    """The matcher a query puts on the webhook type for metric NAME: '!=',
    '=' or None (no matcher on the label that names the bot type)."""
    label = BOT_LABELS[name]
    m = re.search(r"\b%s(?:_bucket|_sum|_count)?\{([^}]*)\}" % re.escape(name), expr)
    if not m:
        return None
    k = re.search(r'\b%s\s*(!=|=)\s*"webhook"' % label, m.group(1))
    return k.group(1) if k else None


def check_webhooks_apart(files):
    check(webhook_matcher('sum(queue_size{job="orchestrator",queue_name!="webhook"})', "queue_size") == "!=",
          "the matcher parser finds queue_name!=\"webhook\"")
    check(webhook_matcher('sum(semaphore_limit{job="orchestrator"})', "semaphore_limit") is None,
          "the matcher parser sees a query without one")
    hook_delivery = hook_limit = False
    for path in files:
        for p in json.load(open(path))["panels"]:
            hooks = "webhook" in p["title"].lower()
            for t in p["targets"]:
                for n in metric_names(t["expr"]):
                    n = family(n)
                    if n == "webhook_deliveries_total" and hooks:
                        hook_delivery = True
                    if n not in BOT_LABELS:
                        continue
                    op = webhook_matcher(t["expr"], n)
                    want = "=" if hooks else "!="
                    check(op == want, "panel %r: %s has %s%s\"webhook\"" % (p["title"], n, BOT_LABELS[n], want),
                          t["expr"])
                    if hooks and n == "semaphore_limit":
                        hook_limit = True
    check(hook_delivery, "a webhook panel shows webhook_deliveries_total")
    check(hook_limit, "a webhook panel shows the webhook limit (semaphore_limit) apart")


def test():
    harness.log("metric families registered in sources: %d" % len(REGISTERED))
    check("bot_executions_total" in REGISTERED or not os.path.exists(os.path.join(ROOT, "broker", "bm_broker.c")),
          "the source scan finds the broker's bot_executions_total")
    # The parser itself must see what it should (so this test can fail)
    check(metric_names('sum by (le, bot_type) (rate(x_bucket{job="b",a=~"c{"}[5m]))') == {"x_bucket"},
          "query parser finds x_bucket only")
    check(metric_names("sum(rate(foo_total[1m])) / on (a) bar") == {"foo_total", "bar"},
          "query parser finds both operands")

    # Provisioning
    ds = yaml.safe_load(open(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yml")))
    uids = {d["uid"] for d in ds["datasources"]}
    check(any(d["type"] == "prometheus" and d["url"].startswith("http://prometheus:9090")
              for d in ds["datasources"]), "datasource points at the compose Prometheus", ds)
    prov = yaml.safe_load(open(os.path.join(GRAFANA, "provisioning", "dashboards", "botmesh.yml")))
    paths = [p["options"]["path"] for p in prov["providers"]]
    compose = open(os.path.join(ROOT, "docker-compose.yml")).read()
    for p in paths:
        check(re.search(r"\./deploy/grafana/dashboards:%s\b" % re.escape(p), compose),
              "compose mounts deploy/grafana/dashboards at %s" % p)
    check("./deploy/grafana/provisioning:/etc/grafana/provisioning" in compose, "compose mounts provisioning")

    files = glob.glob(os.path.join(GRAFANA, "dashboards", "*.json"))
    check(files, "a dashboard JSON exists")
    exprs = []
    for path in files:
        dash = json.load(open(path))
        check(dash.get("uid") and dash.get("title"), "%s has uid and title" % path)
        ids = [p["id"] for p in dash["panels"]]
        check(len(ids) == len(set(ids)), "panel ids are unique", ids)
        titles = {}
        for p in dash["panels"]:
            check(p["datasource"]["uid"] in uids, "panel %r uses a provisioned datasource" % p["title"], p["datasource"])
            check(p.get("targets"), "panel %r has queries" % p["title"])
            used = set()
            for target in p["targets"]:
                expr = target["expr"]
                exprs.append(expr)
                names = metric_names(expr)
                check(names, "query names a metric", expr)
                for n in names:
                    check(family(n) in KNOWN, "metric %s is one we export" % n, expr)
                used |= {family(n) for n in names}
            titles[p["title"].lower()] = used
        for want, metric in SEED_PANELS.items():
            match = [t for t in titles if want in t]
            check(match and any(metric in titles[t] for t in match),
                  "seed panel %r shows %s" % (want, metric), sorted(titles))
    check_webhooks_apart(files)
    # Negative control: an unknown metric is caught
    check(any(family(n) not in KNOWN for n in metric_names("rate(http_requests_total[1m])")),
          "an unknown metric is noticed")

    rc, out = promql_valid(exprs)
    check(rc == 0, "promtool parses all %d queries" % len(exprs), out)
    rc, out = promql_valid(["sum(rate(x[1m]) by"])
    check(rc != 0, "promtool rejects a broken query")


if __name__ == "__main__":
    harness.main(test)

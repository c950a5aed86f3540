"""test_prometheus.py - the real prometheus binary scrapes a running stack.

redis + broker + a Python worker + the gateway (+ webhook manager and mock
when they are built).  deploy/prometheus.yml is rewritten only in its
targets (ephemeral ports) and intervals; Prometheus runs for a few seconds
and its HTTP API must show bot_executions_total and semaphore_usage samples
with the right values, every target up, and every metric the Grafana
dashboard queries.  Each service's /metrics also passes `promtool check
metrics`, and before any event has each known label value of its
counters at 0 (rejection reasons, webhook answers...), so rate() and
increase() see the first event; no metric family is exported by two
services.

deploy/alerts.yml loads, evaluates, and stays silent on the healthy stack;
then incidents are staged (jobs of a type no worker serves, its queue at
its bound, queue_full rejections, the webhook manager stopped) and the rules
for them must go pending (their `for` is minutes: promtool test rules in
alerts_test.yml covers firing).
"""
import glob
import json
import os
import re
import subprocess
import sys
import urllib.parse

import yaml

import harness
from harness import check, log, wait_until

import test_grafana

HERE = os.path.dirname(os.path.abspath(__file__))


def promtool_metrics(text):
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def test():
    with harness.Stack("prometheus") as s:
        s.redis()
        # node: a known bot type no worker serves here, with a small bound
        broker = s.broker(env={"METRICS_SNAPSHOT_INTERVAL": "1", "MAX_QUEUE_NODE": "3"})
        s.spawn("pyworker", [sys.executable, os.path.join(HERE, "pyworker.py"), s.endpoint, "python", "2"])
        s.wait_workers(1, "python")
        gw_proc = s.spawn("gateway", [s.bin("botmesh-gateway")],
                          {"API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1",
                           "BROKER_ENDPOINT": s.endpoint, "GATEWAY_THREADS": "16",
                           "WEBHOOK_ALLOW_PRIVATE": "1"})   # as the webhook manager: the mock is local
        gw_port = gw_proc.listening("http")
        gw = "http://127.0.0.1:%d" % gw_port
        wait_until(lambda: harness.http("GET", gw + "/health")[0] == 200, 15, "gateway /health")

        # Services and their /metrics addresses, by Prometheus job name (the
        # broker's is orchestrator, its Compose service)
        targets = {"orchestrator": "127.0.0.1:%d" % broker.metrics_port, "api-gateway": "127.0.0.1:%d" % gw_port}
        procs = {}
        for job, binary, env in (
                ("webhook-manager", "botmesh-webhook",
                 {"WEBHOOK_MANAGER_PORT": "{port}", "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
                  "WEBHOOK_ALLOW_PRIVATE": "1", "BROKER_ENDPOINT": s.endpoint}),
                ("mock-webhook", "botmesh-mock",
                 {"MOCK_WEBHOOK_PORT": "{port}", "MOCK_LISTEN_ADDR": "127.0.0.1"})):
            if not os.path.exists(s.bin(binary)):
                log("%s not built: its job is left out" % binary)
                continue
            proc = s.spawn(job, [s.bin(binary)], {k: v.replace("{port}", "0") for k, v in env.items()})
            port = proc.listening("http")
            procs[job] = proc
            wait_until(lambda: harness.http("GET", "http://127.0.0.1:%d/health" % port)[0] == 200,
                       15, "%s /health" % job)
            targets[job] = "127.0.0.1:%d" % port
        webhooks = "webhook-manager" in targets and "mock-webhook" in targets
        # A botmesh-worker with its metrics port (warm-process series), for
        # a type the jobs below do not use
        worker = s.worker("--type", "java", "--noop", env={"WORKER_METRICS_PORT": "-1"})
        targets["workers"] = "127.0.0.1:%d" % worker.listening("metrics")
        s.wait_workers(1, "java")

        # Before any event: counters whose label values are a closed set are
        # there at 0, so rate() and increase() see their first event (a
        # series that appears at 1 has no increase).
        at_start = {"orchestrator": ['broker_jobs_rejected_total{reason="queue_full"}',
                               'broker_jobs_rejected_total{reason="store_unavailable"}',
                               'broker_jobs_rejected_total{reason="unknown_bot_type"}',
                               'broker_frames_rejected_total{reason="bad_header"}',
                               'broker_frames_rejected_total{reason="not_owner"}',
                               'broker_jobs_requeued_total{reason="worker_lost"}',
                               'broker_messages_dropped_total{reason="peer_gone"}',
                               'broker_workers_replaced_total{reason="duplicate_name"}',
                               'bot_limit_kills_total{bot_type="python",limit="memory"}',
                               'bot_executions_total{bot_type="python",status="failed"}'],
                    "webhook-manager": ['webhook_responses_total{code="200"}',
                                        'webhook_responses_total{code="503"}',
                                        'webhook_responses_total{code="none"}',
                                        'webhook_redeliver_requests_total{result="accepted"}'],
                    "mock-webhook": ['mock_webhook_deliveries_total{status="200"}',
                                     'mock_webhook_deliveries_total{status="503"}',
                                     'mock_webhook_deliveries_total{status="dropped"}']}
        families = {}
        for job, target in sorted(targets.items()):
            _, _, text = harness.http("GET", "http://%s/metrics" % target)
            samples = dict(line.rsplit(" ", 1) for line in str(text).splitlines()
                           if line and not line.startswith("#"))
            missing = [name for name in at_start.get(job, []) if samples.get(name) != "0"]
            check(not missing, "%s /metrics at start: each known reason's series at 0" % job, missing)
            families[job] = {line.split()[2] for line in str(text).splitlines() if line.startswith("# TYPE ")}
        # Each service exposes only its own families: a sum() over every job
        # counts each event once.
        shared = {f: [j for j in families if f in families[j]] for f in set().union(*families.values())}
        shared = {f: jobs for f, jobs in shared.items() if len(jobs) > 1}
        check(not shared, "no metric family is exported by two services", shared)

        # Work, a rejection and a bad frame, so labelled families have series
        for i in range(3):
            status, _, reply = harness.http("POST", gw + "/invoke", {"botType": "python", "payload": {"n": i}})
            check(status in (200, 201, 202), "invoke accepted", status, reply)
        status, _, reply = harness.http("POST", gw + "/invoke", {"botType": "python", "payload": {"fail": "x"}})
        check(status in (200, 201, 202), "invoke (failing) accepted", status, reply)
        if webhooks:
            status, _, reply = harness.http("POST", gw + "/invoke", {
                "botType": "python", "payload": {"n": 9},
                "webhookUrl": "http://%s/hook" % targets["mock-webhook"]})
            check(status in (200, 201, 202), "invoke with a webhook accepted", status, reply)
        c = s.client()
        try:
            cmd, reply = c.try_submit("no-such-type", {})
            check(cmd == harness.REJECTED, "unknown bot type rejected", reply)
            c.sock.send_multipart([harness.CLIENT, b"\x7f", b"\xc1"])       # unknown command, bad msgpack
        finally:
            c.close()
        completed = 4 if webhooks else 3
        wait_until(lambda: harness.http("GET", gw + "/stats")[2]["types"]["python"]["completed"] == completed, 20,
                   "%d python jobs to complete" % completed)

        # Every service's exposition is valid
        for job, target in sorted(targets.items()):
            status, headers, text = harness.http("GET", "http://%s/metrics" % target)
            check(status == 200, "%s /metrics answers 200" % job, status)
            ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
            check(ctype.startswith("text/plain") and "version=0.0.4" in ctype, "%s content type" % job, ctype)
            rc, out = promtool_metrics(text)
            check(rc == 0, "%s /metrics passes promtool check metrics" % job, out)

        # deploy/prometheus.yml with our ports and a 1 s scrape interval
        config = yaml.safe_load(open(os.path.join(harness.ROOT, "deploy", "prometheus.yml")))
        prom_port = harness.free_port()
        config["global"]["scrape_interval"] = "1s"
        config["global"]["scrape_timeout"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        jobs = []
        for sc in config["scrape_configs"]:
            name = sc["job_name"]
            if name == "prometheus":
                sc["static_configs"] = [{"targets": ["127.0.0.1:%d" % prom_port]}]
            elif name in targets:
                sc["static_configs"] = [{"targets": [targets[name]]}]
            else:
                continue
            jobs.append(sc)
        # The job names are the Compose service names, the seed's (the
        # broker is the orchestrator service).
        check({"orchestrator", "api-gateway", "workers", "webhook-manager", "mock-webhook"}
              == {sc["job_name"] for sc in config["scrape_configs"]} - {"prometheus"},
              "deploy/prometheus.yml scrapes orchestrator (the broker), api-gateway, workers, "
              "webhook-manager and mock-webhook", [sc["job_name"] for sc in config["scrape_configs"]])
        config["scrape_configs"] = jobs
        # deploy/alerts.yml, where the Compose file mounts it
        check(config.get("rule_files") == ["alerts.yml"], "deploy/prometheus.yml loads the alerts",
              config.get("rule_files"))
        config["rule_files"] = [os.path.join(harness.ROOT, "deploy", "alerts.yml")]
        path = os.path.join(s.dir, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        out = subprocess.run(["promtool", "check", "config", path], capture_output=True, text=True, timeout=30)
        check(out.returncode == 0, "promtool check config (test copy)", out.stdout + out.stderr)

        s.spawn("prometheus", ["prometheus", "--config.file=" + path,
                               "--storage.tsdb.path=" + os.path.join(s.dir, "prom-data"),
                               "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"])
        api = "http://127.0.0.1:%d/api/v1/" % prom_port

        def query(q):
            status, _, body = harness.http("GET", api + "query?query=" + urllib.parse.quote(q))
            if status != 200 or body.get("status") != "success":
                return None
            return body["data"]["result"]

        def all_up():
            status, _, body = harness.http("GET", api + "targets")
            if status != 200:
                return None
            active = body["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            return health if len(active) == len(jobs) and all(h == "up" for h in health.values()) else None
        health = wait_until(all_up, 30, "every target up in Prometheus", interval=0.25)
        log("targets", health)

        # The alerting rules load, evaluate without error, and none fires on
        # this healthy stack; the series they name are ones Prometheus scraped
        # here (a misspelt name would make a rule that never fires).
        def rules():
            status, _, body = harness.http("GET", api + "rules")
            if status != 200:
                return None
            got = [r for g in body["data"]["groups"] for r in g["rules"]]
            return got if got and all(r.get("lastEvaluation", "").startswith("2") and
                                      not r["lastEvaluation"].startswith("0001") for r in got) else None
        loaded = wait_until(rules, 20, "the alerting rules evaluated", interval=0.25)
        check(len(loaded) >= 10 and all(r["health"] == "ok" for r in loaded),
              "deploy/alerts.yml: every rule loaded and evaluates", [(r["name"], r["health"]) for r in loaded])
        firing = [r["name"] for r in loaded if r["state"] != "inactive"]
        check(not firing, "no alert pending or firing on a healthy stack", firing)
        exprs = " ".join(r["query"] for r in loaded)
        named = set(re.findall(r"\b([a-z][a-z_]*_(?:total|up|leader|pending|connected|size|limit|workers))\b", exprs))
        named.discard("bot_init_failures_total")              # a worker's: no worker is scraped here
        scraped = {r["metric"]["__name__"] for r in query('group by (__name__) ({__name__=~".+"})') or []}
        check(len(named) >= 9 and named <= scraped, "every series the alerts name is exported",
              sorted(named - scraped), sorted(named))

        done = wait_until(lambda: query('bot_executions_total{job="orchestrator",bot_type="python",status="completed"}'),
                          20, "bot_executions_total samples", interval=0.25)
        check(float(done[0]["value"][1]) == completed, "bot_executions_total{python,completed} = %d" % completed, done)
        failed = query('bot_executions_total{job="orchestrator",bot_type="python",status="failed"}')
        check(failed and float(failed[0]["value"][1]) == 1, "bot_executions_total{python,failed} = 1", failed)
        usage = wait_until(lambda: query('semaphore_usage{job="orchestrator"}'), 10, "semaphore_usage samples", interval=0.25)
        types = {r["metric"]["semaphore_name"] for r in usage}
        check({"python", "node", "java"} <= types, "semaphore_usage for python, node, java", types)
        limit = query('semaphore_limit{job="orchestrator",semaphore_name="python"}')
        check(limit and float(limit[0]["value"][1]) == 5, "semaphore_limit{python} = 5", limit)

        if webhooks:
            hooks = wait_until(lambda: query('webhook_deliveries_total{job="webhook-manager",status="success"} > 0'),
                               20, "webhook_deliveries_total{success} samples", interval=0.25)
            check(float(hooks[0]["value"][1]) == 1, "one webhook delivered", hooks)

        # Every metric the Grafana dashboard queries exists in the scraped data
        names = set()
        for f in glob.glob(os.path.join(harness.ROOT, "deploy", "grafana", "dashboards", "*.json")):
            for p in json.load(open(f))["panels"]:
                for t in p.get("targets", []):
                    names |= test_grafana.metric_names(t["expr"])
        missing = []
        for name in sorted(names):
            if name.startswith("webhook_") and not webhooks:
                log("skipping %s: no webhook manager built" % name)
                continue
            if not query('count({__name__="%s"})' % name):
                missing.append(name)
        check(not missing, "every metric of the Grafana dashboard has samples (%d names)" % len(names), missing)

        # Worker counts: the webhook manager is no bot worker
        def value(q):
            r = query(q)
            return float(r[0]["value"][1]) if r else None
        check(value('broker_workers_connected{job="orchestrator"}') == 2,
              "broker_workers_connected = 2 (the Python and the Java worker; the webhook manager not counted)",
              query('broker_workers_connected'))
        check(value('broker_workers{job="orchestrator",bot_type="python"}') == 1, "broker_workers{python} = 1",
              query('broker_workers'))
        check(value('broker_workers{job="orchestrator",bot_type="node"}') == 0,
              "broker_workers{node} = 0 (present for a type no worker serves)", query('broker_workers'))
        if webhooks:
            check(value('broker_webhook_managers_connected{job="orchestrator"}') == 1,
                  "broker_webhook_managers_connected = 1", query('broker_webhook_managers_connected'))
        check(not query('broker_workers{bot_type="webhook"}'), "no broker_workers{bot_type=\"webhook\"}: "
              "deliveries are no bot type", query('broker_workers'))
        check(value('queue_limit{job="orchestrator",queue_name="node"}') == 3, "queue_limit{node} = MAX_QUEUE_NODE",
              query('queue_limit'))
        check(value('queue_limit{job="orchestrator",queue_name="python"}') == 100000, "queue_limit{python} = MAX_QUEUE",
              query('queue_limit'))

        # Staged: node jobs and no node worker, the node queue at its bound,
        # submissions rejected queue_full (twice, a scrape apart, so the
        # counter has a rate)
        def alert_states():
            status, _, body = harness.http("GET", api + "rules?type=alert")
            if status != 200:
                return {}
            return {r["name"]: r for g in body["data"]["groups"] for r in g["rules"]}

        def active(name, **labels):
            rule = alert_states().get(name)
            if not rule or rule["health"] != "ok":
                return None
            return [a for a in rule.get("alerts", [])
                    if a["state"] in ("pending", "firing") and
                    all(a["labels"].get(k) == v for k, v in labels.items())] or None

        c = s.client()
        try:
            for i in range(3):
                c.submit("node", {"n": i})
            cmd, reply = c.try_submit("node", {"n": 3})
            check(cmd == harness.REJECTED and reply.get("code") == "queue_full",
                  "the fourth node job is rejected queue_full", reply)
            wait_until(lambda: value('broker_jobs_rejected_total{job="orchestrator",reason="queue_full"}') == 1, 15,
                       "Prometheus to scrape the first queue_full rejection", interval=0.25)
            # The series was there at 0 before: the first rejection is an increase.
            first = value('increase(broker_jobs_rejected_total{job="orchestrator",reason="queue_full"}[5m])')
            check(first is not None and first > 0, "increase() sees the first queue_full rejection", first)
            cmd, reply = c.try_submit("node", {"n": 4})
            check(cmd == harness.REJECTED and reply.get("code") == "queue_full", "node job rejected again", reply)
        finally:
            c.close()
        got = wait_until(lambda: active("BotmeshBotTypeNoWorkers", queue_name="node"), 20,
                         "BotmeshBotTypeNoWorkers pending for node", interval=0.25)
        check(float(got[0]["value"]) == 3, "BotmeshBotTypeNoWorkers's value is node's 3 queued jobs", got)
        wait_until(lambda: active("BotmeshQueueNearLimit", queue_name="node"), 20,
                   "BotmeshQueueNearLimit pending for node (3 of 3)", interval=0.25)
        wait_until(lambda: active("BotmeshJobsRejected", reason="queue_full"), 20,
                   "BotmeshJobsRejected pending for queue_full", interval=0.25)
        check(not active("BotmeshBotTypeNoWorkers", queue_name="python"), "python has a worker: no alert for it")
        check(not active("BotmeshNoWorkers"), "BotmeshNoWorkers silent: a bot worker is connected")

        # Staged: the webhook manager stops (its own gauge vanishes with it;
        # the broker's count of webhook managers goes to 0)
        if webhooks:
            check(not active("BotmeshWebhookManagerDisconnected"), "webhook manager connected: no alert")
            procs["webhook-manager"].stop()
            wait_until(lambda: active("BotmeshWebhookManagerDisconnected"), 30,
                       "BotmeshWebhookManagerDisconnected pending after the webhook manager stopped",
                       interval=0.25)
            check(value('broker_webhook_managers_connected{job="orchestrator"}') == 0,
                  "broker_webhook_managers_connected = 0 once the webhook manager is gone",
                  query('broker_webhook_managers_connected'))


if __name__ == "__main__":
    harness.main(test)

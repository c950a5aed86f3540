"""test_dashboard.py - the queue dashboard in headless Chromium against a real stack.

redis + broker + a Python worker + the gateway with API keys on.  The page:
asks for the key (401), then shows per-type numbers equal to /stats, the
worker, the jobs; filters by state; opens a failed job (payload, error) and
retries it; finds a queued job by id and cancels it; shows a job's runs
against the runs it is allowed (5/5 for a job allowed 5 runs that failed
them all); redelivers a webhook;
shows per type the mode, warm processes, recycles and init failures that a
real worker running a type in pool mode reports in its HEARTBEAT, and once
that worker stopped the mode it last saw ("pool (no workers)"; "no workers"
for a type never served, before: /stats says null for either);
draws charts from the snapshots.  Keeps a screenshot in
$BOTMESH_ARTIFACTS/dashboard.png.
"""
import json
import os
import sys

import harness
from harness import check, log, wait_until

import cdp

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "dash-key-7f3a"
WARM = ("warmProcesses", "recycles", "initFailures")
FIELDS = ("waiting", "delayed", "running", "limit", "waitingForPermit", "completed", "failed", "cancelled", "workers", "limitKills") + WARM
SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
PYBOT = os.path.join(harness.ROOT, "workers", "bots", "python", "bot.py")


def start_gateway(s, env=None):
    e = {"API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1",
         "BROKER_ENDPOINT": s.endpoint, "GATEWAY_THREADS": "16",
         "WEBHOOK_ALLOW_PRIVATE": "1"}       # as the webhook manager: the mock is on 127.0.0.1
    e.update(env or {})
    p = s.spawn("gateway", [s.bin("botmesh-gateway")], e)
    base = "http://127.0.0.1:%d" % p.listening("http")
    wait_until(lambda: harness.http("GET", base + "/health")[0] == 200, 15, "gateway /health")
    return base


def page_type_numbers(page):
    """{botType: {field: int}} as the page shows them."""
    return page.eval("""(function(){
        var out = {};
        document.querySelectorAll('#types-body tr[data-type]').forEach(function (tr) {
            var row = {};
            tr.querySelectorAll('[data-field]').forEach(function (c) {
                if (c.dataset.field === 'mode') row.mode = c.textContent;
                else if (c.dataset.field !== 'usage') row[c.dataset.field] = Number(c.textContent);
            });
            out[tr.dataset.type] = row;
        });
        return out;
    })()""")


def test():
    shot = harness.artifact("dashboard.png")

    with harness.Stack("dashboard") as s:
        s.redis()
        broker = s.broker(env={"METRICS_SNAPSHOT_INTERVAL": "1"})
        s.spawn("pyworker", [sys.executable, os.path.join(HERE, "pyworker.py"), s.endpoint, "python", "2"])
        s.wait_workers(1, "python")
        # A real worker running a type warm (pool mode, 2 processes kept):
        # its HEARTBEAT tells the broker, STATS and the page show them.
        warm = s.worker("--type", "warm", "--concurrency", "2", env={
            "BOT_WARM_CMD": "/usr/bin/python3 %s --pool %s" % (SERVER, PYBOT), "BOT_WARM_MODE": "pool",
            "BOT_WARM_MIN_PROCS": "2", "BOT_WARM_MAX_PROCS": "2"})
        s.wait_workers(2)
        base = start_gateway(s, {"API_KEYS": KEY})
        # The webhook manager and the mock, when built: the redeliver action is
        # then checked end to end (the mock receives the delivery twice).
        mock = None
        if os.path.exists(s.bin("botmesh-webhook")) and os.path.exists(s.bin("botmesh-mock")):
            mock_proc = s.spawn("mock", [s.bin("botmesh-mock")], {"MOCK_WEBHOOK_PORT": "0",
                                                                  "MOCK_LISTEN_ADDR": "127.0.0.1"})
            mock = "http://127.0.0.1:%d" % mock_proc.listening("http")
            wait_until(lambda: harness.http("GET", mock + "/health")[0] == 200, 15, "mock /health")
            s.spawn("webhook", [s.bin("botmesh-webhook")], {
                "WEBHOOK_MANAGER_PORT": "0", "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
                "WEBHOOK_ALLOW_PRIVATE": "1", "BROKER_ENDPOINT": s.endpoint})
            s.wait_workers(1, "webhook")
        else:
            log("botmesh-webhook or botmesh-mock not built: redeliver is checked at the broker only")
        auth = {"X-API-Key": KEY}

        def get(path):
            status, _, body = harness.http("GET", base + path, headers=auth)
            check(status == 200, "GET %s answers 200" % path, status, body)
            return body

        status, _, _ = harness.http("GET", base + "/stats")
        check(status == 401, "API keys are on: /stats without a key is 401", status)

        def invoke(bot_type, payload, **extra):
            body = dict(extra, botType=bot_type, payload=payload)
            status, _, reply = harness.http("POST", base + "/invoke", body, headers=auth)
            check(status in (200, 201, 202), "invoke %s accepted" % bot_type, status, reply)
            return reply["jobId"]

        done = [invoke("python", {"n": i}) for i in range(3)]
        failing = invoke("python", {"fail": "boom", "n": 99})
        hooked = invoke("python", {"n": 7}, webhookUrl=(mock or "http://127.0.0.1:9") + "/hook")
        queued = invoke("java", {"n": 1})             # no java worker: stays queued
        wait_until(lambda: get("/stats")["types"]["python"]["completed"] == 4
                   and get("/stats")["types"]["python"]["failed"] == 1, 20, "python jobs to end")

        def mock_deliveries():
            status, _, body = harness.http("GET", mock + "/deliveries?jobId=" + hooked)
            return len(body["deliveries"]) if status == 200 else 0
        if mock:
            wait_until(lambda: get("/job/" + hooked).get("webhook", {}).get("state") == "delivered"
                       and get("/stats")["types"]["webhook"]["completed"] == 1, 20, "the webhook to be delivered")
            check(mock_deliveries() == 1, "the mock received the delivery once")
            # The broker's /metrics: bot executions only, deliveries apart.
            status, _, text = harness.http("GET", "http://127.0.0.1:%d/metrics" % broker.metrics_port)
            check(status == 200 and 'bot_executions_total{bot_type="python",status="completed"} 4\n' in text,
                  "broker /metrics: the 4 completed python executions", status, text[:800])
            webhook_series = [line for line in text.splitlines()
                              if 'bot_type="webhook"' in line and not line.startswith("#")]
            check(not webhook_series, "broker /metrics: no bot_type=\"webhook\" series (deliveries are "
                  "no bot executions)", webhook_series)
            check('queue_size{queue_name="webhook"}' in text,
                  "broker /metrics: the webhook delivery queue keeps its queue_size (documented)", text[:800])

        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            page.goto(base + "/admin/queues")

            # 1. The key is asked for once, then kept
            page.wait_for("!document.getElementById('auth').hidden", 10, "the API key form")
            check(page.eval("document.getElementById('conn').dataset.state") == "auth", "status shows 'API key needed'")
            page.type_text("#auth-key", KEY)
            page.click("#auth-save")
            page.wait_for("document.body.dataset.statsUpdates >= 1 && document.body.dataset.jobsUpdates >= 1",
                          10, "first refresh with the key")
            check(page.eval("localStorage.getItem('botmesh.apiKey')") == KEY, "the key is stored in localStorage")
            check(page.eval("document.getElementById('auth').hidden"), "the key form is gone")

            # 2. Per-type numbers equal /stats (the state is stable now)
            def same_as_stats():
                stats = get("/stats")
                shown = page_type_numbers(page)
                # The webhook row: deliveries are no bot processes, no mode nor warm cells
                # (a type no worker serves: "no workers", /stats says null)
                want = {t: dict({f: v.get(f, 0) for f in FIELDS},
                                mode=v.get("mode", "spawn") if v.get("workers") else "no workers")
                        if t != "webhook" else {f: v.get(f, 0) for f in FIELDS if f not in WARM}
                        for t, v in stats["types"].items()}
                return shown if shown == want else None
            wait_until(lambda: get("/stats")["types"].get("warm", {}).get("warmProcesses") == 2, 20,
                       "/stats: the warm type's 2 pool processes (from the worker's HEARTBEAT)")
            wait_until(same_as_stats, 10, "page numbers to equal /stats")
            shown = page_type_numbers(page)
            log("page shows", json.dumps(shown, sort_keys=True))
            check(shown["python"]["completed"] == 4 and shown["python"]["failed"] == 1, "python: 4 completed, 1 failed", shown)
            check(shown["java"]["waiting"] == 1 and shown["java"]["limit"] == 3, "java: 1 waiting, limit 3", shown)
            check(shown["warm"]["mode"] == "pool" and shown["warm"]["warmProcesses"] == 2
                  and shown["warm"]["recycles"] == 0 and shown["warm"]["initFailures"] == 0,
                  "warm bots per type: mode pool, 2 warm processes, no recycles or init failures", shown["warm"])
            check(shown["python"]["mode"] == "spawn" and shown["python"]["warmProcesses"] == 0,
                  "a type nobody runs warm: mode spawn, no warm processes", shown["python"])
            check(shown["java"]["mode"] == "no workers" and get("/stats")["types"]["java"]["mode"] is None,
                  "a type no worker serves: 'no workers' (/stats: mode null)", shown["java"])
            # The warm type's worker leaves: the page shows the mode it last
            # saw (/stats now says null: no worker runs it).
            warm.stop()
            wait_until(lambda: get("/stats")["types"]["warm"]["workers"] == 0, 20,
                       "/stats: no worker serves the warm type after its worker stopped")
            page.wait_for("document.getElementById('type-warm-workers').textContent === '0'", 10,
                          "the page to show no warm workers")
            left = page.eval("[document.getElementById('type-warm-mode').textContent,"
                             " document.getElementById('type-warm-mode').title]")
            check(left[0] == "pool (no workers)" and "last ran it in pool mode" in left[1],
                  "a type whose warm workers all left: its last mode, pool (no workers), not spawn", left,
                  get("/stats")["types"]["warm"])
            hooks = get("/stats")["types"]["webhook"]
            check(not {"mode", "warmProcesses", "recycles", "initFailures"} & set(hooks),
                  "/stats: the webhook row has no mode nor warm processes (deliveries are no bot "
                  "processes)", hooks)
            check("mode" not in shown["webhook"] and not set(WARM) & set(shown["webhook"]),
                  "the page's webhook row has no mode nor warm cells", shown["webhook"])
            totals = get("/stats")["totals"]
            check(page.eval("Number(document.getElementById('total-submitted').textContent)") == totals["submitted"],
                  "total submitted matches", totals)
            all_row = page.eval("""(function(){ var out = {};
                document.querySelectorAll('#totals tr[data-type="*"] [data-field]').forEach(function (c) {
                    out[c.dataset.field] = Number(c.textContent); });
                return out; })()""")
            check(all_row.get("completed") == totals["completed"] and all_row.get("failed") == totals["failed"],
                  "the 'all' row counts bot executions only, not webhook deliveries", all_row, totals)

            # 3. Workers table
            worker = page.eval("""(function(){ var r = document.querySelector('#workers-body tr[data-worker^="pyworker-"]');
                return r && {name: r.dataset.worker, types: r.querySelector('[data-field=types]').textContent,
                             credit: Number(r.querySelector('[data-field=credit]').textContent)}; })()""")
            check(worker and worker["name"].startswith("pyworker-") and worker["types"] == "python"
                  and worker["credit"] == 2, "worker row: name, types, credit", worker)

            # 4. Jobs list and the state filter
            ids = page.eval("Array.prototype.map.call(document.querySelectorAll('#jobs-body tr'), function (r) { return r.dataset.jobId; })")
            check(set(done + [failing, hooked, queued]) <= set(ids), "all six jobs are listed", ids)
            updates = page.eval("Number(document.body.dataset.jobsUpdates)")
            page.eval("(function(){ var s = document.getElementById('filter-state'); s.value = 'failed';"
                      " s.dispatchEvent(new Event('change')); })()")
            page.wait_for("Number(document.body.dataset.jobsUpdates) > %d" % updates, 10, "filtered jobs")
            rows = page.eval("Array.prototype.map.call(document.querySelectorAll('#jobs-body tr'), function (r) { return [r.dataset.jobId, r.dataset.state]; })")
            check(rows == [[failing, "failed"]], "state=failed shows only the failed job", rows)

            # 5. Open the failed job; its detail; retry it
            page.click('#jobs-body tr[data-job-id="%s"]' % failing)
            page.wait_for("document.body.dataset.detailJob === %s" % json.dumps(failing), 10, "the failed job's detail")
            detail = page.eval("""({state: document.querySelector('#job-detail [data-field=state]').dataset.value,
                code: document.getElementById('detail-error-code').textContent,
                message: document.getElementById('detail-error-message').textContent,
                payload: JSON.parse(document.getElementById('detail-payload').textContent),
                attempts: document.querySelector('#job-detail [data-field=attempts]').textContent,
                retry: !document.getElementById('action-retry').disabled,
                cancel: !document.getElementById('action-cancel').disabled})""")
            log("detail", detail)
            check(detail["state"] == "failed" and detail["code"] == "bot_failed" and detail["message"] == "boom",
                  "detail shows the error", detail)
            check(detail["payload"] == {"fail": "boom", "n": 99}, "detail shows the payload", detail)
            check(detail["retry"] and not detail["cancel"], "retry enabled, cancel disabled for a failed job", detail)
            page.click("#action-retry")
            page.wait_for("document.getElementById('action-message').dataset.result === 'ok'", 10, "retry to succeed")
            wait_until(lambda: get("/stats")["totals"]["retried"] == 1, 10, "the broker to count the retry")
            wait_until(lambda: get("/job/" + failing)["state"] == "failed" and get("/job/" + failing).get("attempts") == 1
                       and get("/stats")["types"]["python"]["failed"] == 2, 20, "the retried job to fail again")
            page.wait_for("Number(document.getElementById('total-retried').textContent) === 1", 10, "page: retried 1")
            # The footer says what its totals count: those of every broker
            # that led, a RETRY request apart from the automatic retries.
            footer = page.eval("document.getElementById('totals-line').textContent")
            log("footer:", footer)
            check(footer.startswith("totals across restarts and failovers (this broker up ") and "retried by request 1" in footer
                  and "retried automatically" in footer, "the footer's labels say what they count", footer)
            stats = get("/stats")
            auto = sum(t.get("retries", 0) for name, t in stats["types"].items() if name != "webhook")
            page.wait_for("Number(document.getElementById('total-retries').textContent) === %d" % auto, 10,
                          "page: retried automatically %d, as the types' retries in /stats" % auto)

            # 6. Find the queued java job by id, cancel it, then retry it
            page.eval("(function(){ var s = document.getElementById('filter-state'); s.value = '';"
                      " s.dispatchEvent(new Event('change')); })()")
            page.eval("document.getElementById('search-id').value = ''")
            page.type_text("#search-id", queued)
            page.click("#search-go")
            page.wait_for("document.body.dataset.detailJob === %s" % json.dumps(queued), 10, "the queued job's detail")
            check(page.eval("location.hash") == "#/job/" + queued, "the detail has a link (#/job/ID)")
            page.wait_for("document.querySelector('#job-detail [data-field=state]').dataset.value === 'queued'"
                          " && !document.getElementById('action-cancel').disabled", 10, "cancel enabled for a queued job")
            check(page.eval("document.getElementById('action-retry').disabled"), "retry disabled for a queued job")
            page.click("#action-cancel")
            page.wait_for("document.getElementById('action-message').dataset.result === 'ok'", 10, "cancel to succeed")
            check(get("/job/" + queued)["state"] == "cancelled", "the broker cancelled the job")
            page.wait_for("document.querySelector('#job-detail [data-field=state]').dataset.value === 'cancelled'"
                          " && !document.getElementById('action-retry').disabled", 10, "page: cancelled, retry enabled")
            page.click("#action-retry")
            page.wait_for("document.getElementById('action-message').dataset.result === 'ok'", 10, "retry to succeed")
            check(get("/job/" + queued)["state"] == "queued", "the cancelled job is queued again")

            # 6b. The attempts column: runs against the runs the job is
            # allowed (runAttempts), not against maxAttempts (dispatches lost
            # to crashes, 3): a job allowed 5 runs that failed 5 times is 5/5
            # (it was 5/3), one completed on its one allowed run 1/1.
            five = invoke("python", {"fail": "again"}, attempts=5, backoff={"type": "fixed", "delay": 0})
            wait_until(lambda: get("/job/" + five)["state"] == "failed", 30, "the job allowed 5 runs to fail")
            record = get("/job/" + five)
            check(record["runAttempts"] == 5 and len(record["attemptErrors"]) == 5 and record["maxAttempts"] == 3,
                  "the record: 5 runs allowed, 5 failed, maxAttempts 3", record)
            page.eval("document.getElementById('search-id').value = ''")
            cell = "document.querySelector('#jobs-body tr[data-job-id=\"%s\"] [data-field=attempts]')"
            page.wait_for("%s && %s.textContent === '5/5'" % (cell % five, cell % five), 15,
                          "the failed job's attempts cell to read 5/5")
            shown = page.eval("[%s.textContent, %s.textContent, %s.textContent]"
                              % (cell % five, cell % done[0], cell % queued))
            check(shown == ["5/5", "1/1", "0/1"],
                  "attempts cells: 5/5 (5 failed runs of 5), 1/1 (completed), 0/1 (queued)", shown)
            page.click('#jobs-body tr[data-job-id="%s"]' % five)
            page.wait_for("document.body.dataset.detailJob === %s" % json.dumps(five), 10, "its detail")
            runs = page.eval("document.querySelector('#job-detail [data-field=attempts]').textContent")
            check(runs == "5 of 5 runs", "the detail says 5 of 5 runs", runs)

            # 7. Redeliver the webhook of an ended job
            page.goto("about:blank")                  # a real reload, not a hash change
            page.goto(base + "/admin/queues#/job/" + hooked)
            page.wait_for("document.body.dataset.detailJob === %s" % json.dumps(hooked), 10, "the webhook job's detail")
            page.wait_for("!document.getElementById('detail-webhook-box').hidden"
                          " && !document.getElementById('action-redeliver').disabled", 10, "redeliver enabled")
            check(page.eval("document.getElementById('auth').hidden"), "the stored key is used after a reload")
            if mock:
                hook = page.eval("""({state: document.querySelector('[data-field="webhook.state"]').textContent,
                    attempts: document.querySelector('[data-field="webhook.attempts"]').textContent,
                    status: document.querySelector('[data-field="webhook.lastStatus"]').textContent})""")
                check(hook["state"] == "delivered" and hook["status"] == "200", "detail shows the webhook delivered", hook)
            page.click("#action-redeliver")
            page.wait_for("document.getElementById('action-message').dataset.result !== 'pending'"
                          " && document.getElementById('action-message').dataset.result", 10, "redeliver answer")
            msg = page.eval("[document.getElementById('action-message').dataset.result, document.getElementById('action-message').textContent]")
            check(msg[0] == "ok", "redeliver accepted", msg)
            if mock:
                wait_until(lambda: mock_deliveries() == 2, 20, "the mock to receive the redelivery")

            # 8. Charts from the snapshots
            page.wait_for("Number(document.body.dataset.historyPoints) >= 2"
                          " && Number(document.getElementById('chart-queue').dataset.points) > 0", 15, "charts with snapshots")
            history = get("/api/history?limit=10")["snapshots"]
            check(len(history) >= 2 and "python" in history[-1]["types"], "history has python snapshots", history[-1:])

            # 8b. A gateway whose own Redis is away: the broker's Redis is up
            # (the badge says so), and the charts say why they have no history.
            lone = start_gateway(s, {"REDIS_URL": "redis://127.0.0.1:%d/0" % harness.free_port()})
            page.goto("about:blank")
            page.goto(lone + "/admin/queues")
            page.wait_for("document.getElementById('chart-queue').dataset.historyError"
                          " && document.getElementById('redis').textContent !== 'redis ?'", 15,
                          "the charts to say why there is no history, and the first /stats")
            why = page.eval("[document.getElementById('chart-queue').dataset.historyError,"
                            " document.getElementById('redis').textContent]")
            check(why[0].startswith("redis_unavailable") and why[1] == "redis up",
                  "no history: redis_unavailable named on the charts; the badge is the broker's Redis", why)

            # 8c. A link with a broken escape names no job: the page goes on
            # refreshing (decodeURIComponent threw, and the page stopped).
            page.goto("about:blank")
            page.goto(base + "/admin/queues#/job/%E0%A4%A")
            page.wait_for("Number(document.body.dataset.statsUpdates) >= 2", 15,
                          "the page to refresh under the link #/job/%E0%A4%A")
            check(page.eval("document.getElementById('job-detail').hidden"), "it shows no job's detail")

            # 9. No script errors; the screenshot
            errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
            check(not errors, "no JavaScript exceptions", errors[:3])
            # The page names its icon (none): no request for /favicon.ico,
            # which every load logged as a refused 404.
            gw_logs = "".join(p.output() for p in s.procs if p.name == "gateway")
            check("favicon" not in gw_logs, "the gateways logged no request for /favicon.ico",
                  [l for l in gw_logs.splitlines() if "favicon" in l][:3])
            page.goto("about:blank")
            page.goto(base + "/admin/queues#/job/" + failing)
            page.wait_for("document.body.dataset.detailJob && Number(document.body.dataset.historyPoints) >= 2", 10, "page ready")
            page.screenshot(shot)
        with open(shot, "rb") as f:
            head = f.read(8)
        check(head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(shot) > 20000, "screenshot saved: %s" % shot,
              os.path.getsize(shot))


if __name__ == "__main__":
    harness.main(test)

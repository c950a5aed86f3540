"""Unit tests of clients/python/botmesh.py against a scripted fake ROUTER.

Checks the bytes on the wire (docs/protocol.md sections 2, 4, 5), the error
mapping (REJECTED -> Rejected, silence -> BrokerTimeout), RESULT push and
STATUS polling in wait(), and the worker's life: READY, JOB -> DONE,
PROGRESS, errors, heartbeats both ways, reconnect on silence and on
DISCONNECT, credit, CANCEL, graceful stop.
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("BOTMESH_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, HERE)

import zmq                     # noqa: E402
import botmesh                 # noqa: E402
import harness                 # noqa: E402
from harness import check, wait_until   # noqa: E402
from fakebroker import FakeBroker, pack   # noqa: E402

C, W = b"BMC01", b"BMW01"
BIG_TS = 1764360000000        # needs a 64-bit integer on the wire


def raises(fn, exc_type):
    try:
        fn()
    except exc_type as exc:
        return exc
    raise harness.TestFailure("expected %s from %r" % (exc_type.__name__, fn))


def test_client_submit_encoding():
    def responder(b, m):
        if m.cmd == botmesh.SUBMIT:
            return [(0x81, {"req": m.body["req"], "jobId": "job-1", "duplicate": True})]
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=3) as c:
            jid = c.submit("python", {"task": "x", "n": [1, 2.5, None, True]}, webhook_url="http://h/x",
                           priority=7, idempotency_key="k-1", timeout_ms=5000, max_attempts=4, notify=True)
            check(jid == "job-1" and jid.duplicate is True, "submit returns the jobId with duplicate", jid)
            m = fb.got(botmesh.SUBMIT)[0]
            check(m.frames[0] == C and m.frames[1] == b"\x01" and len(m.frames) == 3,
                  "SUBMIT is 3 frames: BMC01, 0x01, body", m.frames[:2])
            check(m.body == {"req": m.body["req"], "botType": "python",
                             "payload": {"task": "x", "n": [1, 2.5, None, True]},
                             "webhookUrl": "http://h/x", "priority": 7, "idempotencyKey": "k-1",
                             "timeoutMs": 5000, "maxAttempts": 4, "notify": True},
                  "SUBMIT body carries every option under its protocol name", m.body)
            check(isinstance(m.body["req"], int), "req is an integer")
            c.submit("node", None)
            m2 = fb.got(botmesh.SUBMIT)[1]
            check(set(m2.body) == {"req", "botType", "payload"} and m2.body["payload"] is None,
                  "defaults are left out of the body", m2.body)
            check(m2.body["req"] != m.body["req"], "each request has its own req")
            # BullMQ's backoff forms: a number is a fixed delay; delay and a jitter fraction.
            c.submit("python", 1, attempts=2, backoff=1000)
            c.submit("python", 1, backoff={"type": "exponential", "delay": 1000, "jitter": 0.2})
            m3, m4 = fb.got(botmesh.SUBMIT)[2:4]
            check(m3.body["backoff"] == {"type": "fixed", "delayMs": 1000},
                  "backoff=1000 is sent as a fixed delay of 1000 ms", m3.body)
            check(m4.body["backoff"] == {"type": "exponential", "delayMs": 1000, "jitter": 0.2},
                  "BullMQ's delay is sent as delayMs, the jitter fraction as it is", m4.body)
            # A backoff that is no delay is refused here, naming backoff, and
            # nothing is sent (the broker's "must be a map" or "delayMs is
            # required" would not say what was wrong with the number).
            for bad in (1.5, -3, 86400001, True, "1000", [1000]):
                e = raises(lambda: c.submit("python", 1, backoff=bad), ValueError)
                check("backoff" in str(e) and repr(bad) in str(e), "backoff=%r: ValueError naming it" % (bad,), e)
                check(getattr(e, "code", None) == "bad_request" and e.message == str(e),
                      "backoff=%r: its .code is bad_request, as the broker's refusal has" % (bad,), e)
            e = raises(lambda: c.status(), TypeError)
            check(getattr(e, "code", None) == "bad_request", "status() without an id: TypeError, .code bad_request", e)
            e = raises(lambda: c.submit_many([{"bot_type": "python", "backoff": -3}]), ValueError)
            check("0 to 86400000" in str(e), "submit_many checks each job's backoff the same way", e)
            check(len(fb.got(botmesh.SUBMIT)) == 4 and not fb.got(botmesh.SUBMIT_MANY),
                  "nothing was sent for a bad backoff")
            c.submit("python", 1, backoff=0)
            check(fb.got(botmesh.SUBMIT)[4].body["backoff"] == {"type": "fixed", "delayMs": 0},
                  "backoff=0 is a fixed delay of 0 ms", fb.got(botmesh.SUBMIT)[4].body)
    finally:
        fb.close()


def flow_outcomes(made, jobs, refusals=None):
    """A fake broker's ACCEPTED_MANY items for flow(): one job per
    idempotencyKey (made maps each key to its job id), or the refusal
    refusals gives for the job's payload."""
    out = []
    for job in jobs:
        refusal = (refusals or {}).get(job["payload"]) if isinstance(job["payload"], str) else None
        if refusal:
            out.append(refusal)
            continue
        key = job["idempotencyKey"]
        duplicate = key in made
        out.append({"jobId": made.setdefault(key, "j%d" % len(made)), "duplicate": duplicate})
    return out


def test_client_flow():
    """flow(): leaves first, each height in SUBMIT_MANY messages, parents naming their
    children's ids, keys derived from the flow key; a refused node raises
    FlowRejected with the flow key and the jobs made."""
    made = {}

    def responder(b, m):
        if m.cmd == botmesh.SUBMIT_MANY:
            out = flow_outcomes(made, m.body["jobs"], {"refuse": {"code": "bad_request", "message": "no"}})
            return [(botmesh.ACCEPTED_MANY, {"req": m.body["req"], "jobs": out})]
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=3) as c:
            tree = {"botType": "dep", "payload": "top", "depends_on": ["x"], "children": [
                {"bot_type": "dep", "payload": "a", "children": [{"bot_type": "dep", "payload": "a0"}]},
                {"bot_type": "dep", "payload": "b", "idempotency_key": "own"}]}
            out = c.flow(tree)
            sent = [[j for j in m.body["jobs"]] for m in fb.got(botmesh.SUBMIT_MANY)]
            check([[j["payload"] for j in level] for level in sent] == [["a0", "b"], ["a"], ["top"]],
                  "one SUBMIT_MANY a height here, leaves first", sent)
            key = out["flowKey"]
            check(key.startswith("flow-") and sent[2][0]["idempotencyKey"] == key
                  and sent[1][0]["idempotencyKey"] == key + "/0"
                  and sent[0][0]["idempotencyKey"] == key + "/0.0"
                  and sent[0][1]["idempotencyKey"] == "own",
                  "keys: the flow's, <flowKey>/<path>, a node's own", sent)
            a0, b, a = made[key + "/0.0"], made["own"], made[key + "/0"]
            check(sent[1][0]["dependsOn"] == [a0] and sent[2][0]["dependsOn"] == ["x", a, b]
                  and sent[2][0]["dependencyResults"] is True and "dependsOn" not in sent[0][0],
                  "a parent depends on its own ids then its children's, reading their results", sent)
            check(out["jobId"] == made[key] and out["children"][0]["children"][0]["jobId"] == a0
                  and "children" not in out["children"][1],
                  "the answer mirrors the tree", out)
            e = raises(lambda: c.flow({"bot_type": "dep", "payload": 1, "children": [
                {"bot_type": "dep", "payload": 2}, {"bot_type": "dep", "payload": 3, "children": [
                    {"bot_type": "dep", "payload": "refuse"}]}]}), botmesh.FlowRejected)
            check(e.code == "bad_request" and "children[1].children[0]" in e.message
                  and e.flow_key in e.message and e.created == {"0": made[e.flow_key + "/0"]},
                  "a refused node: FlowRejected naming it, the flow key and the job made", e)
            check(e.retryable is False and "correct the refused node" in e.message
                  and "to complete it" not in e.message,
                  "a refusal for what the node says: not promised to pass on a retry", e.message)
            n = len(fb.got(botmesh.SUBMIT_MANY))
            deep = {"bot_type": "dep", "payload": 0}
            for _ in range(botmesh.FLOW_MAX_DEPTH):
                deep = {"bot_type": "dep", "payload": 0, "children": [deep]}
            e = raises(lambda: c.flow(deep), ValueError)
            check("deeper than 32" in str(e) and e.code == "invalid_flow"
                  and len(fb.got(botmesh.SUBMIT_MANY)) == n,
                  "a tree too deep: ValueError invalid_flow, nothing sent", e)
            e = raises(lambda: c.flow({"bot_type": "dep", "payload": 1, "children": [
                {"bot_type": "dep", "payload": 2}, {"payload": 3}]}), TypeError)
            check("children[1]" in str(e) and len(fb.got(botmesh.SUBMIT_MANY)) == n,
                  "a node without a bot_type: TypeError naming it, nothing sent", e)
    finally:
        fb.close()


def test_client_flow_checks():
    """flow() checks the whole tree with POST /flows' limits, codes and
    words before it sends anything: children and depends_on past 100 at
    any node, more than MAX_BATCH nodes (counted before they are walked),
    two nodes with one key, a bad key.  Each would otherwise be refused
    only at its parent's height, after the leaves were made."""
    fb = FakeBroker(lambda b, m: [(botmesh.ACCEPTED_MANY, {"req": m.body["req"], "jobs": [
        {"jobId": "j-" + j["idempotencyKey"]} for j in m.body["jobs"]]})])

    def leaf(n, **more):
        return dict({"bot_type": "dep", "payload": n}, **more)
    try:
        with botmesh.Client(fb.endpoint, timeout=3) as c:
            cases = [
                ("101 children at children[0]",
                 leaf(0, children=[leaf(1, children=[leaf(i) for i in range(101)])]),
                 "invalid_dependencies", "children[0]: 101 children and 0 depends_on: a job waits for at most "
                 "100 jobs"),
                ("99 children and 2 depends_on at the top",
                 leaf(0, depends_on=["a", "b"], children=[leaf(i) for i in range(99)]),
                 "invalid_dependencies", "99 children and 2 depends_on: a job waits for at most 100 jobs"),
                ("1001 nodes", leaf(0, children=[leaf(i, children=[leaf(j) for j in range(99)])
                                                 for i in range(10)]),
                 "too_many_jobs", "the flow holds more than 1000 jobs; at most 1000 go in one request (MAX_BATCH)"),
                ("31 levels of 100 children walked down the first",
                 None, "too_many_jobs", "more than 1000 jobs"),
                ("a node's own key equal to another's derived one",
                 leaf(0, idempotency_key="k", children=[leaf(1, idempotency_key="k/1"), leaf(2)]),
                 "invalid_idempotency_key", 'children[1]: its idempotency key "k/1" is also the key of children[0]'),
                ("two siblings with one key",
                 leaf(0, children=[leaf(1, idempotency_key="same"), leaf(2, idempotency_key="same")]),
                 "invalid_idempotency_key", 'children[1]: its idempotency key "same" is also the key of '
                 "children[0]: each job of a flow needs its own"),
                ("a child's key equal to the flow's",
                 leaf(0, idempotency_key="f", children=[leaf(1, children=[leaf(2, idempotency_key="f")])]),
                 "invalid_idempotency_key", "children[0].children[0]: its idempotency key \"f\" is also the key "
                 "of the top node"),
                ("a key with a space in the middle",
                 leaf(0, children=[leaf(1, children=[leaf(2)], idempotency_key="a b")]),
                 "invalid_idempotency_key", "children[0]: idempotency_key must be 1 to 128 printable ASCII"),
                ("a key ending in a newline", leaf(0, idempotency_key="k\n", children=[leaf(1)]),
                 "invalid_idempotency_key", "idempotency_key must be 1 to 128 printable ASCII"),
            ]
            comb = leaf("leaf")
            for i in range(30):
                comb = leaf(i, children=[comb] + [leaf(0)] * 99)
            for what, tree, code, words in cases:
                e = raises(lambda: c.flow(tree if tree is not None else comb), ValueError)
                check(e.code == code and words in str(e) and not fb.got(botmesh.SUBMIT_MANY),
                      "%s: ValueError %s, nothing sent" % (what, code), e, getattr(e, "code", None))
            e = raises(lambda: c.flow(leaf(0, children=[leaf(1, children=[7])])), TypeError)
            check(e.code == "invalid_body" and str(e).startswith("children[0].children[0]: ")
                  and not fb.got(botmesh.SUBMIT_MANY), "a node that is no dict: TypeError invalid_body", e)
            out = c.flow(leaf(0, depends_on=["a"], children=[leaf(i) for i in range(99)]))
            check(len(out["children"]) == 99 and len(fb.got(botmesh.SUBMIT_MANY)) == 2,
                  "99 children and 1 depends_on: 100, sent", out)
    finally:
        fb.close()


def test_client_flow_halfway():
    """An error of a later height's submit_many (no answer in time, the
    whole message refused) carries the flow key, the jobs made and whether
    the same call can complete it; the same call with that key resumes on
    the same jobs.  A node refused for a reason that passes (queue_full)
    promises completion; one refused for what it says does not."""
    made = {}
    silent = {"top": 1}          # answers left to withhold, by payload

    def responder(b, m):
        if m.cmd != botmesh.SUBMIT_MANY:
            return None
        payloads = [j["payload"] for j in m.body["jobs"]]
        for p in payloads:
            if silent.get(p):
                silent[p] -= 1
                return None
        if "unstored" in payloads:
            return [(botmesh.REJECTED, {"req": m.body["req"], "code": "store_unavailable",
                                         "message": "job storage is unavailable; retry later"})]
        out = flow_outcomes(made, m.body["jobs"], {"full": {
            "code": "queue_full", "message": "the queue of this bot type is full; retry later"}})
        return [(botmesh.ACCEPTED_MANY, {"req": m.body["req"], "jobs": out})]
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=3) as c:
            tree = {"bot_type": "dep", "payload": "top", "children": [
                {"bot_type": "dep", "payload": "a"}, {"bot_type": "dep", "payload": "b"}]}
            e = raises(lambda: c.flow(tree, timeout=0.5), botmesh.BrokerTimeout)
            key = getattr(e, "flow_key", None)
            check(key is not None and key.startswith("flow-")
                  and e.created == {"0": made[key + "/0"], "1": made[key + "/1"]}
                  and e.retryable is True and key in e.message and key in str(e)
                  and "2 of the flow's 3 jobs were created" in e.message and "to complete it" in e.message,
                  "no answer for the top's height: BrokerTimeout with the flow key and the 2 jobs made", e,
                  getattr(e, "created", None))
            n = len(made)
            out = c.flow(dict(tree, idempotency_key=key))
            check(out["flowKey"] == key and [k["jobId"] for k in out["children"]] == [e.created["0"], e.created["1"]]
                  and all(k["jobId"].duplicate for k in out["children"]) and len(made) == n + 1,
                  "the same call with that key: the same children, duplicates, and the top made", out)
            # The whole message refused, at the first height: nothing made, the key to go on with.
            e = raises(lambda: c.flow({"bot_type": "dep", "payload": "p", "children": [
                {"bot_type": "dep", "payload": "unstored"}]}), botmesh.Rejected)
            check(e.code == "store_unavailable" and e.created == {} and e.retryable is True
                  and e.flow_key in e.message and "to complete it" in e.message,
                  "a SUBMIT_MANY refused whole: Rejected with the flow key, retryable", e)
            # A node refused for a reason that passes: completion promised.
            e = raises(lambda: c.flow({"bot_type": "dep", "payload": "full", "children": [
                {"bot_type": "dep", "payload": "c"}]}), botmesh.FlowRejected)
            check(e.code == "queue_full" and e.retryable is True and "the top node: " in e.message
                  and "to complete it" in e.message and len(e.created) == 1,
                  "the top refused queue_full: FlowRejected, retryable, the same call completes it", e)
    finally:
        fb.close()


def test_client_rejected_and_replies():
    def responder(b, m):
        req = m.body.get("req")
        if m.cmd == botmesh.SUBMIT and m.body["botType"] == "nope":
            return [(0x82, {"req": req, "code": "unknown_bot_type", "message": "no bot type nope"})]
        if m.cmd == botmesh.SUBMIT and m.body["botType"] == "noreq":
            return [(0x82, {"code": "bad_frame", "message": "body is not a map"})]
        if m.cmd == botmesh.SUBMIT:
            # a late answer to some other request first, then a malformed message, then ours
            return [(0x83, {"req": req + 1000, "job": {}}),
                    ([C, b"\x83"],),
                    ([C, b"\x83", b"\xc1"],),
                    (0x81, {"req": req, "jobId": "j2", "duplicate": False})]
        if m.cmd == botmesh.STATUS and m.body["jobId"] == "missing":
            return [(0x82, {"req": req, "code": "not_found", "message": "no job missing"})]
        if m.cmd in (botmesh.STATUS, botmesh.CANCEL):
            return [(0x83, {"req": req, "job": {"jobId": m.body["jobId"], "state": "cancelled",
                                                "createdAt": BIG_TS}})]
        if m.cmd == botmesh.RETRY:
            return [(0x81, {"req": req, "jobId": m.body["jobId"]})]
        if m.cmd == botmesh.REDELIVER:
            return [(0x82, {"req": req, "code": "conflict", "message": "no webhook"})]
        if m.cmd == botmesh.STATS:
            return [(0x83, {"req": req, "types": {}, "workers": [], "totals": {}, "redis": True, "uptimeMs": 5})]
        if m.cmd == botmesh.LIST:
            return [(0x83, {"req": req, "jobs": [{"jobId": "a"}], "echo": m.body})]
        if m.cmd == botmesh.PING:
            return [(0x83, {"req": req, "redis": False, "uptimeMs": BIG_TS})]
        if m.cmd == botmesh.METRICS:
            return [(0x83, {"req": req, "text": "# HELP x\n"})]
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=3) as c:
            e = raises(lambda: c.submit("nope", {}), botmesh.Rejected)
            check(e.code == "unknown_bot_type" and e.message == "no bot type nope" and isinstance(e, botmesh.BotmeshError),
                  "REJECTED surfaces as Rejected with code and message", e)
            e = raises(lambda: c.submit("noreq", {}), botmesh.Rejected)
            check(e.code == "bad_frame", "a REJECTED without req answers the request in flight", e)
            check(c.submit("python", 1) == "j2", "stale replies and malformed messages are skipped")
            e = raises(lambda: c.status("missing"), botmesh.Rejected)
            check(e.code == "not_found", "STATUS not_found raises", e)
            rec = c.status("j9")
            check(rec["createdAt"] == BIG_TS, "64-bit timestamps decode", rec)
            check(c.cancel("j9")["state"] == "cancelled", "cancel returns the record")
            check(c.retry("j9") == "j9", "retry returns the id")
            e = raises(lambda: c.redeliver("j9"), botmesh.Rejected)
            check(e.code == "conflict", "REDELIVER conflict raises", e)
            check(c.stats()["uptimeMs"] == 5, "stats")
            check(c.list(state="failed", bot_type="python", limit=3) == [{"jobId": "a"}], "list")
            lm = fb.got(botmesh.LIST)[0]
            check(lm.body == {"req": lm.body["req"], "state": "failed", "botType": "python", "limit": 3},
                  "LIST body", lm.body)
            check(c.ping() == {"redis": False, "uptimeMs": BIG_TS}, "ping answers the reply without the protocol's req")
            check(c.stats() == {"types": {}, "workers": [], "totals": {}, "redis": True, "uptimeMs": 5},
                  "so does stats")
            e = raises(lambda: c.redeliver("j9"), botmesh.Rejected)
            check("req" not in e.body, "and a Rejected's body", e.body)
            check(c.metrics().startswith("# HELP"), "metrics")
            cmds = sorted({m.cmd for m in fb.got()})
            check(cmds == list(range(1, 10)), "every client command byte 0x01..0x09 was used", cmds)
            check(all(m.frames[0] == C for m in fb.got()), "every client message has header BMC01")
    finally:
        fb.close()


def test_client_wait_push_and_poll():
    polls = {"n": 0}

    def responder(b, m):
        req = m.body.get("req")
        if m.cmd == botmesh.SUBMIT:
            jid = "push-1" if m.body.get("notify") else "poll-1"
            out = [(0x81, {"req": req, "jobId": jid, "duplicate": False})]
            if m.body.get("notify"):
                out.append((0x84, {"jobId": jid, "job": {"jobId": jid, "state": "completed", "result": {"v": 1}}}))
            return out
        if m.cmd == botmesh.STATUS and m.body["jobId"] == "poll-1":
            polls["n"] += 1
            state = "completed" if polls["n"] >= 3 else "running"
            return [(0x83, {"req": req, "job": {"jobId": "poll-1", "state": state, "result": 42}})]
        if m.cmd == botmesh.STATUS and m.body["jobId"] == "stuck":
            return [(0x83, {"req": req, "job": {"jobId": "stuck", "state": "running"}})]
        if m.cmd == botmesh.STATUS and m.body["jobId"] == "failed-1":
            return [(0x83, {"req": req, "job": {"jobId": "failed-1", "state": "failed",
                                                "error": {"code": "bot_failed", "message": "exit 3"}}})]
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=3) as c:
            jid = c.submit("python", {}, notify=True)
            t0 = time.monotonic()
            rec = c.wait(jid, timeout=10)
            check(rec["result"] == {"v": 1}, "wait returns the RESULT push", rec)
            check(time.monotonic() - t0 < 1.0 and not fb.got(botmesh.STATUS), "the push needs no STATUS poll")
            jid = c.submit("python", {})
            rec = c.wait(jid, timeout=10, poll_interval=0.05)
            check(rec["state"] == "completed" and polls["n"] == 3, "wait falls back to STATUS polling", polls)
            t0 = time.monotonic()
            e = raises(lambda: c.wait("stuck", timeout=0.5, poll_interval=0.1), botmesh.WaitTimeout)
            el = time.monotonic() - t0
            check(e.code == "wait_timeout" and e.job["state"] == "running" and 0.4 < el < 2.0,
                  "wait is bounded: WaitTimeout with the last record", e, el)
            rec = c.wait("failed-1", timeout=5)
            check(rec["error"]["code"] == "bot_failed", "wait returns failed records as they are")
    finally:
        fb.close()


def test_client_run_raises_jobfailed():
    def responder(b, m):
        req = m.body.get("req")
        if m.cmd == botmesh.SUBMIT:
            return [(0x81, {"req": req, "jobId": "f1", "duplicate": False}),
                    (0x84, {"jobId": "f1", "job": {"jobId": "f1", "state": "failed",
                                                   "error": {"code": "timeout", "message": "ran past 10 ms"}}})]
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=3) as c:
            e = raises(lambda: c.run("python", {}, timeout=5), botmesh.JobFailed)
            check(e.code == "timeout" and e.job["jobId"] == "f1", "run() raises JobFailed with the job's error code", e)
    finally:
        fb.close()


def test_client_dead_broker():
    ep = "tcp://127.0.0.1:%d" % harness.free_port()
    c = botmesh.Client(ep, timeout=0.5)
    t0 = time.monotonic()
    e = raises(lambda: c.submit("python", {}), botmesh.BrokerTimeout)
    el = time.monotonic() - t0
    check(e.code == "broker_timeout" and ep in e.message and 0.4 < el < 2.0,
          "a dead broker gives BrokerTimeout naming the endpoint, in bounded time", str(e), el)
    check("BROKER_CLIENT_ENDPOINT" in e.message and "endpoint=" in e.message,
          "the timeout says how to change the endpoint", str(e))
    t0 = time.monotonic()
    e = raises(lambda: c.wait("some-job", timeout=1.0, poll_interval=0.1), botmesh.BrokerTimeout)
    check(time.monotonic() - t0 < 3.0 and "some-job" in e.message, "wait() on a dead broker is bounded too", str(e))
    c.close()


def test_client_endpoint_from_env():
    """BROKER_CLIENT_ENDPOINT, which the README says to export, is a Client's default; it
    comes before BROKER_ENDPOINT; an explicit endpoint wins over both."""
    def responder(b, m):
        if m.cmd == botmesh.SUBMIT:
            return [(0x81, {"req": m.body["req"], "jobId": "job-env"})]
    fb = FakeBroker(responder)
    dead = "tcp://127.0.0.1:%d" % harness.free_port()
    saved = {k: os.environ.get(k) for k in ("BROKER_CLIENT_ENDPOINT", "BROKER_ENDPOINT")}
    try:
        os.environ["BROKER_CLIENT_ENDPOINT"] = fb.endpoint
        os.environ["BROKER_ENDPOINT"] = dead
        with botmesh.Client(timeout=2) as c:
            check(c.endpoint == fb.endpoint, "Client() reads BROKER_CLIENT_ENDPOINT before BROKER_ENDPOINT",
                  c.endpoint)
            check(c.submit("python", 1) == "job-env", "and submits there")
        with botmesh.Client(dead, timeout=2) as c:
            check(c.endpoint == dead, "an explicit endpoint wins over BROKER_CLIENT_ENDPOINT", c.endpoint)
        os.environ["BROKER_CLIENT_ENDPOINT"] = "tcp://*:%s" % fb.endpoint.rsplit(":", 1)[1]
        with botmesh.Client(timeout=2) as c:
            check(c.endpoint == fb.endpoint, "a bind address in it reads as 127.0.0.1", c.endpoint)
        del os.environ["BROKER_CLIENT_ENDPOINT"]
        with botmesh.Client(timeout=2) as c:
            check(c.endpoint == dead, "without it, BROKER_ENDPOINT", c.endpoint)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        fb.close()


def test_curve():
    server_pub, server_sec = zmq.curve_keypair()
    client_pub, client_sec = zmq.curve_keypair()

    def responder(b, m):
        if m.cmd == botmesh.PING:
            return [(0x83, {"req": m.body["req"], "redis": True, "uptimeMs": 1})]
        if m.cmd == botmesh.W_READY and m.header == W:
            return [(W, 0x02, {"jobId": "cj", "botType": "pywork", "payload": 3, "attempt": 1})]
    fb = FakeBroker(responder, curve_secret=server_sec)
    try:
        curve = {"server_key": server_pub.decode(), "public_key": client_pub.decode(), "secret_key": client_sec.decode()}
        with botmesh.Client(fb.endpoint, timeout=3, curve=curve) as c:
            check(c.ping()["uptimeMs"] == 1, "the client talks to a CURVE server with its keys")
        w = botmesh.Worker("pywork", lambda p, j: p * 2, endpoint=fb.endpoint, curve=curve, heartbeat_ms=100).start()
        try:
            d = fb.wait_for(lambda m: m.cmd == botmesh.W_DONE, what="DONE over CURVE")
            check(d.body["result"] == 6, "the worker runs a job over CURVE")
        finally:
            w.stop(timeout=5)
        wrong = dict(curve, server_key=zmq.curve_keypair()[0].decode())
        with botmesh.Client(fb.endpoint, timeout=0.5, curve=wrong) as c:
            e = raises(c.ping, botmesh.BrokerTimeout)
            check(e.code == "broker_timeout", "a wrong server key ends in broker_timeout, not a hang")
    finally:
        fb.close()


# --- worker ---------------------------------------------------------------------

def worker_fb(heartbeats=True):
    """A fake broker that records worker messages and (optionally) heartbeats back."""
    fb = FakeBroker()
    fb.heartbeat_ms = 100 if heartbeats else 0
    fb.header = W
    return fb


def test_worker_jobs():
    seen = []

    def handler(payload, job):
        seen.append((payload, job.attempt, job.deadline))
        if payload == "boom":
            raise RuntimeError("it broke")
        if payload == "custom":
            raise botmesh.JobError("spawn_failed", "no such file")
        if payload == "unencodable":
            return {"x": object()}
        if payload == "huge":
            return "x" * 2000
        job.progress(50)
        return {"echo": payload, "big": BIG_TS}

    fb = worker_fb()
    # liveness 50 (5 s): a stall of this process under load must not read as a silent broker.
    w = botmesh.Worker(["pywork", "other"], handler, credit=2, endpoint=fb.endpoint, name="w-unit",
                       heartbeat_ms=100, liveness=50, max_result_bytes=1000).start()
    try:
        ready = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY")
        check(ready.frames[0] == W and ready.frames[1] == b"\x01", "READY has header BMW01 and command 0x01")
        check(ready.body["name"] == "w-unit" and ready.body["types"] == ["pywork", "other"]
              and ready.body["credit"] == 2 and ready.body["pid"] == os.getpid(), "READY body", ready.body)
        ident = ready.ident

        def job(jid, payload):
            fb.send(ident, 0x02, {"jobId": jid, "botType": "pywork", "payload": payload, "attempt": 2,
                                  "timeoutMs": 300000, "deadline": BIG_TS})

        def done(jid):
            return fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body.get("jobId") == jid, what="DONE " + jid)

        job("j1", {"a": [1, 2]})
        d = done("j1")
        check(d.body["ok"] is True and d.body["result"] == {"echo": {"a": [1, 2]}, "big": BIG_TS},
              "DONE ok with the handler's result", d.body)
        check(isinstance(d.body["startedAt"], int) and d.body["finishedAt"] >= d.body["startedAt"] > 1.6e12,
              "DONE carries ms timestamps", d.body)
        p = fb.got(botmesh.W_PROGRESS)
        check(p and p[0].body == {"jobId": "j1", "progress": 50}, "PROGRESS {jobId, progress}", p)
        check(seen[0][1:] == (2, BIG_TS), "the handler sees attempt and deadline", seen[0])
        job("j2", "boom")
        d = done("j2")
        check(d.body["ok"] is False and d.body["error"]["code"] == "bot_failed"
              and "it broke" in d.body["error"]["message"] and "result" not in d.body,
              "a raising handler gives DONE ok:false {code, message}", d.body)
        job("j3", "custom")
        check(done("j3").body["error"] == {"code": "spawn_failed", "message": "no such file"},
              "JobError chooses the code")
        job("j4", "unencodable")
        check(done("j4").body["error"]["code"] == "bad_output", "an unencodable result is bad_output")
        job("j5", "huge")
        check(done("j5").body["error"]["code"] == "bad_output", "a result over the limit is bad_output")
        # heartbeats: idle worker sends HEARTBEAT about every 100 ms
        n0 = len(fb.got(botmesh.W_HEARTBEAT))
        wait_until(lambda: len(fb.got(botmesh.W_HEARTBEAT)) >= n0 + 3, 3, "3 heartbeats")
        check(w.connects == 1, "the worker stays on one socket while the broker answers heartbeats", w.connects)
        w.set_credit(5)
        r5 = fb.wait_for(lambda m: m.cmd == botmesh.W_READY and m.body["credit"] == 5, what="READY credit 5")
        check(r5.ident == ident and r5.body["types"] == ["pywork", "other"], "set_credit sends READY again, same socket")
        # NACK not_owner is ignored; DONE for a job it does not hold is not sent twice
        fb.send(ident, 0x09, {"code": "not_owner", "message": "x"})
        wait_until(lambda: w.nacks, 3, "NACK to be read")
        check(w.connects == 1, "NACK does not reconnect")
    finally:
        w.stop(timeout=5)
        fb.close()


def test_worker_job_log():
    """job.log(text): the lines go with DONE as its log, the tail of at most
    16,384 bytes cut at a character's start (as the C worker's), whatever
    the outcome; none when nothing was logged; a log that is no str raises."""
    def handler(payload, job):
        if payload == "bad":
            try:
                job.log(b"bytes")
            except TypeError:
                return "refused"
            return "taken"
        for i in range(payload.get("many", 0)):
            job.log("line %04d %s" % (i, "\u00e9" * 20))
        for line in payload.get("lines", []):
            job.log(line)
        if payload.get("fail"):
            raise RuntimeError("failed after logging")
        return 1

    fb = worker_fb()
    w = botmesh.Worker(["pywork"], handler, credit=1, endpoint=fb.endpoint, name="w-log",
                       heartbeat_ms=100, liveness=50).start()
    try:
        ident = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY").ident

        def run(jid, payload):
            fb.send(ident, 0x02, {"jobId": jid, "botType": "pywork", "payload": payload, "attempt": 1})
            return fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body.get("jobId") == jid,
                               what="DONE " + jid).body

        d = run("l1", {"lines": ["one", "two \u2713"]})
        check(d["ok"] is True and d["log"] == "one\ntwo \u2713\n", "DONE log: the lines logged", d)
        d = run("l2", {"lines": ["before the failure"], "fail": True})
        check(d["ok"] is False and d["log"] == "before the failure\n", "a failed run's DONE has its log too", d)
        d = run("l3", {})
        check(d["ok"] is True and "log" not in d, "nothing logged: DONE without log", d)
        d = run("l4", {"many": 1000})
        size = len(d["log"].encode("utf-8"))
        check(16384 - 4 <= size <= 16384 and d["log"].endswith("line 0999 " + "\u00e9" * 20 + "\n")
              and "\ufffd" not in d["log"], "a long log: its tail, at most 16,384 bytes, cut at a character", size)
        d = run("l5", "bad")
        check(d["result"] == "refused", "job.log of bytes raises TypeError", d)
    finally:
        w.stop(timeout=5)
        fb.close()


def test_worker_credit_cancel_stop():
    import threading
    gate = threading.Event()
    started, saw_cancel = [], []

    def handler(payload, job):
        started.append(job.id)
        if payload == "wait-cancel":
            job.cancelled.wait(5)
            saw_cancel.append((job.is_cancelled(), job.cancel_reason))
            return {"returned": "anyway"}
        gate.wait(10)
        return "finished"

    fb = worker_fb()
    w = botmesh.Worker("pywork", handler, credit=2, endpoint=fb.endpoint, heartbeat_ms=100).start()
    try:
        ident = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY").ident
        for jid, p in (("c1", "wait-cancel"), ("c2", "x"), ("c3", "x")):
            fb.send(ident, 0x02, {"jobId": jid, "botType": "pywork", "payload": p, "attempt": 1,
                                  "timeoutMs": 1000, "deadline": BIG_TS})
        r = fb.wait_for(lambda m: m.cmd == botmesh.W_RELEASE, what="RELEASE")
        check(r.body == {"jobId": "c3"}, "a JOB beyond the credit is RELEASEd", r.body)
        wait_until(lambda: len(started) == 2, 3, "2 jobs to start")
        fb.send(ident, 0x07, {"jobId": "c1", "reason": "timeout"})
        d = fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body["jobId"] == "c1", what="DONE c1")
        check(saw_cancel == [(True, "timeout")], "CANCEL reaches the handler", saw_cancel)
        check(d.body["ok"] is False and "result" not in d.body
              and d.body["error"] == {"code": "timeout", "message": "stopped by the broker (timeout)"},
              "the stopped run ends failed with timeout, whatever its handler returned", d.body)
        # a duplicate JOB for a running job does not start it twice
        fb.send(ident, 0x02, {"jobId": "c2", "botType": "pywork", "payload": "x", "attempt": 2})
        # then two more: c4 takes the free credit, c5 is beyond it; its RELEASE shows all were read
        for jid in ("c4", "c5"):
            fb.send(ident, 0x02, {"jobId": jid, "botType": "pywork", "payload": "x", "attempt": 1})
        fb.wait_for(lambda m: m.cmd == botmesh.W_RELEASE and m.body["jobId"] == "c5", what="RELEASE c5")
        check(started.count("c2") == 1 and w.running == 2, "a JOB for a job already running here is not run twice",
              started)
        # graceful stop with one job running: READY credit 0, job finishes, DONE, DISCONNECT
        w.stop(grace=5, wait=False)
        r0 = fb.wait_for(lambda m: m.cmd == botmesh.W_READY and m.body["credit"] == 0, what="READY credit 0")
        check(r0.body["types"] == ["pywork"], "credit 0 READY keeps the types", r0.body)
        gate.set()
        fb.wait_for(lambda m: m.cmd == botmesh.W_DISCONNECT, what="DISCONNECT")
        order = [m.cmd for m in fb.got() if m.cmd in (botmesh.W_DONE, botmesh.W_DISCONNECT, botmesh.W_RELEASE)]
        check(order[-2:] == [botmesh.W_DONE, botmesh.W_DISCONNECT], "stop: DONE of the last job, then DISCONNECT", order)
        check(w._thread.join(5) is None and not w._thread.is_alive(), "run() returns after the stop")
    finally:
        gate.set()
        w.stop(timeout=5)
        fb.close()


def test_worker_stop_grace_releases():
    import threading
    gate = threading.Event()

    fb = worker_fb()
    w = botmesh.Worker("pywork", lambda p, j: gate.wait(10), credit=1, endpoint=fb.endpoint, heartbeat_ms=100).start()
    try:
        ident = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY").ident
        fb.send(ident, 0x02, {"jobId": "g1", "botType": "pywork", "payload": None, "attempt": 1})
        wait_until(lambda: w.running == 1, 3, "job to run")
        t0 = time.monotonic()
        check(w.stop(grace=0.3, timeout=5), "stop returns")
        check(time.monotonic() - t0 < 3, "stop is bounded by the grace period")
        fb.wait_for(lambda m: m.cmd == botmesh.W_DISCONNECT, what="DISCONNECT")
        order = [(m.cmd, m.body) for m in fb.got() if m.cmd in (botmesh.W_RELEASE, botmesh.W_DISCONNECT)]
        check(order == [(botmesh.W_RELEASE, {"jobId": "g1"}), (botmesh.W_DISCONNECT, {"reason": "shutdown"})],
              "after the grace: RELEASE the job, then DISCONNECT", order)
    finally:
        gate.set()
        fb.close()


def test_worker_stop_sends_a_done_that_just_came():
    """A job that ends as the stop's grace runs out (its DONE queued by its
    thread, not yet taken by the socket's) is answered DONE, not RELEASEd."""
    gate = threading.Event()

    class EndsLate(botmesh.Worker):
        def _finish_stop(self):
            gate.set()                                  # the job ends now
            wait_until(lambda: self._inbox, 3, "the job's DONE queued by its thread")
            super()._finish_stop()

    fb = worker_fb()
    w = EndsLate("pywork", lambda p, j: gate.wait(10) and "late", credit=1, endpoint=fb.endpoint,
                 heartbeat_ms=100).start()
    try:
        ident = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY").ident
        fb.send(ident, 0x02, {"jobId": "g2", "botType": "pywork", "payload": None, "attempt": 1})
        wait_until(lambda: w.running == 1, 3, "job to run")
        check(w.stop(grace=0.2, timeout=5), "stop returns")
        fb.wait_for(lambda m: m.cmd == botmesh.W_DISCONNECT, what="DISCONNECT")
        order = [(m.cmd, m.body.get("jobId"), m.body.get("result"))
                 for m in fb.got() if m.cmd in (botmesh.W_DONE, botmesh.W_RELEASE, botmesh.W_DISCONNECT)]
        check(order == [(botmesh.W_DONE, "g2", "late"), (botmesh.W_DISCONNECT, None, None)],
              "the job that ended at the grace's end: its DONE, then DISCONNECT (no RELEASE)", order)
    finally:
        gate.set()
        fb.close()


def w_last_ident(fb):
    return fb.got(botmesh.W_READY)[-1].ident


def test_worker_reconnects():
    done_gate = __import__("threading").Event()

    def handler(payload, job):
        done_gate.wait(10)
        return "late"

    fb = worker_fb(heartbeats=False)       # a broker that never speaks: liveness runs out
    w = botmesh.Worker("pywork", handler, credit=1, endpoint=fb.endpoint, heartbeat_ms=100, liveness=3).start()
    try:
        first = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY")
        fb.send(first.ident, 0x02, {"jobId": "r1", "botType": "pywork", "payload": None, "attempt": 1})
        second = fb.wait_for(lambda m: m.cmd == botmesh.W_READY and m.ident != first.ident, timeout=3,
                             what="READY on a new socket")
        el = second.at - first.at
        check(0.25 < el < 1.5, "silence for liveness x interval (300 ms) -> new DEALER + READY", el)
        check(second.body["types"] == ["pywork"], "READY again with the same types")
        check("running" not in first.body and second.body.get("running") == ["r1"],
              "the READY on a new socket lists the job still running", first.body, second.body)
        # DISCONNECT from the broker -> reconnect again (heartbeats answered now: no liveness reconnects)
        fb.heartbeat_ms = 100
        fb.send(w_last_ident(fb), W, 0x05, {})
        wait_until(lambda: time.monotonic() - fb.got(botmesh.W_READY)[-1].at > 0.4, 3,
                   "a quiet moment on one socket")
        seen = {m.ident for m in fb.got(botmesh.W_READY)}
        n = w.connects
        t_disc = time.monotonic()
        fb.send(w_last_ident(fb), W, 0x06, {"reason": "unknown worker"})
        third = fb.wait_for(lambda m: m.cmd == botmesh.W_READY and m.ident not in seen,
                            timeout=3, what="READY after DISCONNECT")
        check(w.connects == n + 1 and third.at - t_disc < 1.0, "DISCONNECT -> new socket and READY",
              third.at - t_disc, w.connects, n)
        # the job still running finishes and its DONE goes on the current socket
        done_gate.set()
        d = fb.wait_for(lambda m: m.cmd == botmesh.W_DONE, timeout=3, what="DONE after reconnect")
        check(d.ident != first.ident and d.body["result"] == "late", "DONE of a job from before the reconnect is sent "
              "on the new socket", d.ident, first.ident)
        # malformed messages from the broker are ignored without a reconnect storm
        n = w.connects
        last = w_last_ident(fb)
        fb.send(last, [W, b"\x02", b"\xc1"])
        fb.send(last, [b"XXXXX", b"\x02", pack({})])
        fb.send(last, [W, b"\x02\x02", pack({"jobId": "two-byte-command"})])
        fb.send(last, W, 0x02, {"payload": "no id"})
        fb.send(last, W, 0x02, {"jobId": "after", "payload": None})
        d = fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body["jobId"] == "after", what="DONE after")
        check(w.connects == n and [m.body["jobId"] for m in fb.got(botmesh.W_DONE)] == ["r1", "after"],
              "malformed JOBs are ignored, the next good one runs", w.connects, n)
    finally:
        done_gate.set()
        w.stop(timeout=5)
        fb.close()


def test_worker_cancel_after_done():
    """A CANCEL that crosses the DONE of a completed run: the broker did not
    take that result, so it does not answer the job's next JOB (the handler
    runs again) and is not sent again after a reconnect."""
    runs = {}

    def handler(payload, job):
        runs[job.id] = runs.get(job.id, 0) + 1
        return {"run": runs[job.id], "attempt": job.attempt}

    fb = worker_fb()
    w = botmesh.Worker("pywork", handler, credit=1, endpoint=fb.endpoint, heartbeat_ms=100, liveness=50).start()
    try:
        ready = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY")
        job = {"jobId": "x1", "botType": "pywork", "payload": {}, "timeoutMs": 10000}
        fb.send(ready.ident, 0x02, dict(job, attempt=1))
        d1 = fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body.get("attempt") == 1, what="DONE x1#1")
        check(d1.body["ok"] is True, "x1's first run completed", d1.body)
        fb.send(ready.ident, 0x07, {"jobId": "x1", "reason": "timeout"})
        fb.send(ready.ident, 0x02, dict(job, attempt=2))
        d2 = fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body.get("attempt") == 2, what="DONE x1#2")
        check(d2.body["ok"] is True and d2.body["result"] == {"run": 2, "attempt": 2} and runs == {"x1": 2},
              "after a CANCEL for the run it completed, the worker runs the handler again for attempt 2",
              d2.body, runs)
        check(w.jobs_answered_again == 0, "no JOB answered with the discarded DONE", w.jobs_answered_again)
    finally:
        w.stop(timeout=5)
        fb.close()


def test_worker_keeps_dones():
    """Recent DONEs are sent again after READY on a new socket (oldest first,
    at most DONE_KEEP_MAX, those of the last 4 x heartbeat x liveness); a JOB
    for a job completed here is answered with its DONE, attempt set to the
    JOB's, and the handler does not run again; a failed job runs again."""
    runs = {}

    gate, gate_waiting = threading.Event(), threading.Event()

    def handler(payload, job):
        runs[job.id] = runs.get(job.id, 0) + 1
        if payload.get("gate"):
            gate_waiting.set()
            gate.wait(10)
        if payload.get("fail"):
            raise botmesh.JobError("bot_failed", "asked to fail")
        return {"ran": job.id, "attempt": job.attempt}

    def done_of(fb, job_id, attempt, ident=None):
        return fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body["jobId"] == job_id
                           and m.body.get("attempt") == attempt and (ident is None or m.ident == ident),
                           timeout=5, what="DONE of %s attempt %s" % (job_id, attempt))

    def reconnect(fb):
        seen = {m.ident for m in fb.got(botmesh.W_READY)}
        fb.send(w_last_ident(fb), W, 0x06, {"reason": "unknown worker"})
        return fb.wait_for(lambda m: m.cmd == botmesh.W_READY and m.ident not in seen, timeout=5,
                           what="READY on a new socket")

    keep_max = botmesh.DONE_KEEP_MAX
    botmesh.DONE_KEEP_MAX = 3
    fb = worker_fb()
    # liveness 50: a window of 10 s, so that only the cap drops DONEs here
    w = botmesh.Worker("pywork", handler, credit=2, endpoint=fb.endpoint, heartbeat_ms=100, liveness=50).start()
    try:
        ready = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY")
        job = {"botType": "pywork", "timeoutMs": 10000}
        fb.send(ready.ident, 0x02, dict(job, jobId="k1", payload={}, attempt=1))
        k1 = done_of(fb, "k1", 1)
        check(k1.body["ok"] is True and k1.body["result"] == {"ran": "k1", "attempt": 1}, "k1 completed", k1.body)
        fb.send(ready.ident, 0x02, dict(job, jobId="k1", payload={}, attempt=2))
        k1b = done_of(fb, "k1", 2)
        check(runs["k1"] == 1 and dict(k1b.body, attempt=1) == k1.body,
              "a JOB for a job completed here is answered with its DONE, attempt set to the JOB's; "
              "the handler does not run again", runs, k1b.body, k1.body)
        check(w.jobs_answered_again == 1, "counted", w.jobs_answered_again)
        fb.send(ready.ident, 0x02, dict(job, jobId="f1", payload={"fail": True}, attempt=1))
        done_of(fb, "f1", 1)
        fb.send(ready.ident, 0x02, dict(job, jobId="f1", payload={"fail": True}, attempt=2))
        f1b = done_of(fb, "f1", 2)
        check(runs["f1"] == 2 and f1b.body["ok"] is False, "a job that failed here runs again", runs, f1b.body)
        # Kept now: k1#1, f1#1, f1#2 (the DONE answering a JOB again is not kept).
        again = reconnect(fb)
        f1c = done_of(fb, "f1", 2, again.ident)
        sent = [(m.body["jobId"], m.body["attempt"]) for m in fb.got(botmesh.W_DONE) if m.ident == again.ident]
        check(sent == [("k1", 1), ("f1", 1), ("f1", 2)] and f1c.body == f1b.body,
              "after READY on a new socket the kept DONEs are sent again, oldest first, as they were", sent)
        # A fourth DONE: the cap (3 here) drops the oldest, k1's, which no longer answers a JOB.
        fb.send(again.ident, 0x02, dict(job, jobId="c1", payload={}, attempt=1))
        done_of(fb, "c1", 1, again.ident)
        fb.send(again.ident, 0x02, dict(job, jobId="k1", payload={}, attempt=3))
        done_of(fb, "k1", 3, again.ident)
        check(runs["k1"] == 2, "past the cap a completed job's DONE is forgotten: the handler runs", runs)
        third = reconnect(fb)
        done_of(fb, "k1", 3, third.ident)
        sent = [(m.body["jobId"], m.body["attempt"]) for m in fb.got(botmesh.W_DONE) if m.ident == third.ident]
        check(sent == [("f1", 2), ("c1", 1), ("k1", 3)], "at most DONE_KEEP_MAX DONEs are kept", sent)
    finally:
        botmesh.DONE_KEEP_MAX = keep_max
        w.stop(timeout=5)
        fb.close()

    # The window: 2 x (heartbeat 100 ms x liveness 2 x 2) = 800 ms.
    fb = worker_fb()
    runs.clear()
    w = botmesh.Worker("pywork", handler, credit=1, endpoint=fb.endpoint, heartbeat_ms=100, liveness=2).start()
    try:
        ready = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY")
        fb.send(ready.ident, 0x02, {"jobId": "old", "botType": "pywork", "payload": {}, "attempt": 1})
        old = done_of(fb, "old", 1)
        wait_until(lambda: time.monotonic() - old.at > 1.0, 3, "the window of the DONE to pass")
        again = reconnect(fb)
        fb.send(again.ident, 0x02, {"jobId": "old", "botType": "pywork", "payload": {}, "attempt": 2})
        done_of(fb, "old", 2, again.ident)
        sent = [(m.body["jobId"], m.body["attempt"]) for m in fb.got(botmesh.W_DONE) if m.ident == again.ident]
        check(sent == [("old", 2)] and runs["old"] == 2,
              "a DONE older than 4 x heartbeat x liveness is not sent again nor answers a JOB", sent, runs)
        # A JOB again for a job still running: its DONE ends that newer attempt.
        fb.send(again.ident, 0x02, {"jobId": "slow", "botType": "pywork", "payload": {"gate": 1}, "attempt": 1})
        wait_until(lambda: gate_waiting.is_set(), 5, "the slow handler to start")
        fb.send(again.ident, 0x02, {"jobId": "slow", "botType": "pywork", "payload": {"gate": 1}, "attempt": 2})
        wait_until(lambda: w._jobs.get("slow") is not None and w._jobs["slow"].done_attempt == 2, 5,
                   "the JOB of attempt 2 to be read")
        gate.set()
        d = done_of(fb, "slow", 2, again.ident)
        check(runs["slow"] == 1 and d.body["result"] == {"ran": "slow", "attempt": 1}
              and len([m for m in fb.got(botmesh.W_DONE) if m.body["jobId"] == "slow"]) == 1,
              "a JOB again for a job still running: one run, its DONE carries the newer attempt", d.body, runs)
    finally:
        gate.set()
        w.stop(timeout=5)
        fb.close()


def test_worker_cancel_reasons():
    """A run stopped by CANCEL ends with DONE code "cancelled" only for a
    CANCEL "cancelled", "timeout" for "timeout", "stopped" for any other
    reason (no one cancelled the job: a broker that takes the DONE counts a
    failed run, not a cancel)."""
    def handler(payload, job):
        job.cancelled.wait(10)
        return {"returned": "anyway"}

    fb = worker_fb()
    w = botmesh.Worker("pywork", handler, credit=1, endpoint=fb.endpoint, heartbeat_ms=100).start()
    try:
        ident = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY").ident
        for reason, code in (("cancelled", "cancelled"), ("timeout", "timeout"), ("unknown", "stopped"),
                             ("finished", "stopped"), ("duplicate", "stopped"), ("not_owner", "stopped")):
            jid = "r-" + reason
            fb.send(ident, 0x02, {"jobId": jid, "botType": "pywork", "payload": {}, "attempt": 1,
                                  "timeoutMs": 10000})
            wait_until(lambda: w.running == 1, 3, "%s to start" % jid)
            fb.send(ident, 0x07, {"jobId": jid, "reason": reason})
            d = fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body["jobId"] == jid, what="DONE " + jid)
            check(d.body["ok"] is False and "result" not in d.body
                  and d.body["error"] == {"code": code, "message": "stopped by the broker (%s)" % reason},
                  "CANCEL %s -> DONE code %s" % (reason, code), d.body)
            wait_until(lambda: w.running == 0, 3, "%s to end" % jid)
    finally:
        w.stop(timeout=5)
        fb.close()


def test_worker_keeps_dones_bounds():
    """The kept DONEs are bounded as botmesh-worker's: by count (100,000, so
    the 1,200 DONEs of a burst are all sent again after a reconnect) and by
    bytes (DONE_KEEP_BYTES of msgpack bodies, the oldest dropped first)."""
    def handler(payload, job):
        return {"pad": "x" * payload.get("pad", 0)}

    def reconnect(fb):
        seen = {m.ident for m in fb.got(botmesh.W_READY)}
        fb.send(w_last_ident(fb), W, 0x06, {"reason": "unknown worker"})
        return fb.wait_for(lambda m: m.cmd == botmesh.W_READY and m.ident not in seen, timeout=5,
                           what="READY on a new socket")

    check(botmesh.DONE_KEEP_MAX == 100000 and botmesh.DONE_KEEP_BYTES == 64 << 20,
          "kept DONEs: at most 100,000 of at most 64 MiB, as botmesh-worker",
          botmesh.DONE_KEEP_MAX, getattr(botmesh, "DONE_KEEP_BYTES", None))
    fb = worker_fb()
    # liveness 100: a window of 40 s, so that only the bounds drop DONEs here
    w = botmesh.Worker("pywork", handler, credit=100, endpoint=fb.endpoint, heartbeat_ms=100,
                       liveness=100).start()
    keep_bytes = getattr(botmesh, "DONE_KEEP_BYTES", 0)
    try:
        ready = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY")
        n = 1200
        for i in range(0, n, 100):
            for j in range(i, i + 100):
                fb.send(ready.ident, 0x02, {"jobId": "b%d" % j, "botType": "pywork", "payload": {},
                                            "attempt": 1, "timeoutMs": 10000})
            fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body["jobId"] == "b%d" % (i + 99),
                        timeout=10, what="DONE b%d" % (i + 99))
        wait_until(lambda: len(fb.got(botmesh.W_DONE)) >= n, 10, "%d DONEs" % n)
        again = reconnect(fb)
        wait_until(lambda: len([m for m in fb.got(botmesh.W_DONE) if m.ident == again.ident]) >= n, 10,
                   "the %d DONEs sent again" % n)
        sent = {m.body["jobId"] for m in fb.got(botmesh.W_DONE) if m.ident == again.ident}
        check(sent == {"b%d" % j for j in range(n)}, "all %d DONEs of the burst are sent again" % n, len(sent))

        # The bytes bound: room for about three DONEs of ~1,000 bytes.
        botmesh.DONE_KEEP_BYTES = 3500
        for jid in ("p1", "p2", "p3", "p4"):
            fb.send(again.ident, 0x02, {"jobId": jid, "botType": "pywork", "payload": {"pad": 1000},
                                        "attempt": 1, "timeoutMs": 10000})
            fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.body["jobId"] == jid, what="DONE " + jid)
        third = reconnect(fb)
        fb.wait_for(lambda m: m.cmd == botmesh.W_DONE and m.ident == third.ident and m.body["jobId"] == "p4",
                    what="p4 sent again")
        sent = [m.body["jobId"] for m in fb.got(botmesh.W_DONE) if m.ident == third.ident]
        check(sent == ["p2", "p3", "p4"], "past DONE_KEEP_BYTES the oldest DONEs are dropped", sent)
    finally:
        botmesh.DONE_KEEP_BYTES = keep_bytes
        w.stop(timeout=5)
        fb.close()


def test_worker_bad_config():
    e = raises(lambda: botmesh.Worker(["Bad Type"], lambda p, j: None), ValueError)
    check("Bad Type" in str(e), "a bad bot type is refused before connecting", str(e))
    raises(lambda: botmesh.Worker([], lambda p, j: None), ValueError)
    raises(lambda: botmesh.Worker("x", lambda p, j: None, credit=-1), ValueError)
    raises(lambda: botmesh.Worker("x", lambda p, j: None, isolation="fork"), ValueError)
    e = raises(lambda: botmesh.Worker("x", lambda p, j: None, isolation="process"), TypeError)
    check("module-level function" in str(e), "a handler that cannot be pickled is refused up front", e)
    for name in ("has space", "x" * 129, "caf\u00e9", 7):
        e = raises(lambda: botmesh.Worker("x", lambda p, j: None, name=name), ValueError)
        check("worker name" in str(e), "the worker name %r is refused up front" % (name,), e)


def test_worker_ready_refused():
    """READY refused (NACK bad_request before the broker sent anything else):
    run() raises it, not a loop of READYs."""
    fb = worker_fb(heartbeats=False)
    w = botmesh.Worker("pywork", lambda p, j: None, endpoint=fb.endpoint, heartbeat_ms=50, liveness=2).start()
    try:
        ident = fb.wait_for(lambda m: m.cmd == botmesh.W_READY, what="READY").ident
        fb.send(ident, 0x09, {"code": "bad_request", "message": "name must be 1-128 printable characters"})
        w._thread.join(5)
        check(not w._thread.is_alive(), "the worker's run() ends")
        check(isinstance(w.error, botmesh.BotmeshError) and w.error.code == "bad_request"
              and "refused this worker's READY: name must" in w.error.message,
              "worker.error holds the broker's reason", w.error)
        time.sleep(0.3)             # three heartbeat windows: a looping worker would READY again
        check(len(fb.got(botmesh.W_READY)) == 1, "READY was sent once", len(fb.got(botmesh.W_READY)))
    finally:
        fb.close()



def test_missing_dependency_says_what_to_install():
    # -S: no site-packages, so neither msgpack nor pyzmq can be imported,
    # as in a Python (pyenv, a venv) that lacks them.
    import subprocess
    p = subprocess.run([sys.executable, "-S", "-c",
                        "import sys; sys.path.insert(0, %r); import botmesh"
                        % os.path.join(ROOT, "clients", "python")],
                       capture_output=True, text=True, timeout=30)
    last = (p.stderr.strip().splitlines() or [""])[-1]
    check(p.returncode != 0 and last.startswith("ImportError: botmesh.py needs msgpack and pyzmq")
          and "python3-msgpack" in last and "pip install pyzmq msgpack" in last,
          "importing botmesh without msgpack/pyzmq names the packages to install", p.stderr[-1000:])



def test_node_missing_dependency_says_what_to_install():
    # botmesh.js copied where no node_modules is found, as in a project
    # that has not installed the client's dependencies.
    import shutil
    import subprocess
    import tempfile
    node = shutil.which("node")
    if not node:
        harness.log("node is not installed: skipped")
        return
    with tempfile.TemporaryDirectory(prefix="botmesh-node-") as d:
        shutil.copy(os.path.join(ROOT, "clients", "node", "botmesh.js"), d)
        env = {k: v for k, v in os.environ.items() if k != "NODE_PATH"}
        p = subprocess.run([node, "-e", "require(%r)" % os.path.join(d, "botmesh.js")],
                           capture_output=True, text=True, timeout=30, cwd=d, env=env)
    check(p.returncode != 0 and "botmesh.js needs zeromq@6 and @msgpack/msgpack" in p.stderr
          and "npm ci --prefix" in p.stderr,
          "requiring botmesh.js without its modules names what to install", p.stderr[-1000:])


def lost_subscriptions_broker():
    """A broker whose subscriptions are lost at their first renewal, each
    with another answer: shutting_down (the broker stopping), not_leader (a
    standby), store_unavailable, no answer at all; then a subscription that
    lives.  Each new subscription is followed by an event of its own job."""
    codes = ["shutting_down", "not_leader", "store_unavailable", None]
    subs = []

    def responder(b, m):
        req = m.body.get("req")
        if m.cmd == botmesh.UNSUBSCRIBE:
            return [(0x83, {"req": req})]
        if m.cmd != botmesh.SUBSCRIBE:
            return []
        sid = m.body.get("subscription")
        if sid is None:
            subs.append("s%d" % (len(subs) + 1))
            sid = subs[-1]
            return [(0x83, {"req": req, "subscription": sid, "seq": 0}),
                    (botmesh.EVENT, {"subscription": sid, "seq": 1, "event": "waiting", "jobId": "j-" + sid})]
        n = subs.index(sid)
        if n >= len(codes):
            return [(0x83, {"req": req, "subscription": sid, "seq": 1})]
        if codes[n] is None:
            return []                       # silence: a broker gone
        return [(0x82, {"req": req, "code": codes[n], "message": "lost: " + codes[n]})]
    return responder, len(codes)


def test_client_events_resubscribe():
    """A renewal answered shutting_down, not_leader, store_unavailable or
    not at all is a lost subscription: a reset, a new one, never a raise."""
    responder, lost = lost_subscriptions_broker()
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=1) as c:
            gen = c.events(ttl_ms=600)          # renewals every 0.2 s
            got = []
            try:
                while len(got) < 2 * lost + 1:
                    got.append(next(gen))
            except botmesh.BotmeshError as e:
                raise harness.TestFailure("events() raised %r after %r" % (e, got))
            want = []
            for i in range(1, lost + 2):
                want += [{"event": "reset"}] if i > 1 else []
                want += [("waiting", "j-s%d" % i)]
            got = [(e["event"], e["jobId"]) if "jobId" in e else e for e in got]
            check(got == want, "each lost subscription: a reset, then the new one's events", got)
            gen.close()
            last = fb.got(botmesh.UNSUBSCRIBE)
            check([m.body.get("subscription") for m in last] == ["s%d" % (lost + 1)],
                  "closing the generator unsubscribes the live one", [m.body for m in last])
    finally:
        fb.close()


def test_client_events_outlive_a_timeout():
    """A request of the same client that times out (the broker answers the
    subscription but not the STATUS) drops the client's socket, not its
    events() generators: the loop goes on."""
    seq = [0]

    def responder(b, m):
        req = m.body.get("req")
        if m.cmd != botmesh.SUBSCRIBE:
            return []                       # STATUS: never answered
        seq[0] += 1
        return [(0x83, {"req": req, "subscription": "s1", "seq": seq[0] - 1}),
                (botmesh.EVENT, {"subscription": "s1", "seq": seq[0], "event": "waiting",
                                 "jobId": "j%d" % seq[0]})]
    fb = FakeBroker(responder)
    try:
        with botmesh.Client(fb.endpoint, timeout=1) as c:
            gen = c.events(ttl_ms=600)
            first = next(gen)
            check(first.get("event") == "waiting", "the subscription's first event", first)
            try:
                c.status("j-none", timeout=0.3)
                raise harness.TestFailure("a STATUS the broker never answers: BrokerTimeout")
            except botmesh.BrokerTimeout:
                pass
            try:
                after = next(gen)
            except StopIteration:
                raise harness.TestFailure("events() ended when another request of its client timed out")
            check(isinstance(after, dict) and after.get("event") in ("waiting", "reset"),
                  "events() goes on after the timeout", after)
            gen.close()
    finally:
        fb.close()


def test_endpoints_follow_the_leader():
    """A silent leader, then the standby about to lead: asked every 100 ms, as the C peers do."""
    eps = botmesh.Endpoints("tcp://a:1,tcp://b:2")
    check(eps.current == "tcp://a:1", "the first endpoint first")
    check(eps.next(silent=True) == 0.1 and eps.current == "tcp://b:2", "a silent leader: the next one, 100 ms")
    waits = [eps.next(leader="tcp://a:1") for _ in range(botmesh.Endpoints.QUICK_TRIES)]
    check(eps.current == "tcp://b:2" and waits == [0.1] * botmesh.Endpoints.QUICK_TRIES,
          "the standby that still names the silent leader is asked again every 100 ms", waits)
    check(eps.next(leader="tcp://a:1") == 0.2 and eps.current == "tcp://b:2",
          "after the quick tries, the usual backoff (it holds its lease after all)")
    check(eps.next(leader="tcp://a:1") == 0.4 and eps.current == "tcp://a:1",
          "and the leader it names may be asked again")
    eps.served()
    check(eps.next(leader="tcp://b:2") == 0.1 and eps.current == "tcp://b:2", "a named leader; served resets")


def main():
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            harness.log("==", name)
            fn()


if __name__ == "__main__":
    harness.main(main)

"""POST /flows: a tree of jobs in one request (BullMQ's FlowProducer.add),
each node running after its children, over HTTP.

A real stack: redis, broker, gateway and a worker whose bot ("dep",
tests/broker/depbot.py) answers with what it was given.
- Bad trees are refused whole before any job is made (GET /jobs stays
  empty): a bad node deep down (400 naming children[1].children[0] and
  botType), children not an array and a tree 33 deep (400 invalid_flow),
  BullMQ's data and payload differing (400), 1001 nodes (413
  too_many_jobs, as /invoke/batch beyond MAX_BATCH), 31 levels of 100
  children walked down the first (413, and the gateway lives on), two
  nodes with one idempotency key (400 invalid_idempotency_key).
- A 3-level tree, BullMQ's queueName/data read for one node: 202 with the
  tree of job ids and a made-up flowKey, a node's webhookUrl on loopback
  given /invoke's warning; every child finished before its
  parent started, and each parent's bot got its children's results
  (dependencyResults on by default).  The same body with
  idempotencyKey = flowKey: the same job ids, as duplicates (a node's
  "idempotencyKey": null too: it gets the derived key).
- A child that fails fails its parent dependency_failed.
- A parent refused by the broker (a dependsOn of no job) after its
  children were made: the error with flowKey and the jobs created, saying
  the same body would be refused again (correct the node); the fixed body
  sent with that key completes the flow on the same children.
- A parent refused queue_full (python's queue holds 2, MAX_QUEUE_PYTHON,
  and no worker serves it yet) after its 2 children were queued: 503
  whose message says the same body completes the flow, and it does once
  a worker took the children.
"""
import os

import harness as h
from gwtest import curl, gateway, post_json

BOT = "/usr/bin/python3 " + os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                         "broker", "depbot.py")


def node(n, *children, **more):
    body = dict({"botType": "dep", "payload": {"n": n}}, **more)
    if children:
        body["children"] = list(children)
    return body


def ids(tree):
    """The job ids of an answer's tree, depth first."""
    return [tree["jobId"]] + [i for c in tree.get("children", []) for i in ids(c)]


def test():
    with h.Stack("gw-flows") as s:
        s.redis()
        s.broker(env={"MAX_QUEUE_PYTHON": "2"})
        s.worker("--type", "dep", "--concurrency", "3", env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1, "dep")
        # The webhook manager's default: private targets refused (warned of).
        u = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "0"}).url

        def ended(job):
            def check():
                r = curl(u + "/job/" + job, show=False)
                return r.json if r.json["state"] in h.TERMINAL else None
            return check

        # Refused whole, naming the node; nothing submitted.
        bad = node("r", node("a"), node("b", node("b0", botType="Bad"), node("b1")))
        r = post_json(u + "/flows", bad)
        h.check(r.status == 400 and r.json["error"]["code"] == "invalid_bot_type"
                and "children[1].children[0]" in r.json["error"]["message"]
                and "botType" in r.json["error"]["message"],
                "a bad node: 400 naming children[1].children[0] and botType", r)
        r = post_json(u + "/flows", node("r", children={"a": 1}))
        h.check(r.status == 400 and r.json["error"]["code"] == "invalid_flow"
                and "children" in r.json["error"]["message"], "children not an array: 400", r)
        deep = node("leaf")
        for i in range(32):
            deep = node(i, deep)
        r = post_json(u + "/flows", deep)
        h.check(r.status == 400 and r.json["error"]["code"] == "invalid_flow"
                and "32" in r.json["error"]["message"], "33 levels: 400 invalid_flow", r)
        r = post_json(u + "/flows", node("r", {"queueName": "dep", "data": 1, "payload": 2}))
        h.check(r.status == 400 and "children[0]" in r.json["error"]["message"]
                and "data" in r.json["error"]["message"], "data and payload differ: 400", r)
        big = node("r", *[node(i, *[node(j) for j in range(99)]) for i in range(10)])
        r = post_json(u + "/flows", big, show=False)
        h.check(r.status == 413 and r.json["error"]["code"] == "too_many_jobs",
                "1001 nodes: 413 too_many_jobs", r)
        # Few nodes walked, many children named: each level's first child
        # is walked before its 99 siblings (zeros, refused when reached).
        # The gateway once wrote their slots past its MAX_BATCH-long table
        # before counting them (a heap overflow: it died of SIGSEGV).
        comb = node("leaf")
        for i in range(30):
            comb = node(i, comb, *([0] * 99))
        r = post_json(u + "/flows", comb, show=False)
        h.check(r.status == 413 and r.json["error"]["code"] == "too_many_jobs",
                "31 levels of 100 children each, walked down the first: 413 too_many_jobs", r)
        r = curl(u + "/health")
        h.check(r.status == 200, "the gateway still answers after it", r)
        # One idempotency key for two nodes would be one job to the broker:
        # refused before anything is made, naming the later node.
        r = post_json(u + "/flows", node("r", node("a", idempotencyKey="k/1"), node("b"),
                                         idempotencyKey="k"))
        h.check(r.status == 400 and r.json["error"]["code"] == "invalid_idempotency_key"
                and r.json["error"]["message"].startswith("children[1]: ")
                and '"k/1"' in r.json["error"]["message"],
                "a node's own key equal to another's derived key: 400 naming children[1]", r)
        r = post_json(u + "/flows", node("r", node("a", idempotencyKey="same"),
                                         node("b", idempotencyKey="same")))
        h.check(r.status == 400 and r.json["error"]["code"] == "invalid_idempotency_key"
                and "children[0]" in r.json["error"]["message"],
                "two siblings with one key: 400 naming the other", r)
        r = curl(u + "/jobs")
        h.check(r.status == 200 and r.json["jobs"] == [], "no job was made by a refused flow", r)

        # A 3-level tree.
        tree = node("r", node("a", node("a0", sleepMs=300), node("a1", idempotencyKey=None, webhookUrl="http://127.0.0.1:9/hook")),
                    {"queueName": "dep", "data": {"n": "b"}, "name": "bee"})
        r = post_json(u + "/flows", tree)
        h.check(r.status == 202 and r.json["flowKey"].startswith("flow-")
                and len(r.json["children"]) == 2 and len(r.json["children"][0]["children"]) == 2
                and "children" not in r.json["children"][1]
                and r.json["children"][1].get("ignored") == ["name"]
                and r.json["status"] == "waiting-children"
                and "loopback" in r.json["children"][0]["children"][1].get("warning", "")
                and "warning" not in r.json,
                "202 with the tree of jobs, the top waiting for its children", r)
        answer = r.json
        records = {}

        def check_node(t):
            rec = h.wait_until(ended(t["jobId"]), 30, "job %s to end" % t["jobId"])
            records[t["jobId"]] = rec
            h.check(rec["state"] == "completed", "job %s completed" % t["jobId"], rec)
            kids = [check_node(c) for c in t.get("children", [])]
            for kid in kids:
                h.check(kid["finishedOn"] <= rec["processedOn"],
                        "child %s finished before %s started" % (kid["jobId"], t["jobId"]),
                        kid, rec)
            if kids:
                h.check(rec["result"]["got"]["dependencies"]
                        == {k["jobId"]: k["result"] for k in kids},
                        "%s's bot got its children's results" % t["jobId"], rec)
            return rec
        top = check_node(answer)
        h.check(top["result"]["got"]["payload"] == {"n": "r"}, "the top's own payload", top)
        b = records[answer["children"][1]["jobId"]]
        h.check(b["botType"] == "dep" and b["payload"] == {"n": "b"},
                "queueName and data read as botType and payload", b)

        again = dict(tree, idempotencyKey=answer["flowKey"])
        r = post_json(u + "/flows", again)
        h.check(r.status == 202 and r.json["flowKey"] == answer["flowKey"]
                and ids(r.json) == ids(answer) and r.json.get("duplicate") is True
                and r.json["children"][0]["children"][1].get("duplicate") is True,
                "the same flow again with its key: the same jobs, duplicates", r, answer)

        # A failed child fails its parent.
        r = post_json(u + "/flows", node("p", node("ok"), node("bad", payload={"fail": True}, attempts=1)))
        h.check(r.status == 202, "the failing flow accepted", r)
        rec = h.wait_until(ended(r.json["jobId"]), 30, "the parent to end")
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed",
                "the parent failed dependency_failed", rec)

        # Refused half-way, then completed with the flow key.
        broken = node("p", node("c0"), node("c1"), dependsOn=["no-such-job"])
        r = post_json(u + "/flows", broken)
        h.check(r.status == 400 and r.json["flowKey"].startswith("flow-")
                and len(r.json["created"]) == 2
                and {c["node"] for c in r.json["created"]} == {"children[0]", "children[1]"}
                and r.json["flowKey"] in r.json["error"]["message"]
                and "the same body again would be refused the same way: correct the refused node"
                in r.json["error"]["message"]
                and "to complete the flow" not in r.json["error"]["message"],
                "the parent refused by the broker: the flow key and the 2 jobs made, no completion "
                "promised by the same body", r)
        made = {c["node"]: c["jobId"] for c in r.json["created"]}
        fixed = node("p", node("c0"), node("c1"), idempotencyKey=r.json["flowKey"])
        r = post_json(u + "/flows", fixed)
        h.check(r.status == 202 and [c["jobId"] for c in r.json["children"]]
                == [made["children[0]"], made["children[1]"]]
                and all(c.get("duplicate") for c in r.json["children"])
                and not r.json.get("duplicate"),
                "the retry with the flow key: the same children, a new parent", r)
        rec = h.wait_until(ended(r.json["jobId"]), 30, "the resumed flow to end")
        h.check(rec["state"] == "completed" and rec["dependsOn"] == list(made.values()),
                "the resumed flow's parent completed after the children made first", rec)

        # Refused half-way for a reason that passes: the same body completes it.
        full = {"botType": "python", "payload": {"n": "p"}, "children": [
            {"botType": "python", "payload": {"n": "c0"}}, {"botType": "python", "payload": {"n": "c1"}}]}
        r = post_json(u + "/flows", full)
        h.check(r.status == 503 and r.json["error"]["code"] == "queue_full"
                and len(r.json["created"]) == 2
                and r.json["error"]["message"].endswith(
                    'send the same body with idempotencyKey "%s" on its top node to complete the flow'
                    % r.json["flowKey"]),
                "the parent refused queue_full: 503 saying the same body completes the flow", r)
        made = [c["jobId"] for c in r.json["created"]]
        s.worker("--type", "python", env={"BOT_PYTHON_CMD": BOT})
        for job in made:
            h.wait_until(ended(job), 30, "child %s to end" % job)
        r = post_json(u + "/flows", dict(full, idempotencyKey=r.json["flowKey"]))
        h.check(r.status == 202 and [c["jobId"] for c in r.json["children"]] == made,
                "the same body with the flow key: accepted on the same children", r)
        rec = h.wait_until(ended(r.json["jobId"]), 30, "the completed flow to end")
        h.check(rec["state"] == "completed", "the completed flow's parent completed", rec)


if __name__ == "__main__":
    h.main(test)

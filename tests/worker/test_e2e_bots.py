"""One job of each bot type runs its real bot end to end: botmesh-client ->
botmesh-broker -> botmesh-worker -> python/node/java bot, and the result
comes back through `botmesh-client submit ... --wait`.

Checks the bots' real work (statistics of a deterministic dataset, records
transformed, batch checksums), that progress reached the broker, and that
each bot saw its job id and attempt; a bad payload fails the job at once
(exit 78, never retried).  A payload with values JSON cannot hold (bytes,
NaN, non-string keys) reaches a JSON bot as docs/protocol.md 7a says.
"""
import json
import subprocess

import harness
from harness import check, log


def client(s, *args, timeout=60):
    out = subprocess.run([s.bin("botmesh-client"), "--endpoint", s.endpoint] + list(args),
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise harness.TestFailure("botmesh-client %s: rc=%d %s %s" % (args, out.returncode,
                                                                      out.stdout, out.stderr))
    return json.loads(out.stdout)


def main():
    with harness.Stack("worker-e2e-bots") as s:
        s.broker(redis=False)
        # echo: /bin/cat, so its result is the JSON it got on stdin.
        w = s.worker("--type", "python", "--type", "node,java,echo", "--concurrency", "3",
                     env={"BOT_ECHO_CMD": "/bin/cat"})
        s.wait_workers(1)

        # python: data_analysis over a dataset generated from its name.
        rec = client(s, "submit", "python", json.dumps(
            {"task": "data_analysis", "dataset": "sales_2024", "size": 2000}), "--wait")
        check(rec["state"] == "completed", "python job completed", rec)
        r = rec["result"]
        st = r["stats"]
        check(r["bot"] == "python" and r["dataset"] == "sales_2024" and st["count"] == 2000,
              "python bot analysed dataset sales_2024", r)
        check(st["min"] <= st["median"] <= st["max"] and st["min"] < st["mean"] < st["max"]
              and st["stdev"] > 0, "statistics are consistent", st)
        check(r["jobId"] == rec["jobId"] and r["attempt"] == 1, "bot saw BOT_JOB_ID and BOT_ATTEMPT", r)
        check(rec["progress"] == 100, "progress reached 100 on the broker", rec.get("progress"))
        rec2 = client(s, "submit", "python", json.dumps(
            {"task": "data_analysis", "dataset": "sales_2024", "size": 2000}), "--wait")
        check(rec2["result"]["stats"] == st, "same dataset name -> same statistics (deterministic)")
        rec3 = client(s, "submit", "python", json.dumps(
            {"task": "data_analysis", "dataset": "other", "size": 2000}), "--wait")
        check(rec3["result"]["stats"]["mean"] != st["mean"], "another dataset -> other numbers")

        # node: process_api transforms records.
        records = [{"user_name": "  Ada ", "Email-Address": "ADA@Example.COM", "score": 3},
                   {"user_name": "Linus", "Email-Address": "linus@kernel.ORG", "score": 4}]
        rec = client(s, "submit", "node", json.dumps(
            {"action": "process_api", "endpoint": "/users", "records": records}), "--wait")
        check(rec["state"] == "completed", "node job completed", rec)
        r = rec["result"]
        out = r["records"]
        check(r["bot"] == "node" and r["summary"]["count"] == 2 and r["summary"]["totals"]["score"] == 7,
              "node bot summarised the records", r["summary"])
        check(out[0]["userName"] == "Ada" and out[0]["emailAddress"] == "ada@example.com"
              and len(out[0]["checksum"]) == 12, "records transformed (camelCase, trimmed, e-mail "
              "lower-cased, checksum)", out[0])
        rec = client(s, "submit", "node", json.dumps({"action": "process_api", "endpoint": "/users",
                                                       "count": 25}), "--wait")
        check(rec["state"] == "completed" and rec["result"]["summary"]["count"] == 25,
              "node bot generates records from the endpoint", rec["result"]["summary"])

        # java: batch_process over N records.
        rec = client(s, "submit", "java", json.dumps({"operation": "batch_process", "records": 5000}),
                     "--wait")
        check(rec["state"] == "completed", "java job completed", rec)
        r = rec["result"]
        check(r["bot"] == "java" and r["processed"] == 5000 and len(r["batchChecksum"]) == 8
              and len(r["sample"]) == 5, "java bot processed the batch", r)
        rec2 = client(s, "submit", "java", json.dumps({"operation": "batch_process", "records": 5000}),
                      "--wait")
        check(rec2["result"]["batchChecksum"] == r["batchChecksum"], "same batch -> same checksum")
        check(rec["progress"] == 100, "java progress reached 100", rec.get("progress"))

        # A bot that fails on request: bot_failed with its stderr.
        for bot_type in ("python", "node", "java"):
            body = client(s, "submit", bot_type, json.dumps({"fail": "no data for %s" % bot_type}))
            rec = s.client().wait(body["jobId"], timeout=30)
            check(rec["state"] == "failed" and rec["error"]["code"] == "bot_failed"
                  and rec["error"]["message"] == "no data for %s" % bot_type,
                  "%s bot asked to fail -> bot_failed with its stderr" % bot_type, rec.get("error"))

        # Bad input: each bot exits 78, so the job fails at once, not retried.
        bad = {"python": {"task": "resize"}, "node": {"action": "resize"},
               "java": {"operation": "resize"}}
        for bot_type, payload in bad.items():
            body = client(s, "submit", bot_type, json.dumps(payload))
            rec = s.client().wait(body["jobId"], timeout=30)
            err = rec.get("error") or {}
            check(rec["state"] == "failed" and err.get("code") == "bot_failed"
                  and err.get("exitCode") == 78 and "bad input" in err.get("message", "")
                  and len(rec.get("attemptErrors") or []) == 1,
                  "%s bot on bad input -> exit 78, failed once, not retried" % bot_type, rec)

        # Values JSON cannot hold, sent by a msgpack client: what a JSON bot
        # reads on stdin (docs/protocol.md 7a), and one worker log line.
        c = s.client()
        jid = c.submit("echo", {"b": b"\x00\x01", "n": float("nan"), "i": float("-inf"), 1: "one",
                                 1.5: "dropped", "ok": [1, "x"]})
        rec = c.wait(jid, timeout=30)
        check(rec["state"] == "completed"
              and rec["result"] == {"b": None, "n": None, "i": None, "1": "one", "ok": [1, "x"]},
              "a JSON bot gets bytes and NaN/Infinity as null, the key 1 as \"1\", a float key left out",
              rec)
        lines = [ln for ln in w.output().splitlines() if "values JSON cannot hold" in ln]
        check(len(lines) == 1 and jid in lines[0] and "bin as null" in lines[0]
              and "NaN/Infinity as null" in lines[0] and "integer map keys as strings" in lines[0]
              and "other map keys left out" in lines[0],
              "the worker logs one line with the job id naming what it converted", lines)
        jid = c.submit("echo", {"plain": [1, 2.5, "s", None, True]})
        rec = c.wait(jid, timeout=30)
        check(rec["result"] == {"plain": [1, 2.5, "s", None, True]}, "a JSON-only payload arrives as sent", rec)
        check(not any(jid in ln and "values JSON cannot hold" in ln for ln in w.output().splitlines()),
              "no such line for a payload JSON holds")
        c.close()

        stats = client(s, "stats")
        log("stats totals:", stats["totals"])
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

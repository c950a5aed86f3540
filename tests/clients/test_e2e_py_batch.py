"""The Python client's submit_many against a real broker (Redis AOF on) and
a real C worker: each job's outcome in order, refusals returned not raised,
more than 1,000 jobs split into SUBMIT_MANY messages of at most 1,000,
every accepted job completed once with its own payload.
"""
from e2elib import harness, botmesh
from harness import check


def main():
    with harness.Stack("clients-batch") as s:
        s.redis()
        s.broker()
        s.worker("--type", "python", "--concurrency", "200", "--noop", name="noop-worker")
        c = botmesh.Client(s.endpoint, timeout=20)
        harness.wait_until(lambda: c.stats()["workers"], 15, "the worker to register")

        # Mixed: accepted, refused by type, refused by field, accepted with notify
        out = c.submit_many([
            {"bot_type": "python", "payload": {"n": 1}},
            {"bot_type": "nope", "payload": {}},
            {"bot_type": "python", "priority": -1},
            {"bot_type": "python", "payload": {"n": 2}, "notify": True, "idempotency_key": "k-batch"},
            {"botType": "python", "payload": {"n": 3}},
        ])
        check(len(out) == 5, "one outcome per job", out)
        check(isinstance(out[0], botmesh.JobId) and out[0].duplicate is False, "job 0 accepted", out[0])
        check(isinstance(out[1], botmesh.Rejected) and out[1].code == "unknown_bot_type",
              "job 1 refused unknown_bot_type, returned not raised", out[1])
        check(isinstance(out[2], botmesh.Rejected) and out[2].code == "bad_request"
              and "priority" in out[2].message, "job 2 refused bad_request naming priority", out[2])
        check(isinstance(out[3], botmesh.JobId), "job 3 accepted", out[3])
        check(isinstance(out[4], botmesh.JobId) and c.status(out[4])["botType"] == "python",
              "job 4, given botType as the Node client names it, accepted", out[4])
        again = c.submit_many([{"bot_type": "python", "payload": {"n": 2}, "idempotency_key": "k-batch"}])
        check(again[0] == out[3] and again[0].duplicate is True,
              "the same idempotency key in a later batch is the first job, duplicate", again)
        rec = c.wait(out[3], timeout=30)
        check(rec["state"] == "completed", "the notify job completed", rec)

        # 2,500 jobs: three SUBMIT_MANY messages, every job accepted and run
        many = c.submit_many([{"bot_type": "python", "payload": {"i": i}} for i in range(2500)])
        ids = [j for j in many if isinstance(j, botmesh.JobId)]
        check(len(ids) == 2500 and len(set(ids)) == 2500, "2,500 distinct jobs accepted",
              [j for j in many if not isinstance(j, botmesh.JobId)][:3])
        harness.wait_until(lambda: c.stats()["types"]["python"]["completed"] >= 2503, 60,
                           "every accepted job to complete")
        st = c.stats()["types"]["python"]
        check(st["completed"] == 2503 and st["failed"] == 0 and st["waiting"] == 0,
              "2,503 completed (3 + 2,500), none failed, none left waiting", st)
        rec = c.status(ids[-1])
        check(rec["payload"] == {"i": 2499}, "the last job kept its own payload", rec["payload"])

        # Large jobs: split by size too (5 x 600 KB is more than one 2 MiB frame)
        large = c.submit_many([{"bot_type": "python", "payload": {"blob": "y" * 600000, "i": i}}
                               for i in range(5)])
        check(all(isinstance(j, botmesh.JobId) for j in large),
              "5 jobs of 600 KB accepted (sent in messages within the frame size)", large)
        check(c.status(large[4])["payload"]["i"] == 4, "the last large job is whole")

        try:
            c.submit_many([])
        except botmesh.Rejected as e:
            check(e.code == "bad_request", "submit_many([]) raises bad_request", e)
        else:
            raise harness.TestFailure("submit_many([]) did not raise")
        c.close()


if __name__ == "__main__":
    harness.main(main)

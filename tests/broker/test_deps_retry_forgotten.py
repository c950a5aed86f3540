"""A job that waits for a failed dependency's RETRY ends when that
dependency is removed instead.

A real redis-server, broker (RETRY_ATTEMPTS 1) and botmesh-worker whose
bot ("dep", depbot.py) fails when asked:

G fails; W (dependsOn [G]) fails dependency_failed; RETRY of W makes it
wait in waiting-children for G's own RETRY.  REMOVE of G: W ends failed
dependency_failed naming G, and STATS counts none waiting (before, W
waited for a RETRY that could no longer come, until a restart failed it).
"""
import os
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
REMOVE, RETRY = 0x0C, 0x05


def test():
    with h.Stack("deps-retry-forgotten") as s:
        s.redis()
        s.broker(env={"RETRY_ATTEMPTS": "1"})
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1",
                 env={"BOT_DEP_CMD": "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")})
        s.wait_workers(1)
        c = s.client()

        g = c.submit("dep", {"fail": True})
        w = c.submit("dep", {"n": "w"}, dependsOn=[g])
        rec = c.wait(w)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed",
                "W failed by G", rec)
        cmd, r = c.request(RETRY, {"jobId": w})
        h.check(cmd == h.ACCEPTED, "RETRY of W accepted", cmd, r)
        h.wait_until(lambda: c.status(w)["state"] == "waiting-children", 10,
                     "W to wait for G's RETRY")
        cmd, r = c.request(REMOVE, {"jobId": g})
        h.check(cmd == h.REPLY and r.get("removed") is True, "G is removed", cmd, r)
        rec = h.wait_until(lambda: (lambda j: j if j["state"] != "waiting-children" else None)(
            c.status(w)), 10, "W to leave waiting-children once G is removed")
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed"
                and g in rec["error"]["message"], "W failed dependency_failed naming G", rec)
        h.check(c.stats()["types"]["dep"]["waitingChildren"] == 0, "STATS: none waiting",
                c.stats()["types"]["dep"])


if __name__ == "__main__":
    h.main(test)

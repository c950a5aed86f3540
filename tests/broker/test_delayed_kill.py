"""10,000 delayed jobs across a kill -9 of the broker all run, once, and none
before its due time.

Real redis-server (AOF), real broker, two real botmesh-worker processes in
--simulate mode.  10,000 SUBMITs with runAt spread over 10-13 s ahead are
ACCEPTED (state delayed); the broker is killed with SIGKILL before the first
is due and started again; every job must then complete, each dispatched
once (attempts 1), each started at or after its runAt.
"""
import time
import harness as h

N = 10000
#  The first due time, after the first submission: room for 10,000 SUBMITs
#  and the kill on a loaded 2-core machine, so that none is due before it.
LEAD = 10000


def test():
    env = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "MAX_PYTHON_BOTS": "50"}
    wenv = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "SIM_DURATION_MS": "1-3"}
    with h.Stack("delayed-kill") as s:
        s.redis()
        broker = s.broker(env=env)
        for i in range(2):
            s.worker("--simulate", "--type", "python", "--concurrency", "25", "--name", "sim-%d" % i, env=wenv)
        s.wait_workers(2, "python")
        c = s.client()
        t0 = int(time.time() * 1000)
        due = {}
        for i in range(N):
            c.req += 1
            c.send(h.SUBMIT, {"req": c.req, "botType": "python", "payload": {"i": i},
                              "runAt": t0 + LEAD + (i * 3000) // N})
        got = 0
        while got < N:
            cmd, r = c.recv(timeout=30)
            h.check(cmd == h.ACCEPTED and r.get("delayed") is True, "every submission ACCEPTED, delayed", r)
            due[r["jobId"]] = t0 + LEAD + ((r["req"] - 1) * 3000) // N
            got += 1
        h.log("10,000 delayed jobs accepted in %.1f s" % (time.time() - t0 / 1000.0))
        st = c.stats()["types"]["python"]
        h.check(time.time() * 1000 < t0 + LEAD, "all accepted before the first due time (else LEAD is too short)")
        h.check(st["completed"] == 0 and st["delayed"] == N, "nothing ran yet: 10,000 delayed", st)
        broker.kill()
        h.log("broker killed with SIGKILL, %d ms after the first submission" % (time.time() * 1000 - t0))
        s.broker(env=env)
        s.wait_workers(2, "python", timeout=20)
        c = s.client()
        h.wait_until(lambda: c.stats()["types"]["python"]["completed"] >= N, 120,
                     "all 10,000 jobs to complete after the restart")
        early, twice, lost = [], 0, []
        for jid, at in due.items():
            rec = c.status(jid)
            if not rec or rec["state"] != "completed":
                lost.append((jid, rec and rec["state"]))
                continue
            if rec["startedAt"] < at:
                early.append((jid, at - rec["startedAt"]))
            if rec["attempts"] != 1:
                twice += 1
        h.log("completed %d, early %d, dispatched more than once %d, lost %d"
              % (N - len(lost), len(early), twice, len(lost)))
        h.check(not lost, "no delayed job lost across kill -9", lost[:5])
        h.check(not early, "no job started before its runAt", early[:5])
        h.check(twice == 0, "each job dispatched once")
        h.check(int(s.redis_cli("SCARD", "botmesh:{bm}:unfinished")) == 0, "the live set is empty")


if __name__ == "__main__":
    h.main(test)

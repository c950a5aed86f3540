"""Nothing accepted is lost: kill -9 the broker with 2,000 jobs in play.

Real redis-server (AOF), real broker, two real botmesh-worker processes in
--simulate mode (bots of 10-50 ms).  The broker is killed with SIGKILL while
jobs are queued and running, then started again: every ACCEPTED job must
reach a terminal state; jobs that ran twice (at-least-once) are counted.
"""
import time
import harness as h

N = 2000


def test():
    env = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "MAX_PYTHON_BOTS": "40"}
    wenv = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "SIM_DURATION_MS": "10-50"}
    with h.Stack("restart") as s:
        s.redis()
        broker = s.broker(env=env)
        for i in range(2):
            s.worker("--simulate", "--type", "python", "--concurrency", "25", "--name", "sim-%d" % i, env=wenv)
        s.wait_workers(2, "python")
        c = s.client()

        # Pipelined submissions: all sent, then all answers read.
        for i in range(N):
            c.req += 1
            c.send(h.SUBMIT, {"req": c.req, "botType": "python", "payload": {"i": i}})
        accepted = []
        while len(accepted) < N:
            cmd, r = c.recv(timeout=30)
            if cmd != h.ACCEPTED:
                h.check(False, "every submission accepted", r)
            accepted.append(r["jobId"])
        h.check(len(set(accepted)) == N, "%d distinct jobs ACCEPTED" % N)

        def completed():
            return c.stats()["types"]["python"]["completed"]
        h.wait_until(lambda: completed() >= 300, 60, "300 jobs completed before the crash")
        st = c.stats()["types"]["python"]
        h.log("at the crash: completed %d, running %d, waiting %d" % (st["completed"], st["running"], st["waiting"]))
        h.check(st["running"] > 0 and st["waiting"] > 0, "jobs are both running and queued at the crash", st)
        broker.kill()
        h.log("broker killed with SIGKILL")
        broker = s.broker(env=env)
        s.wait_workers(2, "python", timeout=20)
        h.log("workers re-registered with the new broker")

        def unfinished():
            return int(s.redis_cli("SCARD", "botmesh:{bm}:unfinished"))
        h.wait_until(lambda: unfinished() == 0, 120, "every job to reach a terminal state")
        states, twice, lost = {}, 0, []
        for jid in accepted:
            rec = c.status(jid)
            if rec is None or rec["state"] not in h.TERMINAL:
                lost.append((jid, rec and rec["state"]))
                continue
            states[rec["state"]] = states.get(rec["state"], 0) + 1
            if rec["attempts"] > 1:
                twice += 1
        h.log("accepted %d, %r, ran more than once %d, lost %d" % (N, states, twice, len(lost)))
        h.check(not lost, "no ACCEPTED job is lost", lost[:5])
        h.check(states.get("completed", 0) == N, "all %d completed" % N, states)


if __name__ == "__main__":
    h.main(test)

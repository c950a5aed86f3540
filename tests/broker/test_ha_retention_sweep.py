"""Only the leading broker sweeps finished records (BROKER_HA=redis): a
standby never deletes one, even past its retention; the broker that takes
over from a killed leader does.

Two real brokers on one real redis-server, COMPLETED_JOB_TTL /
FAILED_JOB_TTL of 2 s and a lease of 12 s.  A fake worker ends a completed
and a failed job on the leader, which is then killed with SIGKILL: its
lease runs on in Redis, so the other broker stays a standby (PING answers
not_leader) well past the records' retention and its sweep interval, and
the records must still be in Redis then.  Once the lease has run out the
other broker leads, and its sweep deletes both records.
"""
import time
import harness as h
import hatest
from fakeworker import FakeWorker

P = "botmesh:{bm}:"
TTL_S = 2
LEASE_MS = 12000


def key(job_id):
    return P + "job:" + job_id


def test():
    env = {"COMPLETED_JOB_TTL": str(TTL_S), "FAILED_JOB_TTL": str(TTL_S), "BROKER_LEASE_MS": str(LEASE_MS)}
    with h.Stack("ha-retention-sweep") as s:
        s.redis()
        pair = hatest.HaPair(s, env)
        first = pair.wait_leader()
        second = pair.other(first)
        h.log("leader: %s, standby: %s" % (first, second))

        c = h.Client(pair.endpoint(first))
        w = FakeWorker(pair.endpoint(first), "fw", ["sweeptype"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 10, "the worker to register with the leader")
        ok = c.submit("sweeptype", {})
        w.done(w.recv_job(5)["jobId"], result={"r": 1})
        c.wait(ok)
        bad = c.submit("sweeptype", {}, attempts=1)
        w.done(w.recv_job(5)["jobId"], ok=False)
        c.wait(bad)
        t_end = time.monotonic()
        w.close()
        c.close()
        for jid, which in ((ok, "completed"), (bad, "failed")):
            h.check(s.redis_cli("HGET", key(jid), "state") == which, "%s is %s in Redis" % (jid, which))

        pair.procs[first].kill()
        t_kill = time.monotonic()
        h.log("leader %s killed with SIGKILL %.1f s after the jobs ended" % (first, t_kill - t_end))
        h.check(s.redis_cli("EXISTS", key(ok)) == "1" and s.redis_cli("EXISTS", key(bad)) == "1",
                "both records are there when the leader is killed (within their retention)")

        # The standby, past the retention and several of its sweep
        # intervals (1 s here): the records stay, the lease still held.
        held_until = t_kill + LEASE_MS / 1000.0 * 0.75
        h.check(time.monotonic() < t_end + TTL_S + 1,
                "the leader was killed soon after the jobs ended (slow machine)", time.monotonic() - t_end)
        watched = 0
        while time.monotonic() < held_until:
            r = hatest.ping(pair.endpoint(second))
            if r and r[0] == h.REPLY:
                break
            if time.monotonic() - t_end > TTL_S + 2:
                watched += 1
                h.check(r is not None and r[0] == h.REJECTED and r[1].get("code") == "not_leader",
                        "%s is still a standby under the killed leader's lease" % second, r)
                h.check(s.redis_cli("EXISTS", key(ok)) == "1" and s.redis_cli("EXISTS", key(bad)) == "1",
                        "the standby deletes no record, %.1f s after the jobs ended (retention %d s)"
                        % (time.monotonic() - t_end, TTL_S))
            time.sleep(0.2)
        h.check(watched >= 10, "the standby was watched past the retention for a while", watched)
        h.log("records kept by the standby until %.1f s after the jobs ended" % (time.monotonic() - t_end))

        # The lease runs out: the standby leads and sweeps.
        pair.wait_leader(timeout=LEASE_MS / 1000.0 + 15)
        h.check(pair.leader_name() == second, "%s leads once the killed leader's lease ran out" % second)
        t_lead = time.monotonic()
        for jid in (ok, bad):
            h.wait_until(lambda: s.redis_cli("EXISTS", key(jid)) == "0", 15,
                         "the new leader to delete the record of %s" % jid)
        h.log("records deleted %.1f s after %s took over" % (time.monotonic() - t_lead, second))
        for jid, which in ((ok, "completed"), (bad, "failed")):
            h.wait_until(lambda: s.redis_cli("ZSCORE", P + "finished:%s:sweeptype" % which, jid) == "",
                         5, "the id of %s to leave finished:%s" % (jid, which))


if __name__ == "__main__":
    h.main(test)

"""A Python or Node worker told DISCONNECT replaced while it stops does not
register again (docs/protocol.md section 5, "One name, one live worker").

    test_e2e_replaced_stopping.py python|node

A real broker (no Redis). Worker A (credit 1) runs a job that sleeps 8 s
and is sent SIGTERM: it stops, waiting for the job in its grace (10 s).
Worker B starts under the same name and replaces A's connection. A logs
one WARNING naming the name and B's process, does not register again (the
broker logs one replacement, and B stays registered) and exits at once,
not after its job (its handler is told: job.cancelled, job.signal); the broker ran A's job again on B, where it completes.
"""
import re
import signal
import time

from e2elib import harness, botmesh, client_side, side_worker, wait_worker
from harness import check, wait_until


def twin(stack, side, proc_name):
    return side_worker(stack, side, proc_name, "twin", 1)


def main():
    side = client_side()
    with harness.Stack("clients-replaced-stopping-" + side) as s:
        broker = s.broker(redis=False)
        bot_type = "pywork" if side == "python" else "nodework"
        c = botmesh.Client(s.endpoint, timeout=5)
        a = twin(s, side, "twin-a")
        wait_worker(c, "twin")
        jid = c.submit(bot_type, {"sleepMs": 8000}, attempts=1)
        wait_until(lambda: "START %s" % jid in a.output(), 10, "A to start the job")
        a.signal(signal.SIGTERM)
        wait_until(lambda: re.search("stopping \\(credit 0, 1 jobs running\\)", a.output()), 10,
                   "A to stop, its job running")
        b = twin(s, side, "twin-b")
        wait_until(lambda: "replaces connection" in broker.output(), 10, "B to replace A's connection")
        started = time.monotonic()
        wait_until(lambda: not a.alive(), 5, "A to exit at once (its job sleeps 8 s)")
        out = a.output()
        check(re.search(r"replaced this worker's connection while it stops: another process registered with "
                        r"the same name twin \(pid %d at 127\.0\.0\.1\); not registering again" % b.pid, out),
              "A logs one WARNING naming the name and B's process", out[-2000:])
        check(len(re.findall("while it stops", out)) == 1, "only one")
        job = c.wait(jid, timeout=20)
        check(job["state"] == "completed", "the job, queued again by the broker, completes on B", job)
        check("START %s" % jid in b.output(), "B ran it")
        replaced = re.findall("replaces connection", broker.output())
        check(len(replaced) == 1, "the broker logged one replacement: A did not register again "
              "(%.1fs after it)" % (time.monotonic() - started), broker.output()[-3000:])
        check([w["pid"] for w in c.stats()["workers"] if w["name"] == "twin"] == [b.pid],
              "B holds the name", c.stats()["workers"])
        c.close()


if __name__ == "__main__":
    harness.main(main)

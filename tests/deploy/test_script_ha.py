"""deploy.script_ha - ./botmesh up --ha: two brokers, status names the leader.

The local stack as deploy.script starts it (private var directory, ports of
its own, simulated bots), with --ha: `up` starts broker and broker-2 (the
next port) with BROKER_HA=redis and gives every peer both endpoints;
`status` shows exactly one broker as LEADER, the other as standby, and a
leader line; a job runs end to end.  `restart broker broker-2` restarts
them one at a time, the standby first, then the leader once the standby
waits for the lease: the gateway's /ready answers 200 throughout but for
the hand-over (well under a second, where both at once left no broker
for seconds), a job submitted during the restart completes, and the
other broker leads after.  The leader is killed with SIGKILL:
`status` names the other broker as leader within a few seconds, with the
next epoch, and a job submitted then runs end to end too (gateway and
workers followed), and `logs broker` shows both brokers' logs.  `down` leaves
no process behind.
"""
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

import deploylib as d
from harness import check, free_port, log, main, wait_until

import test_script as ts


def free_pair():
    """A port p with p + 1 free too (the brokers', the metrics ports),
    neither of them given to anything else in this test."""
    return free_port(run=2)


def status_rows(e):
    """(rc, {instance: health}, leader line, text) of ./botmesh status."""
    p = e.run("status", timeout=60)
    rows, leader = {}, None
    for line in p.stdout.splitlines():
        m = re.match(r"^(broker(?:-2)?)\s+\S+\s+\d+ \(metrics \d+\)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
        if line.strip().startswith("leader "):
            leader = line.strip()[len("leader "):].strip()
    return p.returncode, rows, leader, ts.show(p)


def leader_of(rows):
    leaders = [n for n, h in rows.items() if h.startswith("up, LEADER")]
    return leaders[0] if len(leaders) == 1 else None


def invoke_ok(e, what):
    p = e.run("invoke", "python", '{"task":"ha"}', "--wait", "--timeout", "60", timeout=90)
    check(p.returncode == 0 and '"completed"' in p.stdout, "invoke --wait completes %s" % what, ts.show(p))


def ready(e):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ready" % e.ports["gw"], timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def rolling_restart(e, first, second):
    """restart broker broker-2 while the gateway runs: the standby (second)
    first, then the leader (first); /ready polled all along.  Returns the
    new (leader, standby)."""
    stop, down, longest = threading.Event(), [None], [0.0]

    def poll():
        while not stop.is_set():
            now = time.monotonic()
            if ready(e):
                down[0] = None
            else:
                down[0] = down[0] or now
                longest[0] = max(longest[0], now - down[0])
            time.sleep(0.02)
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    job = subprocess.Popen([ts.SCRIPT, "invoke", "python", '{"task":"ha"}', "--delay-ms", "1500", "--wait",
                            "--timeout", "90"], env=e.env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        p = e.run("restart", "broker", "broker-2", timeout=240)
    finally:
        stop.set()
        t.join(5)
    out = p.stdout
    check(p.returncode == 0 and "botmesh: restarted" in out, "restart broker broker-2", ts.show(p))
    log("gateway /ready did not answer 200 for at most %.2f s during the restart" % longest[0])
    check(longest[0] < 1.5, "a broker leads throughout the restart (/ready down for %.2f s at most)"
          % longest[0])
    at = [out.find(m) for m in ("%s: stopped" % second, "%s: started" % second, "%s: up, standby" % second,
                                "%s: stopped" % first, "%s: started" % first)]
    check(-1 < at[0] < at[1] < at[2] < at[3] < at[4],
          "the standby %s restarts first and waits for the lease, then the leader %s" % (second, first), out)
    job_out, job_err = job.communicate(timeout=120)
    check(job.returncode == 0 and '"completed"' in job_out, "a job submitted during the restart completes",
          job.returncode, job_out, job_err)
    rc, rows, leader, text = status_rows(e)
    check(rc == 0 and leader_of(rows) == second and rows[first] == "up, standby",
          "after it %s leads and %s stands by" % (second, first), text)
    return second, first


def test():
    if not d.binary("botmesh-broker") or not d.binary("botmesh-gateway") or not d.binary("botmesh-worker"):
        d.skip("broker, gateway or worker not built yet")
    e = ts.Env()
    broker, metrics = free_pair(), free_pair()
    e.env.update({"BROKER_ENDPOINT": "tcp://127.0.0.1:%d" % broker, "BROKER_METRICS_PORT": str(metrics),
                  "BROKER_LEASE_MS": "1000"})
    try:
        p = e.run("up", "--ha", timeout=240)
        check(p.returncode == 0, "up --ha succeeds", ts.show(p))
        pids = e.pids()
        check("broker" in pids and "broker-2" in pids, "up --ha starts broker and broker-2", sorted(pids))
        check("brokers: broker" in p.stdout and "leads" in p.stdout, "up says which broker leads", ts.show(p))
        env2 = open("/proc/%d/environ" % pids["broker-2"], "rb").read().split(b"\0")
        check(b"BROKER_HA=redis" in env2 and ("BROKER_ENDPOINT=tcp://127.0.0.1:%d" % (broker + 1)).encode() in env2,
              "broker-2 runs with BROKER_HA=redis on the next port")
        envw = open("/proc/%d/environ" % pids["gateway"], "rb").read().split(b"\0")
        both = "BROKER_ENDPOINT=tcp://127.0.0.1:%d,tcp://127.0.0.1:%d" % (broker, broker + 1)
        check(both.encode() in envw, "the gateway gets both endpoints", both)

        rc, rows, leader, text = status_rows(e)
        check(rc == 0, "status: everything up", text)
        first = leader_of(rows)
        check(first is not None, "status shows exactly one broker as LEADER", rows)
        second = "broker-2" if first == "broker" else "broker"
        check(rows[second] == "up, standby", "status shows the other broker as standby", rows)
        port = broker if first == "broker" else broker + 1
        check(leader == "%s (tcp://127.0.0.1:%d, epoch 1)" % (first, port), "status's leader line", leader, text)
        invoke_ok(e, "with two brokers")
        first, second = rolling_restart(e, first, second)
        pids = e.pids()
        epoch = int(re.search(r"epoch (\d+)\)$", status_rows(e)[2]).group(1))

        os.kill(pids[first], signal.SIGKILL)
        killed = time.monotonic()
        log("leader %s killed with SIGKILL" % first)

        def took_over():
            rc, rows, leader, text = status_rows(e)
            return (rows, leader) if leader_of(rows) == second else None
        rows, leader = wait_until(took_over, 30, "status to name %s as leader" % second, interval=0.5)
        log("status names the new leader after %.1f s" % (time.monotonic() - killed))
        check(rows[first].startswith("DOWN"), "status shows the killed broker down", rows)
        check(leader.startswith("%s (" % second) and leader.endswith("epoch %d)" % (epoch + 1)),
              "the leader line names %s at the next epoch, %d" % (second, epoch + 1), leader)
        invoke_ok(e, "after the failover")
        # logs broker follows both brokers, whichever leads; each block of
        # lines under the name of its log.
        p = e.run("logs", "broker", "--no-follow", "-n", "3")
        heads = sorted(l for l in p.stdout.splitlines() if l.startswith("==> "))
        check(p.returncode == 0 and [os.path.basename(h[4:-4].strip()) for h in heads]
              == ["broker-2.log", "broker.log"], "logs broker shows broker.log and broker-2.log", ts.show(p))

        p = e.run("down", timeout=120)
        check(p.returncode == 0, "down succeeds", ts.show(p))
        left = [n for n, pid in pids.items() if ts.alive(pid)]
        check(not left, "down leaves no process behind", left)
        reports = ts.sanitizer_reports(os.path.join(e.var, "log"))
        check(not reports, "no sanitizer report in any service's log", reports)
    finally:
        e.cleanup()


if __name__ == "__main__":
    main(test)

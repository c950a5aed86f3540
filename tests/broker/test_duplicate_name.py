"""Two live workers under one name, a worker restarted under its name, and
the broker's port open to the network (protocol.md section 5, "One name,
one live worker"; README Security).

A real broker (no Redis) and real botmesh-worker processes (--simulate):
- two workers started with the same WORKER_NAME for about 5 s: each,
  replaced by the other, waits before it registers again (1 s doubling to
  30 s), so the broker logs a handful of replacement lines, not thousands,
  and one ERROR naming the name and both processes; each worker logs one
  ERROR naming WORKER_NAME and the fix; jobs submitted meanwhile complete;
  broker_workers_replaced_total{reason="duplicate_name"} counts the flaps;
- a worker killed with SIGKILL and started again under its name replaces
  its dead connection at once: a job submitted as it starts is served
  at once (within 5 s: before its dead entry expires, with no backoff;
  counted as reason="reconnect");
- one worker whose TCP connection is reset twice (ss -K) reconnects twice
  under its name from the same pid and address: reason="reconnect" counts
  2, no ERROR, no duplicate_name;
- a worker in its SIGTERM grace replaced by a new process under its name
  does not register again (one WARN; the name is taken once, never back);
- two webhook managers under one WEBHOOK_NAME: their ERROR and the
  broker's name WEBHOOK_NAME, not WORKER_NAME;
- a broker bound to every interface without CURVE logs one WARN saying
  what anyone reaching the port can do and how to close it; one bound to
  127.0.0.1 logs none.
"""
import re
import signal
import socket
import subprocess
import time

import harness as h

OPEN_WARN = "is open to the network without CURVE"


def replaced_total(port, reason):
    code, _, body = h.http("GET", "http://127.0.0.1:%d/metrics" % port)
    if code != 200:
        h.check(False, "broker /metrics answers", code)
    m = re.search(r'^broker_workers_replaced_total\{reason="%s"\} (\d+)$' % reason, body, re.M)
    if not m:
        h.check(False, "broker_workers_replaced_total{reason=%s} is exported" % reason, body[:2000])
    return int(m.group(1))


def lines(text, *words):
    return [l for l in text.splitlines() if all(w in l for w in words)]


def reset_works():
    """True if ss -K closes a TCP connection here (a throwaway loopback pair)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    conn = socket.create_connection(("127.0.0.1", port))
    peer, _ = srv.accept()
    try:
        subprocess.run(["ss", "-K", "-tn", "( dport = :%d )" % port], capture_output=True,
                       timeout=10)
        conn.settimeout(2)
        try:
            conn.recv(1)
            return False            # closed in order, or nothing: not a reset
        except socket.timeout:
            return False
        except OSError:
            return True             # ECONNABORTED: the kernel closed it
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        for sock in (conn, peer, srv):
            sock.close()


def connections(broker_port, pid):
    """The local ports of process pid's established connections to the broker."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :%d )" % broker_port],
                         capture_output=True, text=True, timeout=10).stdout
    return [l.split()[2].rsplit(":", 1)[1] for l in out.splitlines() if "pid=%d," % pid in l]


def reset_connection(broker_port, pid):
    """Reset (ss -K) the TCP connections process pid has to the broker's port,
    as a NAT or a load balancer that drops them does."""
    ports = connections(broker_port, pid)
    if not ports:
        return False
    match = " or ".join("sport = :%s" % p for p in ports)
    r = subprocess.run(["ss", "-K", "-tn", "( dport = :%d ) and ( %s )" % (broker_port, match)],
                       capture_output=True, text=True, timeout=10)
    return r.returncode == 0 and all(":%s " % p in r.stdout for p in ports)


def test():
    with h.Stack("duplicate_name") as s:
        # 1. The open port: one WARN at start, naming the fix; none on loopback.
        port = h.free_port()
        wide = s.broker(redis=False, name="broker-wide",
                        env={"BROKER_ENDPOINT": "tcp://*:%d" % port})
        warns = lines(wide.output(), "WARN", OPEN_WARN)
        h.check(len(warns) == 1, "a broker bound to every interface without CURVE warns once",
                wide.output())
        h.check("tcp://0.0.0.0:%d" % port in warns[0] and "or as a worker (take jobs" in warns[0]
                and "API_KEYS" in warns[0] and "CURVE_SERVER_CERT" in warns[0]
                and "BROKER_ENDPOINT=tcp://127.0.0.1:%d" % port in warns[0],
                "the WARN says what anyone can do, and both ways to close the port", warns[0])
        h.check(wide.stop() == 0, "the wide broker stops on SIGTERM")
        s.endpoint = None
        # Liveness 10 s: the broker still holds a killed worker's entry when
        # its restart registers, however slow a loaded machine starts it.
        hb = {"HEARTBEAT_LIVENESS": "10"}
        broker = s.broker(redis=False, port=h.free_port(), env=hb)
        h.check(not lines(broker.output(), OPEN_WARN), "a broker bound to 127.0.0.1 does not warn",
                broker.output())

        # 2. Two live workers under one name, for about 5 s.
        wenv = dict(hb, SIM_DURATION_MS="20-60", WORKER_NAME="twin")
        a = s.worker("--simulate", "--type", "python", "--concurrency", "2", env=wenv, name="twin-a")
        s.wait_workers(1, "python")
        c = s.client()
        base = replaced_total(broker.metrics_port, "duplicate_name")
        started = time.monotonic()
        b = s.worker("--simulate", "--type", "python", "--concurrency", "2", env=wenv, name="twin-b")
        states = []
        while time.monotonic() - started < 5:
            states.append(c.wait(c.submit("python", {"n": len(states)}), timeout=40)["state"])
        h.check(states and set(states) == {"completed"},
                "the %d jobs submitted one after the other while the twins flap all complete"
                % len(states), states)
        h.wait_until(lambda: lines(broker.output(), "ERROR", "worker name twin"), 30,
                     "the broker's ERROR on the name twin")
        out = broker.output()
        errors = lines(out, "ERROR", "Two live processes use the worker name twin")
        h.check(len(errors) == 1, "one ERROR for the streak", errors)
        h.check("pid %d at 127.0.0.1" % a.pid in errors[0] and "pid %d at 127.0.0.1" % b.pid in errors[0]
                and "distinct WORKER_NAME" in errors[0],
                "it names both processes (pid and address) and the fix", errors[0])
        replacing = lines(out, "replaces connection")
        h.check(len(replacing) < 20, "the broker logged %d replacement lines (< 20)" % len(replacing),
                replacing)
        h.check(len(out) < 64 * 1024, "the broker's log stays small (%d bytes)" % len(out))
        flaps = replaced_total(broker.metrics_port, "duplicate_name") - base
        h.check(flaps >= 1, "broker_workers_replaced_total{reason=duplicate_name} counts the flaps",
                flaps)
        for w in (a, b):
            wout = w.output()
            said = lines(wout, "ERROR", "another worker registered with the same name WORKER_NAME=twin")
            h.check(len(said) <= 1 and "distinct WORKER_NAME" in "".join(said),
                    "%s logs at most one ERROR naming WORKER_NAME and the fix" % w.name, said)
            h.check(len(lines(wout, "replaced")) <= 2 and len(wout) < 64 * 1024,
                    "%s's log stays small (%d bytes)" % (w.name, len(wout)), wout[-3000:])
        h.check(lines(a.output() + b.output(), "ERROR", "WORKER_NAME=twin"),
                "a replaced worker said why")
        h.check(b.stop() == 0, "the second twin stops on SIGTERM")
        h.wait_until(lambda: len(c.stats()["workers"]) == 1 and a.alive(), 40,
                     "the first twin to hold the name alone")

        # 3. A restart under the same name replaces the dead connection at once.
        job = c.submit("python", {"warm": 1})
        h.check(c.wait(job, timeout=10)["state"] == "completed", "the first twin serves")
        reconnects = replaced_total(broker.metrics_port, "reconnect")
        a.signal(signal.SIGKILL)
        a.p.wait()
        started = time.monotonic()
        again = s.worker("--simulate", "--type", "python", "--concurrency", "2", env=wenv,
                         name="twin-again")
        job = c.submit("python", {"after": "restart"})
        rec = c.wait(job, timeout=10)
        served = time.monotonic() - started
        # At once: well before the dead entry's expiry (10 intervals) and
        # with no backoff; a functional bound, not a speed (TSan, 2 loaded
        # cores).
        h.check(rec["state"] == "completed" and served < 5.0,
                "a job submitted as the restarted worker starts is served in %.3f s (< 5 s)" % served,
                rec)
        h.check(replaced_total(broker.metrics_port, "reconnect") == reconnects + 1,
                "the restart counts as reason=reconnect")
        h.check(not lines(again.output(), "ERROR"), "the restarted worker logs no ERROR",
                again.output())

        # 4. One process whose TCP connection is reset twice (a NAT or a
        # load balancer): each time it reconnects under its name, the same
        # pid at the same address; a reconnect, never two live processes.
        if not reset_works():
            h.log("SKIP part 4: ss -K cannot close a TCP connection here (needs root and "
                  "CONFIG_INET_DIAG_DESTROY)")
        else:
            solo = s.worker("--simulate", "--type", "python", "--concurrency", "2",
                            env=dict(hb, WORKER_NAME="solo"), name="solo")
            h.wait_until(lambda: "solo" in [w.get("name") for w in c.stats()["workers"]], 15,
                         "the worker solo to register")
            base = replaced_total(broker.metrics_port, "reconnect")
            flaps = replaced_total(broker.metrics_port, "duplicate_name")
            broker_port = int(s.endpoint.rsplit(":", 1)[1])
            for n in (1, 2):
                h.check(reset_connection(broker_port, solo.pid),
                        "ss -K resets solo's connection to the broker (reset %d)" % n)
                h.wait_until(lambda: replaced_total(broker.metrics_port, "reconnect") == base + n,
                             15, "solo's reconnect %d counted as reason=reconnect" % n)
            h.check(replaced_total(broker.metrics_port, "duplicate_name") == flaps,
                    "no reset counts as duplicate_name")
            h.check(not lines(broker.output(), "ERROR", "worker name solo"),
                    "the broker logs no ERROR for solo", lines(broker.output(), "solo"))
            h.check(not lines(solo.output(), "ERROR"), "solo logs no ERROR", solo.output()[-3000:])
            job = c.submit("python", {"after": "resets"})
            h.check(c.wait(job, timeout=10)["state"] == "completed",
                    "a job submitted after the resets completes")

        # 5. A worker in its SIGTERM grace, replaced by a new process under
        # its name, does not register again: it would take the name back
        # and have the new process's jobs queued again.
        lenv = dict(hb, WORKER_NAME="leaver", SIM_DURATION_MS="3000", WORKER_GRACE_MS="20000")
        old = s.worker("--simulate", "--type", "java", "--concurrency", "1", env=lenv,
                       name="leaver-old")
        h.wait_until(lambda: "leaver" in [w.get("name") for w in c.stats()["workers"]], 15,
                     "the worker leaver to register")
        job = c.submit("java", {"long": 1})
        h.wait_until(lambda: c.status(job).get("state") == "running", 10, "leaver's job to start")
        old.signal(signal.SIGTERM)
        h.wait_until(lambda: lines(old.output(), "SIGTERM: stopping"), 10, "leaver's grace to begin")
        flaps = replaced_total(broker.metrics_port, "duplicate_name")
        new = s.worker("--simulate", "--type", "java", "--concurrency", "1",
                       env=dict(lenv, SIM_DURATION_MS="20"), name="leaver-new")
        h.check(old.p.wait(timeout=30) == 0, "the stopping worker exits when its job ends")
        h.check(c.wait(job, timeout=20)["state"] == "completed",
                "its job, queued again by the broker, completes on the new process")
        takes = lines(broker.output(), "worker leaver: connection")
        h.check(len(takes) == 1 and "pid %d" % new.pid in takes[0].split("replaces")[0],
                "the name was taken once, by the new process, never back", takes)
        said = lines(old.output(), "WARN", "while it shuts down")
        h.check(len(said) == 1 and "WORKER_NAME=leaver" in said[0]
                and "pid %d at 127.0.0.1" % new.pid in said[0] and "not registering again" in said[0],
                "it says once that it does not register again, naming the process that took the name",
                said)
        h.check(replaced_total(broker.metrics_port, "duplicate_name") == flaps,
                "no duplicate_name counted")
        h.check([w.get("pid") for w in c.stats()["workers"] if w.get("name") == "leaver"]
                == [new.pid], "the new process holds the name")

        # 6. Two webhook managers under one WEBHOOK_NAME: the replaced one
        # names its own setting, not WORKER_NAME.
        managers = [s.spawn("hooks-%d" % i, [s.bin("botmesh-webhook")], dict(
            hb, WEBHOOK_NAME="hooks", WEBHOOK_MANAGER_PORT=str(h.free_port()),
            WEBHOOK_LISTEN_ADDR="127.0.0.1", BROKER_ENDPOINT=s.endpoint)) for i in (1, 2)]
        h.wait_until(lambda: lines("".join(m.output() for m in managers), "ERROR", "same name"),
                     15, "a replaced webhook manager's ERROR")
        said = lines("".join(m.output() for m in managers), "ERROR", "same name")
        h.check("WEBHOOK_NAME=hooks" in said[0] and "distinct WEBHOOK_NAME" in said[0]
                and "WORKER_NAME" not in said[0],
                "it names WEBHOOK_NAME=hooks and asks for a distinct WEBHOOK_NAME", said)
        h.wait_until(lambda: lines(broker.output(), "ERROR", "worker name hooks"), 30,
                     "the broker's ERROR on the name hooks")
        said = lines(broker.output(), "ERROR", "worker name hooks")
        h.check(len(said) == 1 and "distinct WEBHOOK_NAME" in said[0] and "WORKER_NAME" not in said[0],
                "the broker's ERROR asks the webhook managers for a distinct WEBHOOK_NAME", said)
        for m in managers:
            h.check(m.stop() == 0, "%s stops on SIGTERM" % m.name)
        c.close()


if __name__ == "__main__":
    h.main(test)

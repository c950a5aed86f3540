"""deploy.daemon_secrets - no other process of a service's user reads the
secrets out of the service.

Under deploy/systemd every service may run as one user, so a bot that runs
as that user (unsandboxed, of a worker of the same uid) is such a process:
it must not read API_KEYS, REDIS_URL's password or WEBHOOK_SECRET out of
/proc/PID/environ (nor mem) of the gateway, broker, webhook manager or mock.

Each service is started as nobody (setpriv, which runs the program itself:
the pid is the service's), with secrets in its environment; once it
reports its port, `cat /proc/PID/environ` run as nobody must fail and print
no secret.  As a control, a plain program of nobody with the same secrets
(sleep) must be readable that way: the check can fail.
"""
import os
import shutil
import subprocess

import deploylib as d
from harness import Stack, check, free_port, log, main, wait_until

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
SECRETS = {"API_KEYS": "gw-S3cret-key", "WEBHOOK_SECRET": "whsec_UzNjcmV0Ynl0ZXM=",
           "REDIS_URL": "redis://default:S3cretRedisPw@127.0.0.1:1/0"}


def read_environ(pid):
    """What a process of nobody gets from /proc/PID/environ: (rc, text)."""
    p = subprocess.run(AS_NOBODY + ["cat", "/proc/%d/environ" % pid], capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def test():
    d.require(["botmesh-gateway", "botmesh-broker", "botmesh-webhook", "botmesh-mock"], ["setpriv"])
    if os.geteuid() != 0:
        d.skip("needs root to run the services as nobody")
    with Stack("daemon-secrets") as s:
        broker_port = free_port()
        base = dict(SECRETS, LOG_LEVEL="info", BROKER_METRICS_PORT="-1",
                    BROKER_ENDPOINT="tcp://127.0.0.1:%d" % broker_port,
                    API_GATEWAY_PORT="0", WEBHOOK_MANAGER_PORT="0", MOCK_WEBHOOK_PORT="0",
                    GATEWAY_LISTEN="127.0.0.1", WEBHOOK_LISTEN_ADDR="127.0.0.1",
                    MOCK_LISTEN_ADDR="127.0.0.1")
        # The control: a process of nobody that does not hide its environment.
        # Until setpriv has become nobody and run sleep, the process is
        # root's: wait for that, bounded.
        control = s.spawn("control", AS_NOBODY + [shutil.which("sleep"), "600"], base)
        wait_until(lambda: SECRETS["API_KEYS"] in read_environ(control.pid)[1], 10,
                   "a plain process of nobody to show its environment to nobody (the control)")
        services = [
            # The broker without Redis (REDIS_URL=none) but with the others' secrets.
            ("broker", "botmesh-broker", dict(base, REDIS_URL="none"), "zmq"),
            ("gateway", "botmesh-gateway", dict(base, REDIS_URL="none"), "http"),
            ("webhook", "botmesh-webhook", base, "http"),
            ("mock", "botmesh-mock", base, "http"),
        ]
        for name, binary, env, kind in services:
            p = s.spawn(name, AS_NOBODY + [s.bin(binary)], env)
            p.listening(kind)
            rc, text = read_environ(p.pid)
            log("%s (pid %d): cat /proc/PID/environ as nobody -> rc %d: %s"
                % (name, p.pid, rc, text.strip()[:120]))
            leaked = [k for k, v in SECRETS.items() if v in text]
            check(rc != 0 and not leaked,
                  "%s running as nobody: another process of nobody cannot read its environment" % name,
                  rc, leaked)
            check(p.alive(), "%s still runs" % name)


if __name__ == "__main__":
    main(test)

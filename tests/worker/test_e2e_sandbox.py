"""BOT_<TYPE>_SANDBOX=bwrap, BOT_<TYPE>_NETWORK and BOT_USER, transcript
style against a fake broker, with a real bot that looks around
(tests/worker/bots/spy.py) and real bubblewrap:

- the same bot unsandboxed (the control) reads a file of the host (outside
  the bot's directory), sees the worker's secret environment and connects to a TCP
  listener of the test on 127.0.0.1: so each check below can fail;
- sandboxed, it cannot read that file, does not see the secret, cannot
  connect with the network off, and can with BOT_<TYPE>_NETWORK=1; it has a
  private writable /tmp (HOME and TMPDIR) and runs as BOT_USER (nobody);
- a worker whose sandbox cannot work (bwrap missing, or failing its probe)
  refuses to start, naming the type, rather than run bots unsandboxed.

The bot runs as nobody, so it and the host file live in a directory of
their own under /var/tmp that nobody can reach (a checkout under a 0700
directory, as mktemp -d makes, is not).
"""
import os
import shutil
import socket
import tempfile
import threading

import harness
from harness import check, log
from wlib import JOB, DONE, PY, FakeBroker, job, worker_env, start_worker, wait_exit, HERE

SPY = "%s %s" % (PY, os.path.join(HERE, "bots", "spy.py"))
NOBODY = 65534
# Heartbeats the loaded machine cannot miss: these tests are not about the link.
HEARTBEAT_MS = 500
RELAXED = {"HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS), "HEARTBEAT_LIVENESS": "10"}


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def run(fb, ident, job_id, bot_type, payload):
    fb.send(ident, JOB, job(job_id, bot_type=bot_type, payload=payload, timeout_ms=20000))
    _, _, body = fb.recv(25, want=DONE)
    check(body["jobId"] == job_id and body["ok"] is True, "%s: the spy bot ran" % bot_type, body)
    log("%s sees:" % bot_type, body["result"])
    return body["result"]


def scenario_sandbox(s):
    # What nobody can reach: the spy bot in a directory of its own (bound
    # into the sandbox), and a host file beside it (not bound).
    box = tempfile.mkdtemp(prefix="bm-sandbox-", dir="/var/tmp")
    os.chmod(box, 0o755)
    for sub in ("bots", "host"):
        os.mkdir(os.path.join(box, sub), 0o755)
    shutil.copy(os.path.join(HERE, "bots", "spy.py"), os.path.join(box, "bots", "spy.py"))
    spy = "%s %s" % (PY, os.path.join(box, "bots", "spy.py"))
    secret_path = os.path.join(box, "host", "secret.txt")
    with open(secret_path, "w") as f:
        f.write("the worker's secret\n")
    os.chmod(secret_path, 0o644)
    listener = Listener()
    try:
        env = worker_env({**RELAXED, "BOT_USER": "nobody", "WORKER_SECRET_TOKEN": "s3cr3t",
                          "BOT_OPEN_CMD": spy,
                          "BOT_BOXED_CMD": spy, "BOT_BOXED_SANDBOX": "bwrap",
                          "BOT_BOXED_NET_CMD": spy, "BOT_BOXED_NET_SANDBOX": "bwrap",
                          "BOT_BOXED_NET_NETWORK": "1"})
        fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
        w = start_worker(s, fb.endpoint, "--type", "open,boxed,boxed-net", "--concurrency", "1",
                         env=env)
        ident, _ = fb.ready()
        check("boxed bots: sandboxed with bwrap (network none)" in w.output()
              and "boxed-net bots: sandboxed with bwrap (network shared)" in w.output(),
              "the worker logs which types are sandboxed")
        payload = {"read": secret_path, "connect": ["127.0.0.1", listener.port]}

        seen = run(fb, ident, "j-open", "open", payload)
        check(seen["read"] == "ok: the worker's secret", "control: the file is readable without a sandbox",
              seen["read"])
        check("WORKER_SECRET_TOKEN" in seen["env"], "control: the worker's environment is visible")
        check(seen["connect"] == "ok" and listener.accepted == 1, "control: it connects to 127.0.0.1",
              seen["connect"], listener.accepted)
        check(seen["uid"] == NOBODY, "BOT_USER=nobody: the bot runs as nobody", seen["uid"])

        seen = run(fb, ident, "j-boxed", "boxed", payload)
        check(seen["read"].startswith("error: FileNotFoundError"),
              "sandboxed: a host file outside the bot's directory does not exist for the bot", seen["read"])
        check("WORKER_SECRET_TOKEN" not in seen["env"] and "BOT_JOB_ID" in seen["env"],
              "sandboxed: only the job's environment (BOT_JOB_ID yes, the worker's secret no)", seen["env"])
        check(seen["connect"].startswith("error:") and listener.accepted == 1,
              "sandboxed, network off: no TCP connection to the host's 127.0.0.1", seen["connect"])
        check(seen["tmp"] == "ok" and seen["home"] == "/tmp", "sandboxed: a private writable /tmp", seen)
        check(seen["uid"] == NOBODY, "sandboxed: still nobody", seen["uid"])

        seen = run(fb, ident, "j-boxed-net", "boxed-net", payload)
        check(seen["connect"] == "ok" and listener.accepted == 2,
              "sandboxed, BOT_<TYPE>_NETWORK=1: it connects to the listener", seen["connect"])
        check(seen["read"].startswith("error: FileNotFoundError"), "network on: still no host files")
        w.stop()
        fb.close()
    finally:
        shutil.rmtree(box, ignore_errors=True)
        listener.sock.close()


def scenario_refuses(s):
    # bwrap not on PATH at all.
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    w = start_worker(s, fb.endpoint, "--type", "boxed", name="w-nobwrap",
                     env=worker_env({**RELAXED, "BOT_BOXED_CMD": SPY, "BOT_BOXED_SANDBOX": "bwrap",
                                     "PATH": "/nonexistent"}))
    check(wait_exit(w, 10) == 2, "no bwrap: the worker does not start (exit 2)")
    check("BOT_BOXED_SANDBOX=bwrap: bwrap is not installed" in w.output()
          and "refusing to run these bots unsandboxed" in w.output(), "and says why", w.output()[-400:])
    # A bwrap that fails, as one does without user namespaces.
    fake = tempfile.mkdtemp(prefix="fake-bwrap-")
    with open(os.path.join(fake, "bwrap"), "w") as f:
        f.write("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    os.chmod(os.path.join(fake, "bwrap"), 0o755)
    os.chmod(fake, 0o755)
    w = start_worker(s, fb.endpoint, "--type", "boxed", name="w-nons",
                     env=worker_env({**RELAXED, "BOT_BOXED_CMD": SPY, "BOT_BOXED_SANDBOX": "bwrap",
                                     "PATH": fake + ":/usr/bin:/bin"}))
    check(wait_exit(w, 15) == 2, "a sandbox that fails its probe: the worker does not start")
    check("boxed bots: the bwrap sandbox does not work on this machine" in w.output()
          and "No permissions to create new namespace" in w.output(),
          "and passes on what bwrap said", w.output()[-400:])
    fb.close()


def main():
    with harness.Stack("worker-sandbox") as s:
        for scenario in (scenario_refuses, scenario_sandbox):
            log("=== %s" % scenario.__name__)
            scenario(s)


if __name__ == "__main__":
    harness.main(main)

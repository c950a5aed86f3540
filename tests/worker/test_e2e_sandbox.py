"""BOT_<TYPE>_SANDBOX=bwrap, BOT_<TYPE>_NETWORK and BOT_USER, transcript
style against a fake broker, with a real bot that looks around
(tests/worker/bots/spy.py) and real bubblewrap:

- the same bot unsandboxed (the control) reads a file of the host (outside
  the bot's directory), sees the worker's secret environment and connects to a TCP
  listener of the test on 127.0.0.1: so each check below can fail;
- sandboxed, it cannot read that file, does not see the secret, cannot
  connect with the network off, and can with BOT_<TYPE>_NETWORK=1; it has a
  private writable /tmp (HOME and TMPDIR) and runs as BOT_USER (nobody);
- a worker running as root without BOT_USER runs its sandboxed bots as
  nobody, and logs one WARN a sandboxed type that every process of nobody
  can read and signal them (none with BOT_USER=nobody set on purpose); /etc/shadow is /dev/null's node (unreadable) and the directory of the worker's CURVE
  secret certificate is empty inside (an unsandboxed control reads both);
  the private /tmp has BOT_<TYPE>_TMP_MB (default 256): a bot filling it
  gets ENOSPC;
- a worker whose sandbox cannot work (bwrap missing, or failing its probe)
  refuses to start, naming the type, rather than run bots unsandboxed;
- a root worker whose sandbox user (nobody) cannot read the bot's directory
  (a clone under a 0700 mktemp directory) refuses to start saying so: the
  path, the user, the directory closed to it and the fix (chmod o+rx, or
  BOT_USER), not that bwrap does not work here; once opened, it starts.

The bot runs as nobody, so it and the host file live in a directory of
their own under /var/tmp that nobody can reach (a checkout under a 0700
directory, as mktemp -d makes, is not).
"""
import os
import re
import shutil
import signal
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

    def count(self, connected):
        """How many connections it accepted, once it accepted every one the
        bots made: a bot's connect completes in the kernel's backlog, before
        the thread here accepts it (within 10 s)."""
        try:
            harness.wait_until(lambda: self.accepted >= connected, 10,
                               "the listener to accept %d connections" % connected)
        except harness.TestFailure:
            pass
        return self.accepted


def nobody_warnings(output, bot_type):
    """The worker's WARN lines that bot_type's bots fell back to nobody."""
    tail = ("bots of type %s run as nobody; any process of nobody on this host can read and "
            "signal them: set BOT_USER to a user of their own" % bot_type)
    return [l for l in output.splitlines() if " WARN " in l and l.endswith(tail)]


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
        check(not nobody_warnings(w.output(), "boxed"),
              "BOT_USER=nobody set on purpose: no WARN of a fallback to nobody", w.output()[-1500:])
        payload = {"read": secret_path, "connect": ["127.0.0.1", listener.port]}

        seen = run(fb, ident, "j-open", "open", payload)
        check(seen["read"] == "ok: the worker's secret", "control: the file is readable without a sandbox",
              seen["read"])
        check("WORKER_SECRET_TOKEN" in seen["env"], "control: the worker's environment is visible")
        check(seen["connect"] == "ok" and listener.count(1) == 1, "control: it connects to 127.0.0.1",
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
        check(seen["connect"] == "ok" and listener.count(2) == 2,
              "sandboxed, BOT_<TYPE>_NETWORK=1: it connects to the listener", seen["connect"])
        check(seen["read"].startswith("error: FileNotFoundError"), "network on: still no host files")
        w.stop()
        fb.close()
    finally:
        shutil.rmtree(box, ignore_errors=True)
        listener.sock.close()


def scenario_root_secrets(s):
    # A root worker without BOT_USER (as ./botmesh up runs it): the
    # sandboxed bot runs as nobody, the host's shadow files are /dev/null, the
    # directory of the worker's CURVE secret certificate (here inside the
    # bot's own bound directory) is an empty one, and /tmp has its size.
    if os.geteuid() != 0:
        log("(not root: the root worker's defaults are not tested here)")
        return
    box = tempfile.mkdtemp(prefix="bm-sandbox-", dir="/var/tmp")
    os.chmod(box, 0o755)
    bots = os.path.join(box, "bots")
    keys = os.path.join(bots, "keys")
    os.makedirs(keys, 0o755)
    shutil.copy(os.path.join(HERE, "bots", "spy.py"), os.path.join(bots, "spy.py"))
    os.chmod(os.path.join(bots, "spy.py"), 0o644)
    cert = os.path.join(keys, "broker.key_secret")
    with open(cert, "w") as f:
        f.write("secret-key = \"0123456789\"\n")
    os.chmod(cert, 0o644)
    spy = "%s %s" % (PY, os.path.join(bots, "spy.py"))
    try:
        env = worker_env({**RELAXED, "BOT_USER": "", "CURVE_SERVER_CERT": cert,
                          "BOT_OPEN_CMD": spy,
                          "BOT_BOXED_CMD": spy, "BOT_BOXED_SANDBOX": "bwrap",
                          "BOT_SMALL_CMD": spy, "BOT_SMALL_SANDBOX": "bwrap", "BOT_SMALL_TMP_MB": "16"})
        fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
        w = start_worker(s, fb.endpoint, "--type", "open,boxed,small", "--concurrency", "1",
                         env=env, name="w-root")
        ident, _ = fb.ready()
        check("boxed bots: sandboxed as uid 65534, gid 65534 (nobody)" in w.output(),
              "the worker says its sandboxed bots run as nobody", w.output()[-800:])
        # Every process of nobody on the host can read and signal them: one
        # WARN a sandboxed type, naming the remedy; none for the open type.
        for t, want in (("boxed", 1), ("small", 1), ("open", 0)):
            warns = nobody_warnings(w.output(), t)
            check(len(warns) == want, "%s: %d WARN that its bots run as nobody, shared with every "
                  "process of nobody, and to set BOT_USER" % (t, want), warns or w.output()[-1500:])
        payload = {"reads": ["/etc/shadow", cert], "stats": ["/etc/shadow", keys], "fill": 40}

        seen = run(fb, ident, "j-open", "open", payload)
        check(seen["uid"] == 0, "control: an unsandboxed bot of a root worker runs as root", seen["uid"])
        check(seen["reads"]["/etc/shadow"].startswith("ok: root:") and seen["stats"]["/etc/shadow"] == "file",
              "control: it reads /etc/shadow", seen["reads"]["/etc/shadow"][:20])
        check(seen["reads"][cert].startswith("ok: secret-key"), "control: and the CURVE secret key")

        seen = run(fb, ident, "j-boxed", "boxed", payload)
        check(seen["uid"] == NOBODY, "sandboxed, no BOT_USER: the bot runs as nobody", seen["uid"])
        check(seen["stats"]["/etc/shadow"] == "chardev" and seen["reads"]["/etc/shadow"].startswith("error:"),
              "sandboxed: /etc/shadow is /dev/null's node (which cannot be opened there)",
              seen["stats"], seen["reads"]["/etc/shadow"])
        check(seen["stats"][keys] == "dir", "sandboxed: the certificate's directory is there", seen["stats"])
        check(seen["reads"][cert].startswith("error: FileNotFoundError"),
              "sandboxed: the CURVE certificate's directory is empty", seen["reads"][cert])
        check(seen["fill"] == "ok: 40", "sandboxed, default /tmp (256 MiB): 40 MiB fit", seen["fill"])

        seen = run(fb, ident, "j-small", "small", payload)
        check(seen["fill"].startswith("error: OSError: [Errno 28]"),
              "BOT_<TYPE>_TMP_MB=16: the bot filling /tmp gets ENOSPC", seen["fill"])
        m = re.search(r"after (\d+) MiB", seen["fill"])
        check(m is not None and int(m.group(1)) <= 16, "after at most 16 MiB", seen["fill"])
        w.stop()
        fb.close()
    finally:
        shutil.rmtree(box, ignore_errors=True)


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
    fake = harness.tempdir("fake-bwrap-")
    with open(os.path.join(fake, "bwrap"), "w") as f:
        f.write("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    os.chmod(os.path.join(fake, "bwrap"), 0o755)
    os.chmod(fake, 0o755)
    # The bot where its sandbox user can read it (a checkout under a 0700
    # mktemp directory is not): the probe is the only thing that fails.
    shutil.copy(os.path.join(HERE, "bots", "spy.py"), fake)
    spy = "%s %s" % (PY, os.path.join(fake, "spy.py"))
    w = start_worker(s, fb.endpoint, "--type", "boxed", name="w-nons",
                     env=worker_env({**RELAXED, "BOT_BOXED_CMD": spy, "BOT_BOXED_SANDBOX": "bwrap",
                                     "PATH": fake + ":/usr/bin:/bin"}))
    check(wait_exit(w, 15) == 2, "a sandbox that fails its probe: the worker does not start")
    check("boxed bots: the bwrap sandbox does not work on this machine" in w.output()
          and "No permissions to create new namespace" in w.output(),
          "and passes on what bwrap said", w.output()[-400:])
    fb.close()


def scenario_unreadable(s):
    if os.geteuid() != 0:
        log("(not root: the sandbox user is the worker's own, nobody is not tested here)")
        return
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    closed = harness.tempdir("closed-")
    check(os.stat(closed).st_mode & 0o777 == 0o700, "mkdtemp makes a 0700 directory")
    bots = os.path.join(closed, "mybots")
    os.mkdir(bots)
    os.chmod(bots, 0o755)
    shutil.copy(os.path.join(HERE, "bots", "spy.py"), bots)
    env = worker_env({**RELAXED, "BOT_BOXED_CMD": "%s %s" % (PY, os.path.join(bots, "spy.py")),
                      "BOT_BOXED_SANDBOX": "bwrap"})
    w = start_worker(s, fb.endpoint, "--type", "boxed", name="w-closed", env=env)
    check(wait_exit(w, 15) == 2, "a bot directory nobody cannot reach: the worker does not start")
    out = w.output()
    said = "boxed bots: the sandbox user nobody (uid %d) cannot read %s: the directory %s is closed to it" % (
        NOBODY, bots, closed)
    check(said in out, "it names the user, the path and the directory closed to it", out[-600:])
    check("chmod o+rx on each directory" in out and "set BOT_USER" in out, "and the fix", out[-600:])
    check("does not work on this machine" not in out, "it does not blame bwrap", out[-600:])

    os.chmod(closed, 0o755)
    w = start_worker(s, fb.endpoint, "--type", "boxed", name="w-opened", env=env)
    harness.wait_until(lambda: "boxed bots: sandboxed with bwrap" in w.output(), 15,
                       "the worker to start once the directory is open to others")
    check(w.alive(), "the same worker starts once the directory is open to others", w.output()[-400:])
    w.signal(signal.SIGTERM)
    wait_exit(w, 15)
    fb.close()


def main():
    with harness.Stack("worker-sandbox") as s:
        for scenario in (scenario_refuses, scenario_unreadable, scenario_sandbox, scenario_root_secrets):
            log("=== %s" % scenario.__name__)
            scenario(s)


if __name__ == "__main__":
    harness.main(main)

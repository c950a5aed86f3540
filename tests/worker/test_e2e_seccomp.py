"""BOT_<TYPE>_SECCOMP: the system calls a bot may not make, transcript
style.  A real broker (no Redis), real workers, real bubblewrap (skipped,
naming why, where bwrap cannot run), and a bot that tries the calls
(tests/worker/bots/syscalls.py):

- a bad value (BOT_<TYPE>_SECCOMP=maybe): the worker does not start, and
  names the variable;
- the control: the same bot with no sandbox and no filter creates a user
  namespace, and so does a sandboxed one with BOT_<TYPE>_SECCOMP=0: each
  check below could fail;
- sandboxed (the filter is on by default under bwrap), in spawn, pool and
  fork mode, and unsandboxed with BOT_<TYPE>_SECCOMP=1: unshare, keyctl,
  bpf, io_uring_setup, perf_event_open, userfaultfd and kcmp answer EPERM
  and an AF_VSOCK socket EAFNOSUPPORT, while threads, subprocesses and
  unshare(CLONE_FS) work; the 32-bit ABI (int 0x80) has the same rules: a
  32-bit getpid works, a 32-bit unshare(CLONE_NEWUSER) answers EPERM;
- the default Node and Java bots, sandboxed with the filter (their runtimes
  start threads: glibc's clone3 gets ENOSYS and falls back to clone),
  complete their jobs;
- the worker logs, per type, whether its system calls are filtered, once
  what the filter refuses, and (as root without BOT_USER) a WARN that the
  filter without the sandbox does not hold bots that run as root.

The bots are copies everyone may read: a root worker runs sandboxed bots
as nobody.
"""
import os
import sys

import harness
import wlib
from harness import check, log
from test_e2e_warm_sandbox import bwrap_works

REFUSED = ("keyctl", "bpf", "io_uring_setup", "perf_event_open", "userfaultfd", "unshare", "kcmp")


def calls(c, bot_type):
    rec = wlib.run_job(c, bot_type, {}, timeout=60)
    check(rec["state"] == "completed", "%s: the syscalls bot ran" % bot_type, rec.get("error"))
    log("%s: %s" % (bot_type, rec["result"]))
    return rec["result"]


def main():
    why = bwrap_works()
    if why:
        print("SKIP: bubblewrap cannot run on this machine: %s" % why)
        sys.exit(harness.SKIP)
    bot = wlib.readable_by_all(os.path.join(wlib.HERE, "bots", "syscalls.py"))
    server = wlib.readable_by_all(os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py"))
    node_bot = wlib.readable_by_all(os.path.join(harness.ROOT, "workers", "bots", "node", "bot.js"))
    java_bot = wlib.readable_by_all(os.path.join(harness.ROOT, "workers", "bots", "java", "Bot.java"))
    spawn = "%s %s" % (wlib.PY, bot)
    with harness.Stack("worker-e2e-seccomp") as s:
        s.broker(redis=False)

        w = s.worker("--type", "sc-bad", name="w-bad",
                     env={"BOT_SC_BAD_CMD": spawn, "BOT_SC_BAD_SANDBOX": "bwrap",
                          "BOT_SC_BAD_SECCOMP": "maybe"})
        check(wlib.wait_exit(w, 15) == 2, "BOT_SC_BAD_SECCOMP=maybe: the worker does not start (exit 2)")
        check("BOT_SC_BAD_SECCOMP must be" in w.output(), "and names the variable", w.output()[-600:])

        env = {"BOT_SC_OPEN_CMD": spawn,
               "BOT_SC_FILTERED_CMD": spawn, "BOT_SC_FILTERED_SECCOMP": "1",
               "BOT_SC_BOXED_CMD": spawn, "BOT_SC_BOXED_SANDBOX": "bwrap",
               "BOT_SC_BOXED_OFF_CMD": spawn, "BOT_SC_BOXED_OFF_SANDBOX": "bwrap",
               "BOT_SC_BOXED_OFF_SECCOMP": "0",
               "BOT_SC_POOL_CMD": "%s %s --pool %s" % (wlib.PY, server, bot), "BOT_SC_POOL_MODE": "pool",
               "BOT_SC_POOL_SANDBOX": "bwrap", "BOT_SC_POOL_MAX_PROCS": "1",
               "BOT_SC_FORK_CMD": "%s %s %s" % (wlib.PY, server, bot), "BOT_SC_FORK_MODE": "fork",
               "BOT_SC_FORK_SANDBOX": "bwrap", "BOT_SC_FORK_MAX_PROCS": "1",
               "BOT_SC_NODE_CMD": "node %s" % node_bot, "BOT_SC_NODE_SANDBOX": "bwrap",
               # The options env.example gives: the single-file launch within
               # the default address-space limit.
               "BOT_SC_JAVA_CMD": "java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC %s" % java_bot,
               "BOT_SC_JAVA_SANDBOX": "bwrap"}
        types = ["sc-open", "sc-filtered", "sc-boxed", "sc-boxed-off", "sc-pool", "sc-fork", "sc-node",
                 "sc-java"]
        w = s.worker("--type", ",".join(types), "--concurrency", "2", env=env)
        s.wait_workers(1)
        out = w.output()
        for t, line in (("sc-boxed", "sc-boxed bots: sandboxed with bwrap (network none), system calls "
                                     "filtered"),
                        ("sc-boxed-off", "sc-boxed-off bots: sandboxed with bwrap (network none), system "
                                         "calls not filtered (BOT_SC_BOXED_OFF_SECCOMP=0)"),
                        ("sc-filtered", "sc-filtered bots: system-call filter on (no sandbox)")):
            check(line in out, "%s: the worker logs %r" % (t, line), out[-2500:])
        check("sc-open bots: system-call filter" not in out, "sc-open: no filter logged")
        check(out.count("system-call filter (") == 1 and "get EPERM for unshare, clone with CLONE_NEW*" in out,
              "the worker says once what its filter refuses", out[-2500:])
        if os.geteuid() == 0:
            check("sc-filtered bots: the system-call filter is no boundary for bots that run as root" in out
                  and "set BOT_USER or BOT_SC_FILTERED_SANDBOX=bwrap" in out,
                  "a root worker warns that the filter alone does not hold bots running as root", out[-2500:])
        c = s.client()

        seen = calls(c, "sc-open")
        check(seen["unshare"] == "ok", "control: unsandboxed and unfiltered, the bot makes a user namespace",
              seen)
        seen = calls(c, "sc-boxed-off")
        check(seen["unshare"] == "ok", "control: sandboxed with BOT_<TYPE>_SECCOMP=0, it still can", seen)

        for t in ("sc-boxed", "sc-pool", "sc-fork", "sc-filtered"):
            seen = calls(c, t)
            refused = {k: seen[k] for k in REFUSED}
            check(all(v == "EPERM" for v in refused.values()),
                  "%s: every refused call answers EPERM" % t, refused)
            check(seen["thread"] == "ok" and seen["subprocess"] == "ok" and seen["unshare_fs"] == "ok",
                  "%s: threads, subprocesses and unshare without a namespace flag work under the filter"
                  % t, seen)
            check(seen["vsock"] == "EAFNOSUPPORT", "%s: no vsock socket (EAFNOSUPPORT)" % t, seen)

        # The 32-bit ABI (int 0x80) under the same rules: getpid works,
        # unshare(CLONE_NEWUSER) answers EPERM (-1); without the filter it
        # makes the namespace (0).
        for t, want in (("sc-open", 0), ("sc-boxed", -1), ("sc-filtered", -1)):
            rec = wlib.run_job(c, t, {"abi32": True}, timeout=60, attempts=1)
            log("%s, int 0x80: %s %s" % (t, rec["state"], rec.get("result") or rec.get("error")))
            check(rec["state"] == "completed" and rec["result"]["getpid32"] > 0
                  and rec["result"]["unshare32"] == want,
                  "%s: a 32-bit getpid works, a 32-bit unshare(CLONE_NEWUSER) answers %d" % (t, want), rec)

        for t in ("sc-node", "sc-java"):
            rec = wlib.run_job(c, t, {}, timeout=90)
            check(rec["state"] == "completed", "%s: the default bot completes under the filter" % t,
                  rec.get("error"))
        c.close()


if __name__ == "__main__":
    harness.main(main)

"""BOT_<TYPE>_SANDBOX=bwrap: what a sandboxed bot can reach of the host's
memory and of the worker's files, one scenario a test (argv[1]), with a
real worker, real bubblewrap and tests/worker/bots/spy.py (skipped,
naming why, where bwrap cannot run):

- shm: /dev is read-only and /dev/shm a tmpfs of BOT_<TYPE>_TMP_MB, like
  /tmp: with BOT_<TYPE>_TMP_MB=16 a bot writing 40 MiB to /dev/shm gets
  ENOSPC after at most 16, a file made in /dev fails (read-only), and
  /dev/null and a multiprocessing lock (a semaphore in /dev/shm) still
  work.  Before, /dev/shm and /dev were tmpfs without a size (half the
  host's memory);
- cwd: a worker whose sandboxed bot would show it the worker's own files
  refuses to start (exit 2), naming the directory and what to do: a bot
  in its working directory (python3 mybot.py, started from there, where
  the .env is), an argument /tmp (the host's /tmp bound over the private
  one, holding that working directory), a bot directory holding
  BOTMESH_ENV_FILE.  The same bot started from another directory runs.
  Before, each of these started and the bot read the .env;
- tmp: warm processes (pool and fork mode, one process each): job 1
  leaves a file in /tmp and one in its TMPDIR; job 2, in the same
  process, sees neither, and each job has a TMPDIR (and HOME) of its own
  under /tmp, which Python's tempfile uses.  Before, job 2 saw job 1's
  files (TMPDIR was /tmp for every job of the process);
- tmp_samples: the sample Node and Java bots in pool mode (one process
  each, two jobs, payload tempFile): each job's temporary file is made in
  that job's own TMPDIR (Node's os.tmpdir(), Java's by name, as
  Files.createTempFile keeps the first java.io.tmpdir it read) and its
  home is that directory (os.homedir(), user.home).  Before, the bots had
  the frame's TMPDIR in a map of their own only: os.tmpdir() and
  java.io.tmpdir stayed the process's /tmp, shared by all its jobs (and
  the bots had no tempFile to show it).

The bots are copies everyone may read: a root worker runs sandboxed bots
as nobody.
"""
import os
import re
import shutil
import sys
import tempfile

import harness
import wlib
from harness import check, log
from test_e2e_warm_sandbox import bwrap_works

SPY = os.path.join(wlib.HERE, "bots", "spy.py")


def scenario_shm(s):
    spy = wlib.readable_by_all(SPY)
    s.broker(redis=False)
    s.worker("--type", "shm", "--concurrency", "1",
             env={"BOT_SHM_CMD": "%s %s" % (wlib.PY, spy), "BOT_SHM_SANDBOX": "bwrap",
                  "BOT_SHM_TMP_MB": "16"})
    s.wait_workers(1)
    c = s.client()
    rec = wlib.run_job(c, "shm", {"fill": 40, "fillDir": "/dev/shm", "create": ["/dev/x", "/dev/null"],
                                  "semaphore": True}, attempts=1)
    check(rec["state"] == "completed", "the sandboxed spy bot ran", rec.get("error"))
    seen = rec["result"]
    log("the bot sees:", {k: seen.get(k) for k in ("fill", "create", "semaphore")})
    check(seen["fill"].startswith("error: OSError: [Errno 28]"),
          "BOT_<TYPE>_TMP_MB=16: a bot filling /dev/shm gets ENOSPC", seen["fill"])
    m = re.search(r"after (\d+) MiB", seen["fill"])
    check(m is not None and int(m.group(1)) <= 16, "after at most 16 MiB", seen["fill"])
    check(seen["create"]["/dev/x"].startswith("error: OSError: [Errno 30]"),
          "a file made in /dev: read-only file system", seen["create"])
    check(seen["create"]["/dev/null"] == "ok", "/dev/null is still writable", seen["create"])
    check(seen["semaphore"] == "ok", "a multiprocessing lock (in /dev/shm) still works", seen["semaphore"])
    c.close()


def refused(s, fb, name, env, said):
    """Start a worker with env from the current directory: it must exit 2
    saying said."""
    w = wlib.start_worker(s, fb.endpoint, "--type", "cw", name=name, env=env)
    check(wlib.wait_exit(w, 15) == 2, "%s: the worker does not start (exit 2)" % name, w.output()[-600:])
    check(said in w.output(), "%s: it says why" % name, said, w.output()[-600:])
    return w


def scenario_cwd(s):
    # The worker's working directory, with its .env, open to all (so that
    # only the sandbox stands between the bot and it).
    wd = tempfile.mkdtemp(prefix="bm-wd-", dir="/tmp")
    other = tempfile.mkdtemp(prefix="bm-elsewhere-", dir="/var/tmp")
    home = os.getcwd()
    try:
        for d in (wd, other):
            os.chmod(d, 0o755)
        with open(os.path.join(wd, ".env"), "w") as f:
            f.write("REDIS_URL=redis://:topsecret@127.0.0.1:6379\n")
        os.chmod(os.path.join(wd, ".env"), 0o644)
        shutil.copy(SPY, os.path.join(wd, "mybot.py"))
        os.chmod(os.path.join(wd, "mybot.py"), 0o644)
        spy = wlib.readable_by_all(SPY)
        fb = wlib.FakeBroker()
        base = {"BOT_CW_SANDBOX": "bwrap", "BOTMESH_ENV_FILE": "", "BOTMESH_ROOT": ""}
        os.chdir(wd)
        try:
            refused(s, fb, "w-beside", {**base, "BOT_CW_CMD": "%s mybot.py" % wlib.PY},
                    "BOT_CW_SANDBOX=bwrap: the directory %s (of '%s/mybot.py' in the bot's command line) "
                    "is the worker's working directory %s" % (wd, wd, wd))
            refused(s, fb, "w-tmp-arg", {**base, "BOT_CW_CMD": "%s %s /tmp" % (wlib.PY, spy)},
                    "BOT_CW_SANDBOX=bwrap: '/tmp' in the bot's command line would bind the host's /tmp "
                    "into the sandbox")
        finally:
            os.chdir(home)
        # From elsewhere: a bot directory holding the env file.
        os.chdir(other)
        try:
            refused(s, fb, "w-env-file", {**base, "BOT_CW_CMD": "%s %s/mybot.py" % (wlib.PY, wd),
                                          "BOTMESH_ENV_FILE": os.path.join(wd, ".env")},
                    "BOT_CW_SANDBOX=bwrap: the directory %s (of '%s/mybot.py' in the bot's command line) "
                    "holds the worker's env file %s/.env" % (wd, wd, wd))
            # The control: the same bot, the worker elsewhere, no env file there.
            w = wlib.start_worker(s, fb.endpoint, "--type", "cw", name="w-control",
                                  env={**base, "BOT_CW_CMD": "%s %s/mybot.py" % (wlib.PY, wd)})
            harness.wait_until(lambda: "cw bots: sandboxed with bwrap" in w.output() or not w.alive(), 15,
                               "the control worker to start")
            check(w.alive(), "control: the same bot, the worker started elsewhere: it starts",
                  w.output()[-600:])
            w.stop()
        finally:
            os.chdir(home)
        fb.close()
    finally:
        shutil.rmtree(wd, ignore_errors=True)
        shutil.rmtree(other, ignore_errors=True)


def scenario_tmp(s):
    server = wlib.readable_by_all(os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py"))
    spy = wlib.readable_by_all(SPY)
    s.broker(redis=False)
    env = {}
    for t, mode in (("tp", "pool"), ("tf", "fork")):
        up = t.upper()
        env.update({"BOT_%s_CMD" % up: "%s %s %s%s" % (wlib.PY, server, "--pool " if mode == "pool" else "", spy),
                    "BOT_%s_MODE" % up: mode, "BOT_%s_MAX_PROCS" % up: "1", "BOT_%s_SANDBOX" % up: "bwrap"})
    w = s.worker("--type", "tp,tf", "--concurrency", "1", env=env)
    s.wait_workers(1)
    c = s.client()
    for t, mode, same in (("tp", "pool", "pid"), ("tf", "fork", "ppid")):
        first = wlib.run_job(c, t, {"leave": "job1", "tempfile": True}, attempts=1)
        check(first["state"] == "completed", "%s: job 1 ran" % mode, first.get("error"))
        one = first["result"]
        log("%s job 1 sees:" % mode, {k: one.get(k) for k in ("tmpdir", "home", "found", "tempfile", same)})
        second = wlib.run_job(c, t, {"tempfile": True, "stats": [one["tmpdir"]]}, attempts=1)
        check(second["state"] == "completed", "%s: job 2 ran" % mode, second.get("error"))
        two = second["result"]
        log("%s job 2 sees:" % mode, {k: two.get(k) for k in ("tmpdir", "home", "found", "tempfile", same)})
        check(two[same] == one[same], "%s: both jobs ran in the same process (%s)" % (mode, same),
              one[same], two[same])
        check(two["found"]["/tmp"] == [], "%s: job 2 does not see the file job 1 left in /tmp" % mode,
              two["found"])
        check(two["found"][two["tmpdir"]] == [] and two["stats"][one["tmpdir"]] == "missing",
              "%s: nor the one it left in its temporary directory, which is gone" % mode,
              two["found"], two["stats"])
        check(one["tmpdir"].startswith("/tmp/job-") and two["tmpdir"].startswith("/tmp/job-")
              and one["tmpdir"] != two["tmpdir"], "%s: each job has a TMPDIR of its own" % mode,
              one["tmpdir"], two["tmpdir"])
        check(one["home"] == one["tmpdir"] and two["home"] == two["tmpdir"], "%s: HOME is it too" % mode)
        check(two["tmp"] == "ok", "%s: job 2 writes in its TMPDIR" % mode, two["tmp"])
        check(one["tempfile"] == "ok: " + one["tmpdir"] and two["tempfile"] == "ok: " + two["tmpdir"],
              "%s: Python's tempfile uses each job's TMPDIR" % mode, one["tempfile"], two["tempfile"])
    check(not [l for l in w.output().splitlines() if " WARN " in l and "temporary directory" in l
               or "cannot empty" in l], "no WARN about the jobs' temporary directories", w.output()[-1500:])
    c.close()


def scenario_tmp_samples(s):
    node = wlib.readable_by_all(os.path.join(harness.ROOT, "workers", "bots", "node", "bot.js"))
    java = wlib.readable_by_all(os.path.join(harness.ROOT, "workers", "bots", "java", "Bot.java"))
    s.broker(redis=False)
    # Java with the options the worker gives its default bot.
    env = {"BOT_SN_CMD": "node %s --pool" % node,
           "BOT_SJ_CMD": "java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto -XX:-UsePerfData %s --pool" % java}
    for t in ("SN", "SJ"):
        env.update({"BOT_%s_MODE" % t: "pool", "BOT_%s_MAX_PROCS" % t: "1", "BOT_%s_SANDBOX" % t: "bwrap",
                    "BOT_%s_READY_TIMEOUT_MS" % t: "60000"})
    w = s.worker("--type", "sn,sj", "--concurrency", "1", env=env)
    s.wait_workers(1)
    c = s.client()
    for t, bot in (("sn", "node"), ("sj", "java")):
        seen = []
        for n in (1, 2):
            rec = wlib.run_job(c, t, {"tempFile": True, "count": 3} if bot == "node"
                               else {"tempFile": True, "records": 3}, attempts=1, timeout=60)
            check(rec["state"] == "completed", "%s: job %d ran" % (bot, n), rec.get("error"))
            seen.append(rec["result"])
            log("%s job %d: pid %s, tempFile %s, homeDir %s" % (bot, n, rec["result"].get("pid"),
                rec["result"].get("tempFile"), rec["result"].get("homeDir")))
        one, two = seen
        check(one.get("pid") == two.get("pid"), "%s: both jobs ran in the same process" % bot,
              one.get("pid"), two.get("pid"))
        dirs = []
        for r in seen:
            job_dir = "/tmp/job-%s" % r.get("jobId")
            check(str(r.get("tempFile", "")).startswith(job_dir + "/"),
                  "%s: job %s made its temporary file in its own TMPDIR (%s)" % (bot, r.get("jobId"), job_dir),
                  r.get("tempFile"))
            check(r.get("homeDir") == job_dir, "%s: its home is that directory too" % bot, r.get("homeDir"))
            dirs.append(job_dir)
        check(dirs[0] != dirs[1], "%s: the two jobs have directories of their own" % bot, dirs)
    check(w.alive(), "worker still running")
    c.close()


SCENARIOS = {"shm": scenario_shm, "cwd": scenario_cwd, "tmp": scenario_tmp, "tmp_samples": scenario_tmp_samples}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit("usage: test_e2e_sandbox_bounds.py %s" % "|".join(SCENARIOS))
    why = bwrap_works()
    if why:
        print("SKIP: bubblewrap cannot run on this machine: %s" % why)
        sys.exit(harness.SKIP)
    with harness.Stack("worker-sandbox-%s" % sys.argv[1]) as s:
        SCENARIOS[sys.argv[1]](s)


if __name__ == "__main__":
    harness.main(main)

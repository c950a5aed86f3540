"""A bot cannot reach the terminal of the shell that started its worker:
each bot process leads a session of its own, with no controlling
terminal, so it cannot open /dev/tty and push input into that terminal
(TIOCSTI, which a shell reading the terminal would run as typed).

The worker runs with a pseudo-terminal as its controlling terminal (as
when started from an interactive shell); a real broker (no Redis);
tests/worker/bots/ttybot.py as a spawn bot, and under the fork server in
pool and fork mode.  In each mode: /dev/tty does not open (ENXIO), and the
bot's session is not the worker's.
"""
import fcntl
import os
import subprocess
import termios

import harness
from harness import check, log
import wlib

ROOT = harness.ROOT
TTYBOT = os.path.join(ROOT, "tests/worker/bots/ttybot.py")
SERVER = os.path.join(ROOT, "workers/bots/python/forkserver.py")
MODES = ("spawn", "pool", "fork")


def with_terminal(slave):
    """preexec_fn: a session of its own whose controlling terminal is the
    pty's slave (fd 0 in the child)."""
    def setup():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    return setup


def tty_nr(pid):
    """The controlling terminal's device number in /proc/PID/stat (0: none)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[4])


def main():
    with harness.Stack("worker-e2e-no-tty") as s:
        s.broker(redis=False)
        env = dict(s.env, BROKER_ENDPOINT=s.endpoint, BOT_KILL_GRACE_MS="500",
                   BOT_TTYSPAWN_CMD="/usr/bin/python3 %s" % TTYBOT, BOT_TTYSPAWN_MODE="spawn",
                   BOT_TTYPOOL_CMD="/usr/bin/python3 %s --pool %s" % (SERVER, TTYBOT),
                   BOT_TTYPOOL_MODE="pool",
                   BOT_TTYFORK_CMD="/usr/bin/python3 %s %s" % (SERVER, TTYBOT),
                   BOT_TTYFORK_MODE="fork")
        master, slave = os.openpty()
        logpath = os.path.join(s.dir, "worker.log")
        with open(logpath, "ab") as logfile:
            worker = subprocess.Popen(
                [s.bin("botmesh-worker"), "--type", "ttyspawn,ttypool,ttyfork", "--concurrency", "3"],
                env=env, stdin=slave, stdout=logfile, stderr=subprocess.STDOUT,
                preexec_fn=with_terminal(slave))
        harness.WATCHDOG.watch(worker.pid)
        os.close(slave)
        try:
            check(tty_nr(worker.pid) != 0, "the worker has a controlling terminal (the pty)",
                  tty_nr(worker.pid))
            s.wait_workers(1)
            c = s.client()
            for mode in MODES:
                rec = wlib.run_job(c, "tty" + mode, {})
                check(rec["state"] == "completed", "%s: the job completes" % mode, rec)
                result = rec["result"]
                log("%s: the bot says %s" % (mode, result))
                check(result["tty"] == "ENXIO",
                      "%s: the bot cannot open /dev/tty (no controlling terminal)" % mode, result)
                check(result["sid"] != os.getsid(worker.pid),
                      "%s: the bot's session is not the worker's" % mode, result)
        finally:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            harness.WATCHDOG.forget(worker.pid)
            os.close(master)
            with open(logpath, errors="replace") as f:
                log("----- worker -----", f.read()[-3000:])
        check(worker.returncode == 0, "the worker exits 0 on SIGTERM", worker.returncode)


if __name__ == "__main__":
    harness.main(main)

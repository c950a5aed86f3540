"""Bots that fail or misbehave, end to end through the real broker.  Each
misbehaving program is a bot type of its own (BOT_<TYPE>_CMD runs
tests/worker/bots/testbot.py with a flag); the broker learns the types from
the worker's READY.

  - past its timeout (SUBMIT timeoutMs): killed, failed with `timeout`
  - exit 1: failed `bot_failed`, its stderr is the error message (an ESC in
    it shows as \x1b, there and in the worker's log)
  - exit 3 without stderr, killed by a signal, a huge stderr (tail kept)
  - stdout not JSON: `bad_output`; JSON after a UTF-8 byte order mark: the result
  - prints 100 MB: capped, killed, `bad_output`, quickly
  - forks children and exits: completes at once, the children are killed
  - ignores SIGTERM (children too): SIGKILL after the kill grace, whole group
  - never reads stdin (with a payload larger than a pipe): completes
The worker stays up through all of it.
"""
import os
import subprocess
import time

import harness
from harness import check, log, wait_until
from wlib import testbot_cmd, alive, read_pids

KILL_GRACE_MS = 700


def _parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def main():
    with harness.Stack("worker-e2e-failures") as s:
        piddir = s.dir
        env = {
            "BOT_KILL_GRACE_MS": str(KILL_GRACE_MS),
            "BOT_TBOT_CMD": testbot_cmd("--pidfile", os.path.join(piddir, "tbot.pids")),
            "BOT_FLOOD_CMD": testbot_cmd("--flood", str(100 * 1024 * 1024)),
            "BOT_FORKER_CMD": testbot_cmd("--fork", "3", "--pidfile", os.path.join(piddir, "forker.pids")),
            "BOT_STUBBORN_CMD": testbot_cmd("--ignore-term", "--pidfile", os.path.join(piddir, "stubborn.pids")),
            "BOT_DEAF_CMD": testbot_cmd("--no-stdin"),
        }
        s.broker(redis=False)
        w = s.worker("--type", "tbot,flood,forker,stubborn,deaf", "--concurrency", "8", env=env)
        s.wait_workers(1, "deaf")
        c = s.client()
        fds_before = len(os.listdir("/proc/%d/fd" % w.pid))

        # Timeout: the bot sleeps 30 s, the job allows 800 ms.
        t0 = time.monotonic()
        jid = c.submit("tbot", {"sleepMs": 30000}, timeoutMs=800)
        rec = c.wait(jid, timeout=20)
        took = time.monotonic() - t0
        check(rec["state"] == "failed" and rec["error"]["code"] == "timeout",
              "a bot past its timeout fails with timeout (%.1f s)" % took, rec.get("error"))
        pids = read_pids(os.path.join(piddir, "tbot.pids"))
        wait_until(lambda: not any(alive(p) for p in pids), 5, "the timed-out bot to be killed")
        check(took < 8, "the timeout fired in time", took)

        # Exit 1 with a traceback on stderr.
        err = "Traceback (most recent call last):\n  File \"bot.py\", line 3\nValueError: broken input\n"
        rec = c.wait(c.submit("tbot", {"exit": 1, "stderr": err}), timeout=20)
        check(rec["state"] == "failed" and rec["error"]["code"] == "bot_failed"
              and rec["error"]["message"] == err.strip(),
              "exit 1 -> bot_failed with its stderr as the message", rec.get("error"))

        # A terminal escape on stderr (ANSI colour): shown as the four characters \x1b in the
        # error message, never as the ESC byte (nor a space); the worker's log line of the
        # job's end counts the bytes of the bot's stderr, never shows them.
        jid = c.submit("tbot", {"exit": 1, "stderr": "\x1b[31mred alert\x1b[0m\n"})
        rec = c.wait(jid, timeout=20)
        check(rec["error"]["code"] == "bot_failed"
              and rec["error"]["message"] == "\\x1b[31mred alert\\x1b[0m",
              "an ESC on stderr is \\x1b in the error message", rec.get("error"))
        line = wait_until(lambda: next((l for l in w.output().splitlines()
                                        if "job=%s failed in" % jid in l), None),
                          5, "the worker to log that job's end")
        check(line.endswith("bot_failed: [24 bytes of the bot's stderr, in the job's error]"),
              "the worker's line counts the bytes of the message from the bot's stderr", line)
        check("\x1b" not in w.output() and "red alert" not in w.output(),
              "and never shows them in its log (a bot's stderr may be secret)",
              w.output()[-300:])

        rec = c.wait(c.submit("tbot", {"exit": 3}), timeout=20)
        check(rec["error"]["code"] == "bot_failed" and "status 3" in rec["error"]["message"],
              "exit 3 without stderr -> the message names the status", rec.get("error"))
        check(rec["error"].get("exitCode") == 3, "the record keeps the exit status (error.exitCode)",
              rec.get("error"))

        rec = c.wait(c.submit("tbot", {"signal": "SEGV"}), timeout=20)
        check(rec["error"]["code"] == "bot_failed" and "SIGSEGV" in rec["error"]["message"],
              "killed by a signal -> bot_failed naming the signal", rec.get("error"))

        big = "".join("línea %d — une plainte très longue\n" % i for i in range(5000)) + "the real cause\n"
        rec = c.wait(c.submit("tbot", {"exit": 2, "stderr": big}), timeout=20)
        msg = rec["error"]["message"]
        check(rec["error"]["code"] == "bot_failed" and isinstance(msg, str) and len(msg.encode()) <= 4000
              and msg.endswith("the real cause") and "\ufffd" not in msg and "?" not in msg,
              "a huge multibyte stderr: its tail (<= 4000 bytes, whole characters) is the message",
              len(msg), msg[-60:])

        rec = c.wait(c.submit("tbot", {"stdout": "hello, not json"}), timeout=20)
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output",
              "stdout that is not JSON -> bad_output", rec.get("error"))

        rec = c.wait(c.submit("tbot", {"stdout": "starting...\nworking...\n{\"answer\": 42}\n"}), timeout=20)
        check(rec["state"] == "completed" and rec["result"] == {"answer": 42},
              "log lines before a JSON last line: the last line is the result", rec.get("result"))

        # A UTF-8 byte order mark before the JSON (Windows tools write one): skipped.
        rec = c.wait(c.submit("tbot", {"stdout": "\ufeff{\"answer\": 43}\r\n"}), timeout=20)
        check(rec["state"] == "completed" and rec["result"] == {"answer": 43},
              "stdout starting with a UTF-8 byte order mark: the JSON after it is the result",
              rec.get("result"), rec.get("error"))

        # Nesting: 30 levels go through (the C client can read them back), 31 are bad_output.
        rec = c.wait(c.submit("tbot", {"stdout": "[" * 30 + "1" + "]" * 30}), timeout=20)
        check(rec["state"] == "completed", "a result nested 30 levels deep is fine", rec.get("error"))
        out = subprocess.run([s.bin("botmesh-client"), "--endpoint", s.endpoint, "status", rec["jobId"]],
                             capture_output=True, text=True, timeout=20)
        check(out.returncode == 0 and '"state":"completed"' in out.stdout,
              "and botmesh-client (C, msgpack-c) reads it back", out.returncode, out.stderr)
        rec = c.wait(c.submit("tbot", {"stdout": "[" * 31 + "1" + "]" * 31}), timeout=20)
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output",
              "a result nested 31 levels deep is bad_output", rec.get("error"))

        # 100 MB on stdout.
        t0 = time.monotonic()
        rec = c.wait(c.submit("flood", {}), timeout=30)
        took = time.monotonic() - t0
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output"
              and "1048576" in rec["error"]["message"],
              "a bot printing 100 MB is capped and fails with bad_output (%.2f s)" % took, rec.get("error"))
        check(took < 10, "and that is quick", took)

        # Forks children that would live 600 s, exits at once.
        t0 = time.monotonic()
        rec = c.wait(c.submit("forker", {}), timeout=30)
        took = time.monotonic() - t0
        check(rec["state"] == "completed" and len(rec["result"]["children"]) == 3,
              "a bot that forks children and exits completes (%.2f s)" % took, rec)
        kids = rec["result"]["children"]
        wait_until(lambda: not any(alive(p) for p in kids), 5, "the bot's children to be killed")
        check(took < 10, "without waiting for its children", took)

        # Ignores SIGTERM, and so do its children: SIGKILL to the whole group.
        t0 = time.monotonic()
        jid = c.submit("stubborn", {}, timeoutMs=600)
        pids = wait_until(lambda: len(read_pids(os.path.join(piddir, "stubborn.pids"))) == 3
                          and read_pids(os.path.join(piddir, "stubborn.pids")), 10, "stubborn bot and children")
        rec = c.wait(jid, timeout=20)
        check(rec["state"] == "failed" and rec["error"]["code"] == "timeout",
              "the stubborn bot's job fails with timeout", rec.get("error"))
        wait_until(lambda: not any(alive(p) for p in pids), 10, "the stubborn bot and its children to die")
        took = time.monotonic() - t0
        check(took >= (600 + KILL_GRACE_MS) / 1000.0 - 0.1,
              "they survived SIGTERM until the kill grace ended (%.2f s)" % took)
        check("SIGKILL" in w.output(), "the worker logged the SIGKILL")

        # Never reads stdin, with a payload larger than a pipe's buffer.
        rec = c.wait(c.submit("deaf", {"blob": "z" * 600000}), timeout=20)
        check(rec["state"] == "completed" and rec["result"]["payloadBytes"] == 0,
              "a bot that never reads stdin completes (600 kB payload unread)", rec.get("error"))

        check(w.alive(), "the worker is still up")
        fds_after = len(os.listdir("/proc/%d/fd" % w.pid))
        check(fds_after <= fds_before + 2, "no file descriptor leaked (%d before, %d after)" % (
            fds_before, fds_after))
        check(not [p for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == w.pid],
              "no child process left behind")
        totals = c.stats()["totals"]
        log("totals:", totals)
        c.close()


if __name__ == "__main__":
    harness.main(main)

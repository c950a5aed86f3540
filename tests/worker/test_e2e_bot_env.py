"""What a bot's environment holds, in every mode (spawn, pool, fork), with
a real worker, a fake broker and a real bot that looks around
(tests/worker/bots/spy.py; under workers/bots/python/forkserver.py for pool
and fork):

- botmesh's own secrets in the worker's environment (REDIS_URL with a
  password, REDIS_PASSWORD, WEBHOOK_SECRET, MOCK_WEBHOOK_SECRET, API_KEYS,
  BOTMESH_API_KEY, CURVE_*) never reach a bot: not the job's process, not
  the pool process, not the fork server the job's child was forked from;
- BOT_ENV_DENY withholds more (a name, a prefix ending in *), and only
  those (a longer name with the same start is kept);
- a bot type's settings go to its own bots only: the spawn bot does not
  see the pool and fork types' BOT_POOL_CMD, BOT_FORK_MODE..., nor a type
  this worker does not serve (BOT_JAVA_MEMORY_MB, BOT_REPORT_CMD,
  MAX_NODE_BOTS); each sees its own (BOT_SPAWN_CMD, MAX_SPAWN_BOTS) and
  the settings of every type (BOT_OUTPUT_MAX_BYTES);
- everything else is passed on (PATH, HOME, the user's own variables);
- the worker logs at start how many variables it withholds;
- nor can a bot read them out of the worker: they are gone from the
  worker's own environment, /proc/<worker>/environ included (a bot of a
  root worker reads that file: it holds none of them; a bot of the
  worker's uid, not root, cannot read it at all: the worker is not
  dumpable);
- a bad BOT_ENV_DENY stops the worker at start, naming it.
"""
import atexit
import json
import os
import re
import shutil
import tempfile

import harness
from harness import check, log
from wlib import JOB, DONE, PY, FakeBroker, job, worker_env, start_worker, wait_exit, HERE

SPY = os.path.join(HERE, "bots", "spy.py")
SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
HEARTBEAT_MS = 500
RELAXED = {"HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS), "HEARTBEAT_LIVENESS": "10"}

SECRETS = {
    "REDIS_URL": "redis://:hunter2@127.0.0.1:6390/0",
    "REDIS_PASSWORD": "hunter2",
    "REDIS_HOST": "127.0.0.1",
    "WEBHOOK_SECRET": "whsec_c2VjcmV0",
    "MOCK_WEBHOOK_SECRET": "whsec_bW9jaw==",
    "API_KEYS": "key-one,key-two",
    "ADMIN_API_KEYS": "key-one",
    "BOTMESH_API_KEY": "key-one",
    "CURVE_SERVER_CERT": "/etc/botmesh/keys/broker.key_secret",
    "CURVE_CLIENTS_DIR": "/etc/botmesh/clients",
    "ACME_SECRET_KEY": "acme",      # BOT_ENV_DENY: a prefix
    "MY_TOKEN": "tok",              # BOT_ENV_DENY: a name
}
KEPT = {"MY_TOKENS": "kept", "USER_SETTING": "kept", "HOME": os.environ.get("HOME", "/root"),
        "BOT_OUTPUT_MAX_BYTES": "1048576", "BOT_KILL_GRACE_MS": "2000"}
# Settings of types this worker does not serve: no bot of it sees them.
UNSERVED = {"BOT_JAVA_MEMORY_MB": "3072", "BOT_REPORT_CMD": "/srv/report", "MAX_NODE_BOTS": "4",
            "BOT_NODE_MODE": "pool"}


def run(fb, ident, job_id, bot_type):
    fb.send(ident, JOB, job(job_id, bot_type=bot_type, payload={}, timeout_ms=20000))
    _, _, body = fb.recv(25, want=DONE)
    check(body["jobId"] == job_id and body["ok"] is True, "%s: the spy bot ran" % bot_type, body)
    return body["result"]


def scenario_modes(s):
    env = worker_env({**RELAXED, **SECRETS, **KEPT, **UNSERVED, "BOT_ENV_DENY": "ACME_*, MY_TOKEN",
                      "MAX_SPAWN_BOTS": "1", "BOT_SPAWN_MEMORY_MB": "2048",
                      "BOT_SPAWN_CMD": "%s %s" % (PY, SPY),
                      "BOT_POOL_CMD": "%s %s --pool %s" % (PY, SERVER, SPY), "BOT_POOL_MODE": "pool",
                      "BOT_POOL_MAX_PROCS": "1",
                      "BOT_FORK_CMD": "%s %s %s" % (PY, SERVER, SPY), "BOT_FORK_MODE": "fork",
                      "BOT_FORK_MAX_PROCS": "1"})
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    w = start_worker(s, fb.endpoint, "--type", "spawn,pool,fork", "--concurrency", "1", env=env)
    ident, _ = fb.ready()
    m = re.search(r"bot environment: (\d+) variables of the worker withheld from bots", w.output())
    check(m is not None, "the worker logs how many variables bots do not get", w.output()[-600:])
    check(int(m.group(1)) >= len(SECRETS), "at least the %d secrets set here" % len(SECRETS), m.group(1))
    check(not any(v in w.output() for v in ("hunter2", "whsec_", "key-one")),
          "the log line names no value")
    m = re.search(r"and from each type's bots the other types' settings \(spawn (\d+), pool (\d+), fork (\d+)\)",
                  w.output())
    check(m and all(int(n) >= len(UNSERVED) + 3 for n in m.groups()),
          "and says how many other types' settings each type's bots do not get", w.output()[-600:])
    for bot_type in ("spawn", "pool", "fork"):
        seen = run(fb, ident, "j-" + bot_type, bot_type)
        log("%s bot sees:" % bot_type, seen["env"])
        leaked = sorted(set(SECRETS) & set(seen["env"]))
        check(not leaked, "%s: no secret of botmesh's in the bot's environment" % bot_type, leaked)
        missing = sorted((set(KEPT) | {"PATH", "BOT_JOB_ID"}) - set(seen["env"]))
        check(not missing, "%s: everything else is passed on (PATH, HOME, the user's own)" % bot_type,
              missing)
        own = "BOT_%s_CMD" % bot_type.upper()
        others = sorted(n for n in seen["env"] if n.startswith(("BOT_SPAWN_", "BOT_POOL_", "BOT_FORK_", "MAX_SPAWN_"))
                        and not n.startswith(("BOT_%s_" % bot_type.upper(), "MAX_%s_" % bot_type.upper())))
        check(own in seen["env"] and not others,
              "%s: its own type's settings (%s), not the other types' of this worker" % (bot_type, own), others)
        leaked = sorted(set(UNSERVED) & set(seen["env"]))
        check(not leaked, "%s: nor those of types the worker does not serve" % bot_type, leaked)
        if bot_type != "spawn":
            # The process the job ran in (pool) or was forked from (fork).
            parent = seen["parentEnv"] if bot_type == "fork" else seen["env"]
            check(isinstance(parent, list), "%s: the bot read its parent's environment" % bot_type, parent)
            leaked = sorted((set(SECRETS) | set(UNSERVED) | {"BOT_SPAWN_CMD"}) & set(parent))
            check(not leaked, "%s: nor in the %s process's (secrets, other types' settings)"
                  % (bot_type, "fork server" if bot_type == "fork" else "pool"), leaked)
            check("BOT_MODE" in parent, "%s: (that is the warm process's environment)" % bot_type, parent)
    w.stop()
    fb.close()


PEEK = """#!/usr/bin/python3
import json, os, sys
payload = json.loads(sys.stdin.read() or "{}")
def peek(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().replace(b"\\0", b"\\n").decode(errors="replace")
    except OSError as e:
        return "error: %s: %s" % (type(e).__name__, e)
print(json.dumps({"ppid": os.getppid(), "parent": peek(os.getppid()), "worker": peek(payload["pid"])}))
"""


def peek_bot():
    """A bot that reads its parent's /proc/PID/environ and the worker's (the
    payload's pid), in a directory everyone may enter (a CI checkout may be
    0700)."""
    box = tempfile.mkdtemp(prefix="bm-peek-", dir="/var/tmp")
    atexit.register(shutil.rmtree, box, True)
    os.chmod(box, 0o755)
    path = os.path.join(box, "peek.py")
    with open(path, "w") as f:
        f.write(PEEK)
    os.chmod(path, 0o755)
    return path


def scenario_worker_environ(s):
    env = worker_env({**RELAXED, **SECRETS, "BOT_ENV_DENY": "ACME_*, MY_TOKEN",
                      "BOT_PEEK_CMD": "%s %s" % (PY, peek_bot())})
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    w = start_worker(s, fb.endpoint, "--type", "peek", "--concurrency", "1", env=env)
    ident, _ = fb.ready()
    fb.send(ident, JOB, job("j-peek", bot_type="peek", payload={"pid": w.pid}, timeout_ms=20000))
    _, _, body = fb.recv(25, want=DONE)
    check(body["jobId"] == "j-peek" and body["ok"] is True, "the peeking bot ran", body)
    found = body["result"]
    # REDIS_HOST's 127.0.0.1 is the broker's address too: its name is checked, not its value.
    values = {name: value for name, value in SECRETS.items() if name != "REDIS_HOST"}
    log("the bot read %d variables in /proc/%d/environ (its parent)"
        % (found["parent"].count("\n") + 1, found["ppid"]))
    check(found["ppid"] == w.pid, "a spawned bot's parent is the worker", found["ppid"], w.pid)
    for what in ("parent", "worker"):
        text = found[what]
        if os.geteuid() == 0:
            # Root reads any process's environ: what it holds is what is checked.
            check("PATH=" in text and "BOT_PEEK_CMD=" in text,
                  "a bot of a root worker reads the worker's environ (%s)" % what, text[:200])
        else:
            check(text.startswith("error: PermissionError"),
                  "a bot of the worker's uid cannot read it: the worker is not dumpable (%s)" % what, text)
        leaked = sorted(name for name, value in SECRETS.items()
                        if ("\n%s=" % name) in "\n" + text or (name in values and value in text))
        check(not leaked, "no secret's name or value in the worker's environ as the bot reads it (%s)"
              % what, leaked)
    check(all(value not in json.dumps(found) for value in values.values()),
          "the job's result holds none of the secrets' values")
    m = re.search(r"secrets: (\d+) variables removed from the worker's own environment \((\d+) entries "
                  r"overwritten", w.output())
    check(m is not None and int(m.group(1)) >= len(SECRETS) and int(m.group(2)) >= len(SECRETS),
          "the worker logs that it removed the %d secrets from its own environment" % len(SECRETS),
          w.output()[-600:])
    w.stop()
    fb.close()


def scenario_bad_deny(s):
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    w = start_worker(s, fb.endpoint, "--type", "spawn", name="w-baddeny",
                     env=worker_env({**RELAXED, "BOT_SPAWN_CMD": "%s %s" % (PY, SPY),
                                     "BOT_ENV_DENY": "GOOD,BAD=1"}))
    check(wait_exit(w, 10) == 2, "a bad BOT_ENV_DENY: the worker does not start (exit 2)")
    check("BOT_ENV_DENY: 'BAD=1' is not a variable name" in w.output(), "and says why", w.output()[-400:])
    fb.close()


def main():
    with harness.Stack("worker-bot-env") as s:
        for scenario in (scenario_bad_deny, scenario_modes, scenario_worker_environ):
            log("=== %s" % scenario.__name__)
            scenario(s)


if __name__ == "__main__":
    harness.main(main)

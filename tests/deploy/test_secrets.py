"""deploy.secrets - a Redis password never shows: not in the logs, not in
what ./botmesh up and status print, not on a command line ps can read; nor
does an API key on a command line (curl's, as invoke --wait polls).

A real redis-server with requirepass, started here; ./botmesh up on it with
REDIS_URL=redis://default:PASSWORD@127.0.0.1:PORT/0 (simulated bots), then
status and down.  redis-cli and env are wrapped on PATH by scripts that
record their command lines and run the real ones: no recorded line may hold
the password, and the redis-cli calls must still reach Redis (status says
PING answers, which needs the password).  status from a shell whose
REDIS_URL names another Redis, with another password, notes both URLs
masked.  API_KEYS is set: curl, wrapped too, must get the key some other
way than its arguments, and still reach the gateway.  Every log file under var/log is
read for the password; the broker's start line shows the URL masked.
"""
import os
import shutil
import stat
import subprocess

import deploylib as d
from harness import check, free_port, log, main, tempdir, wait_until

SCRIPT = os.path.join(d.ROOT, "botmesh")
PASSWORD = "S3cretRedisPw"
OTHER_PASSWORD = "0therRedisPw"
API_KEY = "AdminKeyS3cret"


def show(p):
    return "rc %d\n--- stdout\n%s\n--- stderr\n%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:])


def wrapper(bindir, name, record):
    real = shutil.which(name)
    check(real, "%s is installed" % name)
    path = os.path.join(bindir, name)
    with open(path, "w") as f:
        f.write('#!/bin/bash\nprintf "%%s\\n" "%s $*" >>"%s"\nexec "%s" "$@"\n' % (name, record, real))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test():
    top = tempdir("botmesh-secrets-")
    var = os.path.join(top, "var")
    bindir = os.path.join(top, "bin")
    os.makedirs(bindir)
    record = os.path.join(top, "argv.log")
    wrapper(bindir, "redis-cli", record)
    wrapper(bindir, "env", record)
    wrapper(bindir, "curl", record)
    ports = {k: free_port() for k in ("gw", "wh", "mock", "broker", "metrics", "redis", "ownredis")}
    url = "redis://default:%s@127.0.0.1:%d/0" % (PASSWORD, ports["redis"])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BOTMESH_", "REDIS_", "BROKER_", "WEBHOOK_", "MOCK_", "API_", "MAX_", "WORKER_"))}
    env.update({
        "PATH": bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
        "BOTMESH_NO_BUILD": "1",
        "BOTMESH_BUILD_DIR": os.path.dirname(d.BIN),
        "BOTMESH_VAR_DIR": var,
        "BOTMESH_ENV_FILE": os.path.join(top, "no-env-file"),
        "BOTMESH_REDIS_PORT": str(ports["ownredis"]),
        "BOTMESH_WORKER_ARGS": "--simulate",
        "BOTMESH_UP_TIMEOUT": "60",
        "BOTMESH_STOP_TIMEOUT": "30",
        "REDIS_URL": url,
        "BROKER_ENDPOINT": "tcp://127.0.0.1:%d" % ports["broker"],
        "BROKER_METRICS_PORT": str(ports["metrics"]),
        "WEBHOOK_MANAGER_PORT": str(ports["wh"]),
        "API_GATEWAY_PORT": str(ports["gw"]),
        "MOCK_WEBHOOK_PORT": str(ports["mock"]),
        "API_KEYS": API_KEY + ",another-key",
    })

    def run(*args, timeout=180, more=None):
        p = subprocess.run([SCRIPT] + list(args), capture_output=True, text=True, timeout=timeout,
                           env=dict(env, **(more or {})))
        log("$ ./botmesh %s -> rc %d" % (" ".join(args), p.returncode))
        return p

    rdir = os.path.join(top, "redis")
    os.makedirs(rdir)
    redis = subprocess.Popen(["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1",
                              "--dir", rdir, "--save", "", "--requirepass", PASSWORD],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ping = lambda: subprocess.run(["redis-cli", "-p", str(ports["redis"]), "ping"], capture_output=True,
                                      text=True, env={"REDISCLI_AUTH": PASSWORD}).stdout.strip() == "PONG"
        wait_until(ping, 20, "the test's redis-server (requirepass) to answer PING")

        p = run("up")
        check(p.returncode == 0, "up starts the stack on a Redis with a password", show(p))
        masked = "redis://default:***@127.0.0.1:%d/0" % ports["redis"]
        check(PASSWORD not in p.stdout + p.stderr, "up never prints the Redis password", show(p))
        check(masked in p.stdout, "up shows the Redis URL with its password masked", show(p))

        p = run("status")
        line = next((l for l in p.stdout.splitlines() if l.startswith("redis ")), "")
        check("up (PING %s)" % masked in line, "status shows Redis answering PING, the URL masked", show(p))
        check(PASSWORD not in p.stdout + p.stderr, "status never prints the Redis password", show(p))

        # This shell names another Redis: status notes both, masked.
        other = "redis://default:%s@127.0.0.1:%d/0" % (OTHER_PASSWORD, ports["ownredis"])
        p = run("status", more={"REDIS_URL": other})
        check("REDIS_URL=%s (" % masked in p.stderr
              and "not REDIS_URL=redis://default:***@127.0.0.1:%d/0 as configured" % ports["ownredis"] in p.stderr,
              "status with another REDIS_URL notes both URLs, masked", show(p))
        check(OTHER_PASSWORD not in p.stdout + p.stderr and PASSWORD not in p.stdout + p.stderr,
              "... and prints neither password", show(p))

        p = run("invoke", "python", '{"task":"data_analysis"}', "--wait")
        check(p.returncode == 0 and '"completed"' in p.stdout,
              "invoke --wait with API_KEYS set: the job completes (curl sent the key)", show(p))

        broker_log = open(os.path.join(var, "log", "broker.log"), errors="replace").read()
        check("redis %s" % masked in broker_log, "the broker logs the Redis URL masked", broker_log[-2000:])
    finally:
        p = run("down", timeout=120)
        redis.terminate()
        redis.wait(timeout=30)
    check(p.returncode == 0, "down stops the stack", show(p))

    logdir = os.path.join(var, "log")
    names = sorted(os.listdir(logdir))
    check(names, "the services wrote logs", logdir)
    for name in names:
        text = open(os.path.join(logdir, name), errors="replace").read()
        check(PASSWORD not in text, "var/log/%s holds no Redis password" % name,
              [l for l in text.splitlines() if PASSWORD in l][:5])
    lines = open(record).read().splitlines()
    calls = [l for l in lines if l.startswith("redis-cli ")]
    check(calls, "./botmesh ran redis-cli (through the recording wrapper)", lines[:10])
    check(any(l.startswith("env ") for l in lines), "./botmesh started services through env", lines[:10])
    bad = [l for l in lines if PASSWORD in l]
    check(not bad, "no redis-cli or env command line holds the password (ps would show it)", bad[:5])
    calls = [l for l in lines if l.startswith("curl ") and "/job/" in l]
    check(calls, "invoke --wait polled GET /job/ with curl (through the recording wrapper)", lines[-10:])
    bad = [l for l in lines if API_KEY in l]
    check(not bad, "no curl command line holds the API key (ps would show it)", bad[:5])


if __name__ == "__main__":
    main(test)

"""botmesh-worker's command line and environment: --help lists every flag and
variable; bad configuration stops it at start with a message naming the
variable; --noop and --simulate run jobs without bots (real broker).
"""
import subprocess
import time

import harness
import wlib
from harness import check, log


def run(args, env=None, timeout=10):
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin", "BROKER_ENDPOINT": "tcp://127.0.0.1:1"}
    e.update(env or {})
    out = subprocess.run([harness.os.path.join(harness.BIN, "botmesh-worker")] + list(args),
                         capture_output=True, text=True, timeout=timeout, env=e)
    return out.returncode, out.stdout + out.stderr


def main():
    rc, text = run(["--help"])
    check(rc == 0, "--help exits 0")
    for word in ("--type", "--concurrency", "--endpoint", "--name", "--simulate", "--noop", "--grace-ms",
                 "WORKER_TYPES", "WORKER_CONCURRENCY", "BROKER_ENDPOINT", "WORKER_NAME", "WORKER_GRACE_MS",
                 "BOT_<TYPE>_CMD", "BOTMESH_ROOT", "BOT_OUTPUT_MAX_BYTES", "BOT_KILL_GRACE_MS",
                 "HEARTBEAT_INTERVAL_MS", "HEARTBEAT_LIVENESS", "SIM_DURATION_MS", "SIM_FAIL_RATE",
                 "BOT_PROGRESS_FD", "PROGRESS", "LOG_LEVEL"):
        check(word in text, "--help mentions %s" % word)

    bad = [
        (["--concurrency", "0"], {}, "--concurrency"),
        (["--concurrency", "lots"], {}, "--concurrency"),
        ([], {"WORKER_CONCURRENCY": "-3"}, "WORKER_CONCURRENCY"),
        (["--type", "Python!"], {}, "--type"),
        ([], {"WORKER_TYPES": "python,Bad Type"}, "WORKER_TYPES"),
        (["--name", "has space"], {}, "WORKER_NAME"),
        ([], {"WORKER_NAME": "n" * 129}, "WORKER_NAME"),
        (["--grace-ms", "soon"], {}, "--grace-ms"),
        ([], {"WORKER_GRACE_MS": "-1"}, "WORKER_GRACE_MS"),
        ([], {"HEARTBEAT_INTERVAL_MS": "abc"}, "HEARTBEAT_INTERVAL_MS"),
        ([], {"HEARTBEAT_LIVENESS": "0"}, "HEARTBEAT_LIVENESS"),
        ([], {"BOT_OUTPUT_MAX_BYTES": "1e9x"}, "BOT_OUTPUT_MAX_BYTES"),
        ([], {"BOT_KILL_GRACE_MS": "-5"}, "BOT_KILL_GRACE_MS"),
        ([], {"WORKER_MODE": "fast"}, "WORKER_MODE"),
        (["--type", "cobol"], {}, "BOT_COBOL_CMD"),
        (["--type", "python"], {"BOT_PYTHON_CMD": "/no/such/python3 bot.py"}, "BOT_PYTHON_CMD"),
        (["--type", "python"], {"BOT_PYTHON_CMD": "python3 'unterminated"}, "BOT_PYTHON_CMD"),
        (["--type", "python"], {"BOTMESH_ROOT": "/nonexistent"}, "BOTMESH_ROOT"),
        (["--simulate", "--type", "python"], {"SIM_DURATION_MS": "100-5"}, "SIM_DURATION_MS"),
        (["--simulate", "--type", "python"], {"SIM_PYTHON_DURATION_MS": "x"}, "SIM_PYTHON_DURATION_MS"),
        (["--simulate", "--type", "python"], {"SIM_FAIL_RATE": "1.5"}, "SIM_FAIL_RATE"),
        (["--type", "python", "--endpoint", "nonsense"], {}, "BROKER_ENDPOINT"),
        (["--bogus-flag"], {}, "usage"),
        (["extra-arg"], {}, "unexpected argument"),
    ]
    for args, env, name in bad:
        t0 = time.monotonic()
        rc, text = run(args, env)
        check(rc == 2 and name in text and time.monotonic() - t0 < 5,
              "bad config %s %s stops the worker naming %s" % (args, env, name), rc, text[-300:])

    with harness.Stack("worker-config") as s:
        s.broker(redis=False)

        # A custom type one letter from a built-in one (nodeb, node): the
        # worker serving it reads BOT_NODEB_CMD, its own setting, and does
        # not take it for BOT_NODE_CMD misspelt; a worker that does not
        # serve nodeb still names it.
        near = {"BOT_NODEB_CMD": wlib.testbot_cmd()}
        serving = s.worker("--type", "nodeb", "--concurrency", "1", "--name", "w-nodeb", env=near)
        s.wait_workers(1, "nodeb")
        c = s.client()
        rec = c.wait(c.submit("nodeb", {"stderr": "ran"}, attempts=1), timeout=20)
        check(rec["state"] == "completed" and rec["result"]["botType"] == "nodeb",
              "the nodeb worker runs BOT_NODEB_CMD", rec)
        c.close()
        check("unknown setting" not in serving.output(),
              "the worker serving nodeb does not warn about BOT_NODEB_CMD",
              [l for l in serving.output().splitlines() if "unknown setting" in l])
        rc, text = run(["--type", "python", "--help"], near)
        check(rc == 0 and "unknown setting BOT_NODEB_CMD (did you mean BOT_NODE_CMD?)" in text,
              "a worker that does not serve nodeb names BOT_NODEB_CMD", text[-500:])
        rc, text = run(["--type", "python,nodeb", "--help"], near)
        check(rc == 0 and "unknown setting" not in text,
              "nor does one of several types, nodeb among them", text[-500:])
        rc, text = run(["--help"], dict(near, WORKER_TYPES="nodeb"))
        check(rc == 0 and "unknown setting" not in text,
              "nor a worker serving nodeb by WORKER_TYPES", text[-500:])
        s.worker("--noop", "--type", "python,custom", "--concurrency", "50", "--name", "w-noop")
        s.wait_workers(1, "custom")
        c = s.client()
        t0 = time.monotonic()
        ids = [c.submit("custom" if i % 2 else "python", {"i": i}) for i in range(100)]
        recs = [c.wait(j, timeout=20) for j in ids]
        took = time.monotonic() - t0
        check(all(r["state"] == "completed" and r["result"]["noop"] is True for r in recs),
              "--noop completes every job at once (100 in %.2f s)" % took)
        check(recs[1]["result"]["botType"] == "custom" and recs[1]["result"]["jobId"] == ids[1],
              "the noop result echoes the job", recs[1]["result"])

        s.worker("--simulate", "--type", "simfail,simok", "--concurrency", "10", "--name", "w-sim",
                 env={"SIM_DURATION_MS": "50-150", "SIM_SIMFAIL_FAIL_RATE": "1",
                      "SIM_SIMOK_DURATION_MS": "200"})
        s.wait_workers(1, "simok")
        fails = [c.submit("simfail", {}) for _ in range(5)]
        oks = [c.submit("simok", {}) for _ in range(5)]
        frecs = [c.wait(j, timeout=20) for j in fails]
        orecs = [c.wait(j, timeout=20) for j in oks]
        check(all(r["state"] == "failed" and r["error"]["code"] == "bot_failed" for r in frecs),
              "--simulate with SIM_<TYPE>_FAIL_RATE=1 fails every job")
        check(all(r["state"] == "completed" and r["result"]["simulated"] is True
                  and r["result"]["durationMs"] == 200 for r in orecs),
              "--simulate with SIM_<TYPE>_DURATION_MS=200 completes in 200 ms", orecs[0]["result"])
        took = [r["finishedAt"] - r["startedAt"] for r in orecs]
        log("simulated durations seen by the broker (ms):", took)
        check(all(190 <= t <= 2000 for t in took), "the simulated jobs took about 200 ms", took)
        sim = c.wait(c.submit("simok", {}, timeoutMs=100), timeout=20)
        check(sim["state"] == "failed" and sim["error"]["code"] == "timeout",
              "a simulated job longer than its timeout fails with timeout", sim.get("error"))
        c.close()


if __name__ == "__main__":
    harness.main(main)

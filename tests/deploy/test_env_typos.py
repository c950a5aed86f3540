"""deploy.env_typos - a misspelt setting is named at start, by the services
that read the name it misspells, and by no other.

One environment feeds a whole stack (a broker, a worker, a gateway, the
webhook manager and the mock), with a misspelling for each service:

    BROKER_ENDPIONT     broker, worker, gateway, webhook: did you mean BROKER_ENDPOINT?
    MAX_PYTON_BOTS      broker, worker (a built-in type misspelt): MAX_PYTHON_BOTS?
    BOT_PYTHON_MODEE    worker (a per-type name, BOT_<TYPE>_MODE): BOT_PYTHON_MODE?
    GATEWAY_THREDS      gateway: GATEWAY_THREADS?
    WEBHOOK_MAX_RETRIS  webhook: WEBHOOK_MAX_RETRIES?
    MOCK_WEBHOOK_PROT   mock: MOCK_WEBHOOK_PORT?
    BROKR_ENDPOINT      broker, worker, gateway, webhook (a misspelt first word): BROKER_ENDPOINT?
    REDSI_URL           broker, gateway: REDIS_URL?
    WEBHOK_MAX_RETRIES  webhook: WEBHOOK_MAX_RETRIES?
    APIKEYS             gateway, webhook (a name of ours without its underscore): API_KEYS?

and variables of other programs and of the system that no service may
warn about (FOO_BAR, APP_KEYS, NODE_ENV, JAVA_HOME, MIN_PYTHON_BOTS...).
Each service still starts, and logs exactly its lines: one WARN each,
"unknown setting NAME (did you mean NAME?)"; botmesh-client says the same
of the names it reads (BROKER_ENDPIONT, BROKR_ENDPOINT) and nothing else.  Then every variable
env.example lists, set at once, with a custom bot type's (BOT_REPORT_CMD,
MAX_REPORT_BOTS): no program warns about any (the check runs at start,
before --help answers).  Last, ./botmesh up says the same of its env file
before it starts anything, once per name.
"""
import os
import re
import subprocess

import deploylib as d
import harness
from harness import check, log, main

TYPOS = {"BROKER_ENDPIONT": "tcp://127.0.0.1:1", "MAX_PYTON_BOTS": "3", "BOT_PYTHON_MODEE": "pool",
         "GATEWAY_THREDS": "8", "WEBHOOK_MAX_RETRIS": "2", "MOCK_WEBHOOK_PROT": "5000",
         "BROKR_ENDPOINT": "tcp://127.0.0.1:1", "REDSI_URL": "redis://127.0.0.1:1",
         "WEBHOK_MAX_RETRIES": "2", "APIKEYS": "k1"}
BROKR = ("BROKR_ENDPOINT", "BROKER_ENDPOINT")
EXPECTED = {
    "broker": {("BROKER_ENDPIONT", "BROKER_ENDPOINT"), ("MAX_PYTON_BOTS", "MAX_PYTHON_BOTS"), BROKR,
               ("REDSI_URL", "REDIS_URL")},
    "worker": {("BROKER_ENDPIONT", "BROKER_ENDPOINT"), ("MAX_PYTON_BOTS", "MAX_PYTHON_BOTS"),
               ("BOT_PYTHON_MODEE", "BOT_PYTHON_MODE"), BROKR},
    "gateway": {("BROKER_ENDPIONT", "BROKER_ENDPOINT"), ("GATEWAY_THREDS", "GATEWAY_THREADS"), BROKR,
                ("REDSI_URL", "REDIS_URL"), ("APIKEYS", "API_KEYS")},
    "webhook": {("BROKER_ENDPIONT", "BROKER_ENDPOINT"), ("WEBHOOK_MAX_RETRIS", "WEBHOOK_MAX_RETRIES"), BROKR,
                ("WEBHOK_MAX_RETRIES", "WEBHOOK_MAX_RETRIES"), ("APIKEYS", "API_KEYS")},
    "mock": {("MOCK_WEBHOOK_PROT", "MOCK_WEBHOOK_PORT")},
}
CLIENT_EXPECTED = {("BROKER_ENDPIONT", "BROKER_ENDPOINT"), BROKR}
# Other programs' and the system's variables: never a warning.
FOREIGN = {"FOO_BAR": "1", "APP_KEYS": "a,b", "NODE_ENV": "production", "JAVA_HOME": "/usr/lib/jvm",
           "MIN_PYTHON_BOTS": "1", "LOGS_DIR": "/tmp", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
           "DATABASE_URL": "postgres://db/x", "LANG": "C.UTF-8"}
WARNING = re.compile(r" WARN +(\S+) +unknown setting (\S+) \(did you mean (\S+)\?\)$", re.M)
UP_WARNING = re.compile(r"^botmesh: warning: unknown setting (\S+) \(did you mean (\S+)\?\) "
                        r"\(the environment or (.+)\)$")


def warnings(text):
    """{(name, suggestion)} of the text's unknown-setting lines."""
    return {(m.group(2), m.group(3)) for m in WARNING.finditer(text)}


def test():
    with harness.Stack("env-typos") as s:
        s.env.update(TYPOS)
        s.env.update(FOREIGN)
        # The broker ignores MAX_PYTON_BOTS (an ERROR line, broker.type_typo)
        # and starts; a type BROKER_NEW_TYPES declares would warn nowhere
        # (deploy.env_typos_types).
        procs = {"broker": s.broker(redis=False)}
        procs["worker"] = s.worker("--type", "python", "--concurrency", "1", name="worker")
        s.wait_workers(1, "python")
        procs["gateway"] = s.spawn("gateway", [s.bin("botmesh-gateway")], {
            "API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1", "BROKER_ENDPOINT": s.endpoint,
            "REDIS_URL": "none", "GATEWAY_THREADS": "8"})
        procs["gateway"].listening("http")
        s.webhooks()                            # the mock, and the manager once it serves the broker
        procs.update((p.name, p) for p in s.procs if p.name in ("mock", "webhook"))
        for name, p in procs.items():
            check(p.alive(), "%s started with the misspelt settings" % name, p.output()[-1500:])
            got = warnings(p.output())
            check(got == EXPECTED[name], "%s names exactly its misspellings: %s" % (
                name, ", ".join("%s -> %s" % w for w in sorted(EXPECTED[name]))), sorted(got),
                [l for l in p.output().splitlines() if "unknown setting" in l])
        p = subprocess.run([s.bin("botmesh-client"), "--help"], capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, **TYPOS, **FOREIGN))
        got = warnings(p.stdout + p.stderr)
        check(p.returncode == 0 and got == CLIENT_EXPECTED,
              "botmesh-client names exactly the misspellings of what it reads (BROKER_ENDPOINT)",
              sorted(got), p.stderr[-800:])
        line = [l for l in procs["broker"].output().splitlines() if "BROKER_ENDPIONT" in l]
        check(line and "WARN" in line[0] and "broker" in line[0]
              and line[0].endswith("unknown setting BROKER_ENDPIONT (did you mean BROKER_ENDPOINT?)"),
              "one WARN line of the broker's own, naming both", line)

    # Every variable env.example lists, and a custom type's, for every program.
    env, problems = d.parse_env_example()
    check(not problems and len(env) > 100, "env.example parses", problems, len(env))
    catalogue = dict(os.environ, BOT_REPORT_CMD="/bin/true", MAX_REPORT_BOTS="2", BOT_REPORT_MODE="pool",
                     KEEP_COMPLETED_REPORT="5", RETRY_REPORT_ATTEMPTS="2")
    catalogue.update((v.name, v.default) for v in env.values())
    for b in ("botmesh-broker", "botmesh-worker", "botmesh-gateway", "botmesh-webhook", "botmesh-mock",
              "botmesh-client"):
        p = subprocess.run([os.path.join(d.BIN, b), "--help"], capture_output=True, text=True,
                           timeout=20, env=catalogue)
        lines = [l for l in (p.stdout + p.stderr).splitlines() if "unknown setting" in l]
        check(p.returncode == 0 and not lines,
              "%s, every env.example variable set (%d): no unknown-setting line" % (b, len(env)),
              p.returncode, lines)
    log("checked %d variables against 6 programs" % len(env))

    # ./botmesh up, with the misspellings in its env file; a var directory
    # it cannot make stops it right after the check, before any start.
    top = harness.tempdir("botmesh-env-typos-")
    env_file = os.path.join(top, "typos.env")
    with open(env_file, "w") as f:
        f.write("".join("%s=%s\n" % kv for kv in TYPOS.items()) + "API_GATEWAY_PORT=3000\n")
    clean = {k: v for k, v in os.environ.items() if k not in TYPOS}
    p = subprocess.run([os.path.join(d.ROOT, "botmesh"), "up", "--no-build"], capture_output=True, text=True,
                       timeout=60, env=dict(clean, BOTMESH_ENV_FILE=env_file, BOTMESH_VAR_DIR="/dev/null/var",
                                            BOTMESH_BUILD_DIR=os.path.dirname(d.BIN)))
    said = [UP_WARNING.match(l) for l in p.stderr.splitlines() if "unknown setting" in l]
    want = sorted(set().union(*EXPECTED.values()))
    check(all(said) and sorted((m.group(1), m.group(2)) for m in said) == want,
          "./botmesh up names each misspelling of its env file once, as a warning", want, p.stderr[-1500:])
    check(all(m.group(3) == env_file for m in said), "and names the env file", p.stderr[-1500:])

if __name__ == "__main__":
    main(test)

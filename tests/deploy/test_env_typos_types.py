"""deploy.env_typos_types - every program takes the same per-type names for
misspellings as the broker, which ignores them rather than make a new bot
type (broker.type_typo).

A type one edit from a built-in one is a misspelling (MAX_PYTON_BOTS,
BOT_NOD_MODE), but a built-in name with a digit or '_' after it is a type
of its own (MAX_PYTHON3_BOTS, BOT_NODE_V2_MODE, MAX_JAVA_11_BOTS), and so is
one that BROKER_NEW_TYPES lists (MAX_PYHTON_BOTS with BROKER_NEW_TYPES=
pyhton).  Each program's --help (which checks the names at start) warns
about exactly the misspellings among the names it reads, and ./botmesh up
says exactly those of its env file.  Before, every program's check said
"unknown setting MAX_PYTHON3_BOTS (did you mean MAX_PYTHON_BOTS?)" (and
the same of MAX_PYHTON_BOTS) while the broker made the type python3.
"""
import os
import re
import subprocess

import deploylib as d
import harness
from harness import check, main

VARS = {"MAX_PYTHON3_BOTS": "2", "BOT_NODE_V2_MODE": "pool", "MAX_JAVA_11_BOTS": "1",
        "MAX_PYHTON_BOTS": "2", "BROKER_NEW_TYPES": "pyhton",
        "MAX_PYTON_BOTS": "3", "BOT_NOD_MODE": "pool"}
EXPECTED = {
    "botmesh-broker": {("MAX_PYTON_BOTS", "MAX_PYTHON_BOTS")},
    "botmesh-worker": {("MAX_PYTON_BOTS", "MAX_PYTHON_BOTS"), ("BOT_NOD_MODE", "BOT_NODE_MODE")},
    "botmesh-gateway": set(),
    "botmesh-webhook": set(),
    "botmesh-mock": set(),
    "botmesh-client": set(),
}
WARNING = re.compile(r"unknown setting (\S+) \(did you mean (\S+)\?\)")


def test():
    d.require(binaries=d.BINARIES)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAX_", "BOT_", "BROKER_"))}
    for b, want in EXPECTED.items():
        p = subprocess.run([os.path.join(d.BIN, b), "--help"], capture_output=True, text=True, timeout=20,
                           env=dict(clean, **VARS))
        got = {m.groups() for m in WARNING.finditer(p.stdout + p.stderr)}
        check(p.returncode == 0 and got == want,
              "%s --help warns about exactly %s (not MAX_PYTHON3_BOTS, BOT_NODE_V2_MODE, MAX_JAVA_11_BOTS, "
              "nor MAX_PYHTON_BOTS, which BROKER_NEW_TYPES declares)" % (b, sorted(want) or "nothing"),
              sorted(got), p.stderr[-1500:])

    # ./botmesh up, with them in its env file; a var directory it cannot
    # make stops it right after the check, before any start.
    top = harness.tempdir("botmesh-env-typos-types-")
    env_file = os.path.join(top, "types.env")
    with open(env_file, "w") as f:
        f.write("".join("%s=%s\n" % kv for kv in VARS.items()))
    p = subprocess.run([os.path.join(d.ROOT, "botmesh"), "up", "--no-build"], capture_output=True, text=True,
                       timeout=60, env=dict(clean, BOTMESH_ENV_FILE=env_file, BOTMESH_VAR_DIR="/dev/null/var",
                                            BOTMESH_BUILD_DIR=os.path.dirname(d.BIN)))
    said = sorted(m.groups() for m in WARNING.finditer(p.stderr))
    want = sorted(set().union(*EXPECTED.values()))
    check(said == want, "./botmesh up names exactly the misspellings, once each", want, p.stderr[-1500:])


if __name__ == "__main__":
    main(test)

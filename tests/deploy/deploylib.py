"""deploylib.py - shared helpers of the deploy tests (tests/deploy/).

env.example parsing, the list of binaries the build produces, SKIP
(exit code 77, which CMake's SKIP_RETURN_CODE turns into "skipped"), and
network namespaces (ip, netns_add).
"""
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("BOTMESH_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("BOTMESH_BIN") or os.path.join(ROOT, "build", "bin")

# Every binary the build produces.
BINARIES = ["botmesh-broker", "botmesh-worker", "botmesh-gateway", "botmesh-webhook",
            "botmesh-mock", "botmesh-client"]

# The original system's variables and defaults (its README's env.example).
SEED_VARS = {
    "MAX_PYTHON_BOTS": "5", "MAX_NODE_BOTS": "10", "MAX_JAVA_BOTS": "3",
    "WEBHOOK_MAX_RETRIES": "5", "WEBHOOK_RETRY_DELAY": "1000",
    "API_GATEWAY_PORT": "3000", "WEBHOOK_MANAGER_PORT": "4000", "MOCK_WEBHOOK_PORT": "5000",
}

SKIP = 77


def skip(why):
    print("SKIP: %s" % why, flush=True)
    sys.exit(SKIP)


def require(binaries=(), tools=()):
    """SKIP unless each of binaries is built and each of tools installed."""
    for b in binaries:
        if not binary(b):
            skip("%s not built yet" % b)
    for tool in tools:
        if not shutil.which(tool):
            skip("%s is not installed (bash deploy/install-deps.sh)" % tool)


def ip(*args, check_rc=True):
    """iproute2's ip; raises on failure unless check_rc is False."""
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=20)
    if check_rc and p.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), p.stderr.strip()))
    return p


def netns_add(name, stale):
    """Create network namespace name, or SKIP when namespaces are not
    available here (not root, no iproute2).  Namespaces whose name matches
    stale (a regex whose group 1 is the pid of the test that made them) and
    whose test is gone are removed first."""
    if os.geteuid() != 0:
        skip("network namespaces need root")
    if not shutil.which("ip"):
        skip("iproute2 (ip) is not installed")
    p = ip("netns", "add", name, check_rc=False)
    if p.returncode != 0:
        skip("network namespaces are unavailable here: %s" % p.stderr.strip())
    for line in ip("netns", "list").stdout.splitlines():
        other = line.split()[0] if line.split() else ""
        m = re.fullmatch(stale, other)
        if m and other != name and not os.path.exists("/proc/%s" % m.group(1)):
            ip("netns", "del", other, check_rc=False)
            print("removed stale namespace %s" % other, flush=True)


def binary(name):
    """Path of a built binary, or None when it is not built."""
    p = os.path.join(BIN, name)
    return p if os.access(p, os.X_OK) else None


class EnvVar:
    def __init__(self, name, default, meaning, users, commented, line):
        self.name, self.default, self.meaning = name, default, meaning
        self.users, self.commented, self.line = users, commented, line

    def __repr__(self):
        return "%s=%s [%s] (line %d)" % (self.name, self.default, " ".join(self.users), self.line)


_VAR = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
_TAGS = re.compile(r"\[([a-z ]+)\]\s*$")


def parse_env_example(path=None):
    """env.example -> ({name: EnvVar}, [problems]).

    Format: a comment block saying what the variable does, ending with the
    programs that read it in [brackets], then NAME=default (or, for a
    variable to leave unset, "# NAME=default")."""
    path = path or os.path.join(ROOT, "env.example")
    out, problems, comment = {}, [], []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            m = _VAR.match(line)
            if m and (not m.group(1) or comment):
                name, default = m.group(2), m.group(3)
                text = " ".join(comment)
                t = _TAGS.search(text)
                users = t.group(1).split() if t else []
                meaning = _TAGS.sub("", text).strip()
                if name in out:
                    problems.append("line %d: %s listed twice" % (n, name))
                if not meaning:
                    problems.append("line %d: %s has no line of meaning above it" % (n, name))
                if not users:
                    problems.append("line %d: %s does not say which programs read it ([...])" % (n, name))
                out[name] = EnvVar(name, default, meaning, users, bool(m.group(1)), n)
                comment = []
            elif line.startswith("#"):
                text = line.lstrip("#").strip()
                if text.startswith("----") or not text:
                    comment = []
                else:
                    comment.append(text)
            else:
                comment = []
                if line.strip():
                    problems.append("line %d: not a comment nor NAME=value: %r" % (n, line))
    return out, problems

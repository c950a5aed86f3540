"""deploy.env_help - env.example is complete and every --help agrees with it.

- env.example parses: each variable has a line of meaning, a default and the
  programs that read it; the seed's variables are there with the seed's
  defaults.
- ./botmesh --help names every variable env.example gives to "botmesh".
- docker-compose.yml interpolates every variable env.example gives to
  "compose" (${NAME:-default}, the same default).
- Each built binary's --help exits 0 and names every variable env.example
  gives to it; every NAME_LIKE_THIS variable its --help names is in
  env.example (binaries not built yet are reported and skipped).
- The documents make .env with `install -m 600 env.example .env` (it holds
  secrets), never a plain cp, and that command makes a 0600 file.
"""
import os
import re
import shutil
import stat
import subprocess

import deploylib as d
import harness
from harness import check, log, main

# Upper-case words in --help texts that are not environment variables the
# program reads: variables it sets for the bots, and spelled-out patterns.
NOT_ENV = {"BOT_JOB_ID", "BOT_TYPE", "BOT_ATTEMPT", "BOT_PROGRESS_FD", "BOT_TIMEOUT_MS",
           "BOT_DEADLINE", "BOT_WORKER"}
ENV_WORD = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def env_words(text):
    """NAME_LIKE_THIS words a --help text presents as variables: those that
    start a line, and every one below an "Environment" heading (metavariables
    such as JOB_ID in a usage line are neither)."""
    out, in_env = set(), False
    for line in text.splitlines():
        if re.match(r"^\s*environment\b", line, re.I):
            in_env = True
        m = re.match(r"^\s*([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", line)
        if m:
            out.add(m.group(1))
        if in_env:
            out.update(ENV_WORD.findall(line))
    return out


def mentions(text, name):
    """The help names the variable, or a pattern such as BOT_<TYPE>_CMD
    that covers it."""
    if re.search(r"\b%s\b" % re.escape(name), text):
        return True
    for pat in set(re.findall(r"\b[A-Z_]*<TYPE>[A-Z_]*\b", text)):
        if re.fullmatch(re.escape(pat).replace(re.escape("<TYPE>"), "[A-Z0-9_]+"), name):
            return True
    return False


def run_help(args):
    p = subprocess.run(args + ["--help"], capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, LOG_LEVEL="info"))
    return p.returncode, p.stdout + p.stderr


def check_print_env(b, path, env):
    """A binary whose settings are a table prints them with --print-env as
    env.example lines: each is in env.example, tagged for it, with the same
    default (an empty or commented-out line in env.example means "unset":
    the default is then the table's)."""
    p = subprocess.run([path, "--print-env"], capture_output=True, text=True, timeout=20)
    lines = [l for l in p.stdout.splitlines() if l and not l.startswith("#")]
    if p.returncode != 0 or not lines or not all("=" in l for l in lines):
        log("%s has no --print-env yet" % b)
        return
    table = dict(l.split("=", 1) for l in lines)
    tag = b.split("-", 1)[1]
    missing = sorted(n for n in table if n not in env or tag not in env[n].users)
    check(not missing, "%s --print-env: its %d variables are in env.example, tagged [%s]"
          % (b, len(table), tag), missing)
    # BROKER_ENDPOINT: env.example gives the broker's bind address
    # (tcp://*:5555); a service that connects reads "*" as this host.
    same = lambda n, v: env[n].default == v or (
        n == "BROKER_ENDPOINT" and env[n].default.replace("*", "127.0.0.1") == v)
    differ = sorted("%s: table %r, env.example %r" % (n, v, env[n].default)
                    for n, v in table.items()
                    if n in env and env[n].default and not env[n].commented and not same(n, v))
    check(not differ, "%s --print-env: the same defaults as env.example" % b, differ)


def test():
    env, problems = d.parse_env_example()
    check(not problems, "env.example parses cleanly", problems)
    for name, default in d.SEED_VARS.items():
        check(name in env, "env.example lists the seed's %s" % name)
        check(env[name].default == default and not env[name].commented,
              "%s defaults to the seed's %s" % (name, default), env[name])

    # The script.
    rc, text = run_help([os.path.join(d.ROOT, "botmesh")])
    check(rc == 0, "./botmesh --help exits 0", rc, text[-500:])
    want = [v for v in env.values() if "botmesh" in v.users]
    missing = [v.name for v in want if v.name not in text]
    check(not missing, "./botmesh --help names its %d variables" % len(want), missing)

    compose = open(os.path.join(d.ROOT, "docker-compose.yml")).read()
    for v in env.values():
        if "compose" in v.users:
            check("${%s:-%s}" % (v.name, v.default) in compose,
                  "docker-compose.yml reads %s with env.example's default %s" % (v.name, v.default))

    users = sorted({u for v in env.values() for u in v.users} - {"botmesh", "compose"})
    for u in users:
        check(u in [b.split("-", 1)[1] for b in d.BINARIES], "tag [%s] names a botmesh binary" % u)

    built = 0
    for b in d.BINARIES:
        path = d.binary(b)
        if not path:
            log("not built yet, skipped: %s" % b)
            continue
        built += 1
        rc, text = run_help([path])
        check(rc == 0, "%s --help exits 0" % b, rc, text[-800:])
        tag = b.split("-", 1)[1]
        want = [v.name for v in env.values() if tag in v.users]
        missing = [n for n in want if not mentions(text, n)]
        check(not missing, "%s --help names the %d variables env.example gives it" % (b, len(want)),
              missing)
        named = {w for w in env_words(text) if w not in NOT_ENV}
        # MAX_<TYPE>_BOTS style patterns are spelled out in env.example's comments.
        unknown = sorted(n for n in named if n not in env)
        check(not unknown, "every variable %s --help names is in env.example" % b, unknown)
        wrong = sorted(n for n in named if n in env and tag not in env[n].users)
        check(not wrong, "env.example tags those variables with [%s]" % tag, wrong)
        check_print_env(b, path, env)
    log("%d of %d binaries built and checked" % (built, len(d.BINARIES)))
    check_copy_instruction()


# The documents that tell the user how to make .env from env.example.
COPY_DOCS = ["README.md", "env.example", "TROUBLESHOOTING.md", "docker-compose.yml", "deploy/README.md",
             "deploy/systemd/README.md"]
COPY = "install -m 600 env.example .env"


def check_copy_instruction():
    """.env holds secrets (API_KEYS, WEBHOOK_SECRET, REDIS_URL's password):
    the documents copy env.example with a mode of 0600, never with a plain
    cp (0644 under the usual umask, which up then warns about); README and
    env.example's header give the command, and it makes a 0600 file."""
    plain = []
    for doc in COPY_DOCS:
        for n, line in enumerate(open(os.path.join(d.ROOT, doc)), 1):
            if re.search(r"\bcp\s+(\S+/)?env\.example\b", line):
                plain.append("%s:%d: %s" % (doc, n, line.strip()))
    check(not plain, "no document copies env.example with a plain cp", plain)
    for doc in ("README.md", "env.example"):
        check(COPY in open(os.path.join(d.ROOT, doc)).read(), "%s says %s" % (doc, COPY))
    top = harness.tempdir("botmesh-env-copy-")
    shutil.copy(os.path.join(d.ROOT, "env.example"), top)
    p = subprocess.run(["sh", "-c", "umask 022 && " + COPY], cwd=top, capture_output=True, text=True, timeout=20)
    mode = stat.S_IMODE(os.stat(os.path.join(top, ".env")).st_mode) if p.returncode == 0 else None
    check(mode == 0o600, "%s under umask 022 makes a 0600 .env" % COPY, p.returncode, p.stderr, mode)


if __name__ == "__main__":
    main(test)

"""deploy.deps - what each command installs, without running apt.

deploy/install-deps.sh has two sets: --runtime (build and run the stack)
and the full one (plus the test, fuzz and bench tools).  The test reads the
sets with --print, then runs the real scripts (`./botmesh up`, `build`,
`test`, `bench`, and install-deps.sh as .ci/run calls it) with apt-get and
dpkg-query replaced by recorders on PATH and cmake by a stand-in that stops
the build, and checks what apt-get was asked:

- `up` and `build` ask only for runtime packages: no browser, Prometheus,
  docker-compose, wrk, sanitizer runtime or valgrind on a user's machine;
- `test`, `bench` and CI ask for the test tools as well;
- a package already installed is never named, apt-get install carries
  --no-upgrade, and no upgrade command is ever run;
- a user who is not root, on a machine without sudo, is told to run it as
  root (not "sudo: command not found").
"""
import os
import shutil
import stat
import subprocess

import deploylib as d
from harness import check, log, main, tempdir

SCRIPT = os.path.join(d.ROOT, "botmesh")
DEPS = os.path.join(d.ROOT, "deploy", "install-deps.sh")
# Packages of the test and bench tools a user's machine must not get from `up`.
TEST_ONLY = {"chromium", "prometheus", "docker-compose", "wrk", "valgrind", "clang", "linux-perf"}
# Packages the fake dpkg-query reports as installed.
INSTALLED = {"curl", "jq", "python3"}


def package_set(*args):
    p = subprocess.run(["bash", DEPS, "--print"] + list(args), capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "install-deps.sh --print %s" % " ".join(args), p.stderr)
    return set(p.stdout.split())


def executable(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Fakes:
    """A PATH directory whose apt-get, dpkg-query and cmake record and stop."""

    def __init__(self):
        self.dir = tempdir("botmesh-deps-")
        self.bin = os.path.join(self.dir, "bin")
        self.apt_log = os.path.join(self.dir, "apt.log")
        os.mkdir(self.bin)
        executable(os.path.join(self.bin, "apt-get"),
                   '#!/bin/sh\necho "$*" >>"%s"\nexit 0\n' % self.apt_log)
        executable(os.path.join(self.bin, "dpkg-query"),
                   "#!/bin/sh\nfor a in \"$@\"; do for p in %s; do\n"
                   '  [ "$p" = "$a" ] && printf "%%s install ok installed\\n" "$p"\n'
                   "done; done\nexit 1\n" % " ".join(sorted(INSTALLED)))
        executable(os.path.join(self.bin, "cmake"),
                   '#!/bin/sh\necho "cmake stand-in: the build stops here" >&2\nexit 3\n')
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("BOTMESH_", "CTEST_"))}
        self.env.update({
            "PATH": self.bin + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
            "BOTMESH_BUILD_DIR": os.path.join(self.dir, "build"),
            "BOTMESH_VAR_DIR": os.path.join(self.dir, "var"),
            "BOTMESH_ENV_FILE": os.path.join(self.dir, "no.env"),
        })

    def run(self, argv):
        """Run argv; return (process, [apt-get command lines])."""
        if os.path.exists(self.apt_log):
            os.unlink(self.apt_log)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=self.env,
                           stdin=subprocess.DEVNULL)
        calls = open(self.apt_log).read().splitlines() if os.path.exists(self.apt_log) else []
        log("$ %s -> rc %d; apt-get: %s" % (" ".join(os.path.basename(a) for a in argv), p.returncode, calls))
        return p, calls


def installed_by(calls):
    """The packages apt-get install was asked for, and its options."""
    pkgs, opts = set(), set()
    for line in calls:
        words = line.split()
        if "install" in words:
            rest = words[words.index("install") + 1:]
            i = 0
            while i < len(rest):
                w = rest[i]
                if w in ("-o", "--option") and i + 1 < len(rest):
                    opts.add("%s %s" % (w, rest[i + 1]))     # -o NAME=VALUE: one option
                    i += 2
                    continue
                (opts if w.startswith("-") else pkgs).add(w)
                i += 1
    return pkgs, opts


def check_calls(what, calls, allowed, needed):
    pkgs, opts = installed_by(calls)
    check(pkgs, "%s asks apt-get to install the missing packages" % what, calls)
    check(pkgs <= allowed, "%s asks only for packages of its set" % what, sorted(pkgs - allowed))
    check(needed <= pkgs, "%s asks for %s" % (what, sorted(needed)), sorted(pkgs))
    check(not pkgs & INSTALLED, "%s does not name an installed package" % what, sorted(pkgs & INSTALLED))
    check("--no-upgrade" in opts, "%s: apt-get install --no-upgrade" % what, calls)
    upgrades = [c for c in calls if set(c.split()) & {"upgrade", "dist-upgrade", "full-upgrade"}]
    check(not upgrades, "%s runs no apt-get upgrade" % what, upgrades)


def test():
    runtime, full = package_set("--runtime"), package_set()
    check(runtime < full, "the runtime set is part of the full set", sorted(runtime - full))
    check(not runtime & TEST_ONLY, "the runtime set has no test tool", sorted(runtime & TEST_ONLY))
    check(TEST_ONLY <= full, "the full set has the test tools", sorted(TEST_ONLY - full))
    check({"redis-server", "cmake", "libczmq-dev", "python3"} <= runtime,
          "the runtime set builds and runs the stack", sorted(runtime))
    p = subprocess.run(["bash", DEPS, "--bogus"], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and "--bogus" in p.stderr, "install-deps.sh refuses an unknown argument", p.stderr)

    ci = open(os.path.join(d.ROOT, ".ci", "run")).read()
    ci_lines = [l.strip() for l in ci.splitlines() if "install-deps.sh" in l and not l.strip().startswith("#")]
    check(ci_lines and all("--runtime" not in l for l in ci_lines),
          ".ci/run installs the full set", ci_lines)

    f = Fakes()
    for cmd in (["up"], ["build"]):
        p, calls = f.run([SCRIPT] + cmd)
        check(p.returncode != 0 and "cmake stand-in" in p.stderr,
              "./botmesh %s installs, then builds (stopped by the stand-in)" % cmd[0], p.stdout, p.stderr)
        check_calls("./botmesh %s" % cmd[0], calls, runtime, {"redis-server", "cmake"})
    for cmd in (["test"], ["bench", "--quick"]):
        p, calls = f.run([SCRIPT] + cmd)
        check(p.returncode != 0 and "cmake stand-in" in p.stderr,
              "./botmesh %s installs, then builds (stopped by the stand-in)" % cmd[0], p.stdout, p.stderr)
        check_calls("./botmesh %s" % cmd[0], calls, full, {"chromium", "prometheus", "docker-compose", "wrk"})
    # Not root, and no sudo to become it: one clear line, apt-get not run.
    if shutil.which("sudo"):
        log("sudo is installed here: the case without it is not run")
    else:
        fake_id = os.path.join(f.bin, "id")
        executable(fake_id, '#!/bin/sh\n[ "$1" = -u ] && { echo 1000; exit 0; }\nexec /usr/bin/id "$@"\n')
        p, calls = f.run(["bash", DEPS, "--runtime"])
        os.unlink(fake_id)
        check(p.returncode == 1 and "sudo is not installed" in p.stderr and "as root" in p.stderr
              and "command not found" not in p.stderr and not calls,
              "install-deps.sh as a user without sudo says to run it as root", p.returncode, p.stderr, calls)
    p, calls = f.run(["bash", DEPS])
    check(p.returncode == 0, "install-deps.sh as .ci/run calls it", p.stderr)
    check_calls("install-deps.sh (CI)", calls, full, {"chromium", "prometheus", "docker-compose", "wrk"})


if __name__ == "__main__":
    main(test)

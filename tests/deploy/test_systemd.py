"""deploy.systemd - the unit files in deploy/systemd/.

Each service unit: ExecStart runs a binary the build produces, reads its
settings from an EnvironmentFile, restarts on failure, stops with SIGTERM
within TimeoutStopSec, runs as a non-root user; botmesh.target pulls in
every unit.  With systemd-analyze installed, `systemd-analyze verify` checks
copies whose ExecStart points into the build, and must print nothing.
"""
import glob
import os
import re
import shutil
import subprocess

import deploylib as d
from harness import check, log, main, tempdir

SYSTEMD = os.path.join(d.ROOT, "deploy", "systemd")


class Unit(dict):
    """{section: {key: value}}; a key given several times keeps all its
    values, space-joined (as systemd does for Wants=, After=, ...)."""


def parse(path):
    u, sec = Unit(), None
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            sec = u.setdefault(line[1:-1], {})
            continue
        check(sec is not None and "=" in line, "%s: a key=value line in a section" % path, line)
        k, v = (x.strip() for x in line.split("=", 1))
        sec[k] = (sec[k] + " " + v) if k in sec and k in ("Wants", "After", "Requires", "Before") else v
    return u


def test():
    units = sorted(glob.glob(os.path.join(SYSTEMD, "*.service")))
    names = [os.path.basename(u) for u in units]
    check(len(units) >= 5, "deploy/systemd holds a unit per service", names)
    binaries = set()
    for path in units:
        u = os.path.basename(path)
        cp = parse(path)
        s = cp["Service"]
        exe = s.get("ExecStart", "").split()
        check(exe and os.path.basename(exe[0]) in d.BINARIES, "%s: ExecStart runs a botmesh binary" % u, exe)
        b = os.path.basename(exe[0])
        binaries.add(b)
        check(d.binary(b), "%s: the build produces %s (in %s)" % (u, b, d.BIN))
        check(s.get("EnvironmentFile"), "%s: has an EnvironmentFile" % u)
        check(s.get("Restart") in ("on-failure", "always", "on-abnormal"), "%s: Restart=" % u, s.get("Restart"))
        check(s.get("KillSignal") == "SIGTERM", "%s: KillSignal=SIGTERM" % u, s.get("KillSignal"))
        check(re.fullmatch(r"\d+s?", s.get("TimeoutStopSec", "")), "%s: TimeoutStopSec=" % u,
              s.get("TimeoutStopSec"))
        check(s.get("User") not in (None, "root", "0"), "%s: runs as a non-root user" % u, s.get("User"))
        check("%i" in " ".join(exe) if "@" in u else True, "%s: a template passes its instance" % u)
    check({"botmesh-broker", "botmesh-worker", "botmesh-gateway", "botmesh-webhook", "botmesh-mock"} <= binaries,
          "every service has a unit", sorted(binaries))

    target = parse(os.path.join(SYSTEMD, "botmesh.target"))
    wants = target["Unit"].get("Wants", "").split()
    for n in names:
        if "@" in n:
            check(any(w.startswith(n.replace("@.service", "@")) for w in wants),
                  "botmesh.target starts instances of %s" % n, wants)
        else:
            check(n in wants, "botmesh.target wants %s" % n, wants)

    if not shutil.which("systemd-analyze"):
        log("systemd-analyze is not installed: verify not run")
        return
    tmp = tempdir("botmesh-systemd-")
    files = []
    for path in units + [os.path.join(SYSTEMD, "botmesh.target")]:
        text = open(path).read()
        text = re.sub(r"/usr/local/bin/(botmesh-[a-z]+)", lambda m: os.path.join(d.BIN, m.group(1)), text)
        dst = os.path.join(tmp, os.path.basename(path))
        open(dst, "w").write(text)
        files.append(dst.replace("@.service", "@python.service") if "@" in dst else dst)
    for f in files:
        if "@python" in f:
            shutil.copy(f.replace("@python.service", "@.service"), f)
    p = subprocess.run(["systemd-analyze", "verify"] + files, capture_output=True, text=True,
                       timeout=60, cwd=tmp)
    ours = [l for l in (p.stdout + p.stderr).splitlines() if tmp in l or "botmesh" in l]
    check(p.returncode == 0 and not ours, "systemd-analyze verify finds nothing to say", p.returncode, ours)


if __name__ == "__main__":
    main(test)

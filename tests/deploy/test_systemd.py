"""deploy.systemd - the unit files in deploy/systemd/.

Each service unit: ExecStart runs a binary the build produces, reads its
settings from an EnvironmentFile, restarts on failure, stops with SIGTERM
within TimeoutStopSec, runs as a non-root user (the workers, whose bots run
as their user, as another user than the other services); botmesh.target pulls in
every unit.  A configuration error (exit status 2) is not restarted.
The environment a unit gets when its EnvironmentFile is a copy of
env.example (as README.md says to install it; systemd lets the file
override Environment=) keeps every value the unit sets itself (the webhook
manager's WEBHOOK_NAME=webhook-%H; workers get --name %H-%i): an empty
BOTMESH_ROOT= there sent the workers to the build tree's bots, which a host
does not have; nor does it set what the README says to set for one unit
in a drop-in (WORKER_PREFETCH, WORKER_METRICS_PORT).  With systemd-analyze installed, `systemd-analyze verify` checks
copies whose ExecStart points into the build, and must print nothing.
"""
import glob
import os
import re
import shlex
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


def env_file(path):
    """{name: value} of an EnvironmentFile as systemd reads it: NAME=VALUE
    lines, '#' and ';' comments, optional quotes around the value."""
    out = {}
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        k, v = (x.strip() for x in line.split("=", 1))
        out[k] = shlex.split(v)[0] if v[:1] in "'\"" and v else v
    return out


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
        check("2" in s.get("RestartPreventExitStatus", "").split(),
              "%s: a configuration error (exit 2) is not restarted in a loop" % u,
              s.get("RestartPreventExitStatus"))
        # Environment= first, then the EnvironmentFile overrides it.
        own = dict(w.split("=", 1) for w in shlex.split(s.get("Environment", "")))
        got = dict(own, **env_file(os.path.join(d.ROOT, "env.example")))
        changed = {k: (v, got[k]) for k, v in own.items() if got[k] != v}
        check(not changed, "%s: env.example as its EnvironmentFile keeps the unit's Environment= "
              "(unit, file)" % u, changed)
        # A name that stays across restarts, apart on each host (the default
        # is HOST-PID): the worker's flag, the webhook manager's variable.
        if b == "botmesh-worker":
            name = exe[exe.index("--name") + 1] if "--name" in exe else ""
            check("%H" in name and "%i" in name, "%s: each instance is named by host and type" % u, exe)
        if b == "botmesh-webhook":
            check("%H" in got.get("WEBHOOK_NAME", ""), "%s: WEBHOOK_NAME names the host" % u,
                  got.get("WEBHOOK_NAME"))
    # What the README says to set for one unit in a drop-in (Environment=),
    # env.example must not set: the env file would override it.
    readme = open(os.path.join(SYSTEMD, "README.md")).read()
    per_unit = set(re.findall(r"Environment=([A-Z][A-Z0-9_]*)=", readme))
    example = env_file(os.path.join(d.ROOT, "env.example"))
    check("WORKER_PREFETCH" in per_unit and "WORKER_METRICS_PORT" in per_unit,
          "the README says how to set WORKER_PREFETCH and WORKER_METRICS_PORT for one unit",
          per_unit)
    check(not per_unit & set(example),
          "env.example leaves commented out what the README sets for one unit in a drop-in",
          sorted(per_unit & set(example)))
    check({"botmesh-broker", "botmesh-worker", "botmesh-gateway", "botmesh-webhook", "botmesh-mock"} <= binaries,
          "every service has a unit", sorted(binaries))
    # Bots not sandboxed run as the worker's user: not the user of a
    # service that holds secrets (API_KEYS, WEBHOOK_SECRET, REDIS_URL).
    users = {os.path.basename(p): parse(p)["Service"].get("User") for p in units}
    worker_users = {users[n] for n in users if n.startswith("botmesh-worker")}
    others = {users[n] for n in users if not n.startswith("botmesh-worker")}
    check(not worker_users & others, "the workers (and so their bots) run as a user of their own",
          users)

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

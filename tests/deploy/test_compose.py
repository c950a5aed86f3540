"""deploy.compose - deploy/docker-compose.yml and deploy/Dockerfile, offline.

No Docker engine runs here: Debian's docker-compose (v1) validates the file
(`config -q`) and resolves it (`config`); the test then checks the resolved
services against the seed (services, ports, Grafana's admin/admin123), that
`--scale workers=N` can work (no container_name, no host ports on workers),
health checks and restart policies, that every botmesh service's command is
a binary the build produces, that every variable it sets is in env.example,
and that the Dockerfile is multi-stage on bookworm, non-root, and installs
the runtime package of every library the built binaries link.
"""
import os
import re
import shutil
import subprocess
import tempfile

import yaml

import deploylib as d
from harness import check, log, main

COMPOSE = os.path.join(d.ROOT, "deploy", "docker-compose.yml")
DOCKERFILE = os.path.join(d.ROOT, "deploy", "Dockerfile")

# service -> (host port, container port) the seed's README promises.
SEED_PORTS = {"api-gateway": (3000, 3000), "webhook-manager": (4000, 4000),
              "mock-webhook": (5000, 5000), "prometheus": (9090, 9090), "grafana": (3001, 3000)}
SERVICES = {"redis", "broker", "api-gateway", "workers", "webhook-manager", "mock-webhook",
            "prometheus", "grafana"}
# Libraries from packages every Debian image has.
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}
# Sanitizer runtimes (the ASan build of CI), not part of a release image.
SANITIZER_LIBS = re.compile(r"lib(asan|ubsan|tsan|lsan)\.so")


def compose(*args):
    """Run docker-compose with a clean environment and an empty env file."""
    tmp = tempfile.mkdtemp(prefix="botmesh-compose-")
    try:
        envfile = os.path.join(tmp, "empty.env")
        open(envfile, "w").close()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        return subprocess.run(["docker-compose", "--env-file", envfile, "-f", COMPOSE] + list(args),
                              capture_output=True, text=True, timeout=60, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ports_of(svc):
    """[(published or None, target)] of a resolved service."""
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            pub = p.get("published")
            out.append((int(pub) if pub not in (None, "") else None, int(p["target"])))
        else:
            parts = str(p).split(":")
            out.append((int(parts[-2]) if len(parts) > 1 else None, int(parts[-1].split("/")[0])))
    return out


def check_compose():
    if not shutil.which("docker-compose"):
        d.skip("docker-compose is not installed (bash deploy/install-deps.sh installs it)")
    p = compose("config", "-q")
    check(p.returncode == 0, "docker-compose config -q accepts deploy/docker-compose.yml",
          p.stdout, p.stderr)
    p = compose("config")
    check(p.returncode == 0, "docker-compose config resolves it", p.stderr)
    resolved = yaml.safe_load(p.stdout)
    services = resolved["services"]
    check(SERVICES <= set(services), "the seed's services are there", sorted(services))

    for name, (host, target) in SEED_PORTS.items():
        check((host, target) in ports_of(services[name]),
              "%s publishes %d -> %d" % (name, host, target), ports_of(services[name]))

    w = services["workers"]
    check("container_name" not in w, "workers have no container_name (--scale workers=5 works)")
    check(all(pub is None for pub, _ in ports_of(w)),
          "workers publish no fixed host port (--scale workers=5 works)", ports_of(w))

    for name, svc in services.items():
        check(svc.get("restart") in ("always", "unless-stopped", "on-failure"),
              "%s has a restart policy" % name, svc.get("restart"))
        if name != "workers":     # a worker has no port to probe
            hc = svc.get("healthcheck") or {}
            check(hc.get("test") and not hc.get("disable"), "%s has a health check" % name, hc)

    g = services["grafana"]["environment"]
    check(g.get("GF_SECURITY_ADMIN_USER") == "admin" and g.get("GF_SECURITY_ADMIN_PASSWORD") == "admin123",
          "grafana's login is the seed's admin/admin123", g)

    # Bind-mounted files (Prometheus config, Grafana provisioning) exist.
    for name in ("prometheus", "grafana"):
        for v in services[name].get("volumes", []):
            src = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            vtype = v.get("type") if isinstance(v, dict) else ("bind" if src.startswith("/") else "volume")
            if vtype == "bind":
                check(os.path.exists(src), "%s mounts %s, which exists" % (name, os.path.relpath(src, d.ROOT)))

    env, _ = d.parse_env_example()
    ours = {n: s for n, s in services.items() if s.get("image", "").startswith("botmesh")}
    check(ours.keys() >= {"broker", "api-gateway", "workers", "webhook-manager", "mock-webhook"},
          "the botmesh services use the botmesh image", sorted(ours))
    for name, svc in ours.items():
        b = svc.get("build") or {}
        check(os.path.isfile(os.path.join(b.get("context", ""), b.get("dockerfile", ""))),
              "%s builds from deploy/Dockerfile" % name, b)
        cmd = svc.get("command")
        cmd = cmd if isinstance(cmd, list) else str(cmd).split()
        check(cmd and cmd[0] in d.BINARIES, "%s runs a botmesh binary (%s)" % (name, cmd[0]), cmd)
        check(d.binary(cmd[0]), "the build produces %s (in %s)" % (cmd[0], d.BIN))
        unknown = sorted(k for k in (svc.get("environment") or {}) if k not in env)
        check(not unknown, "every variable %s sets is in env.example" % name, unknown)
    dc = services["webhook-manager"]["environment"]
    check("mock-webhook" in dc.get("WEBHOOK_ALLOWED_HOSTS", "") or dc.get("WEBHOOK_ALLOW_PRIVATE") == "1",
          "the webhook manager may call http://mock-webhook:5000 (the seed's webhookUrl)", dc)


def check_dockerfile():
    text = open(DOCKERFILE).read()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    check(len(froms) >= 2, "the Dockerfile is multi-stage", froms)
    check(all(f[0].startswith("debian:bookworm") for f in froms), "every stage is Debian bookworm", froms)
    check(re.search(r"\bcmake\b", text) and re.search(r"\bninja\b", text), "it builds with cmake")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    check(users and users[-1].split(":")[0] not in ("root", "0"), "the runtime runs as a non-root user", users)
    last = text[text.rfind("\nFROM"):]
    check(not re.search(r"\b(build-essential|cmake|-dev)\b", last),
          "the runtime stage installs no compiler nor -dev package")
    runtime_pkgs = set(re.findall(r"\b(lib[a-z0-9.+-]+)\b", last))

    # Every package the Dockerfile installs exists in bookworm (this machine's
    # apt lists are bookworm's).
    if shutil.which("apt-cache"):
        pkgs = set()
        for cmd in text.replace("\\\n", " ").split("&&"):
            words = cmd.split()
            if "install" in words and any(w.endswith("apt-get") for w in words):
                pkgs |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
        p = subprocess.run(["apt-cache", "show", "--no-all-versions"] + sorted(pkgs),
                           capture_output=True, text=True)
        known = set(re.findall(r"^Package: (\S+)", p.stdout, re.M))
        missing = sorted(pkgs - known)
        check(not missing, "every package the Dockerfile installs exists (%d)" % len(pkgs), missing)

    # Every library a built binary links comes from a package the runtime
    # stage installs.
    checked = 0
    for b in d.BINARIES:
        path = d.binary(b)
        if not path or not shutil.which("dpkg"):
            continue
        out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
        for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out):
            if SANITIZER_LIBS.search(lib):
                continue
            loc = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
            m = re.search(r"^\s*%s => (\S+)" % re.escape(lib), loc, re.M)
            check(m, "%s finds %s" % (b, lib))
            real = os.path.realpath(m.group(1))
            pk = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
            if pk.returncode != 0:       # usrmerge: /lib vs /usr/lib
                alt = real[4:] if real.startswith("/usr/") else "/usr" + real
                pk = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True)
            check(pk.returncode == 0, "%s belongs to a Debian package" % real, pk.stderr)
            pkg = pk.stdout.split(":")[0]
            check(pkg in runtime_pkgs or pkg in BASE_PACKAGES,
                  "the runtime stage installs %s (%s needs %s)" % (pkg, b, lib), sorted(runtime_pkgs))
            checked += 1
    log("%d library links checked" % checked)


def test():
    check_dockerfile()
    check_compose()


if __name__ == "__main__":
    main(test)

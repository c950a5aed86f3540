"""deploy.compose - docker-compose.yml, docker-compose.simple.yml and
deploy/Dockerfile, offline.

No Docker engine runs here: Debian's docker-compose (v1) validates the files
(`config -q`) and resolves them (`config`), in a copy of the root as a user
has it: without a .env, and with env.example as .env (Compose reads it:
each port variable changed there is the published port).  The test then checks the
resolved services against the BullMQ-based system botmesh replaces (its
service names, ports, Grafana's admin/admin123, the gateway's 100 requests
per 15 minutes), that `--scale workers=N` can work (no container_name, no
host ports on workers), health checks and restart policies, that every
botmesh service's command is a binary the build produces, that every
variable it sets is in env.example, that the simple file runs the same
image, commands and ports, and that every docker-compose command of that
system's README parses with docker-compose's own command-line parser and
names services that exist.  The Dockerfile is multi-stage on bookworm,
non-root, and installs the runtime package of every library the built
binaries link.
"""
import json
import os
import re
import shutil
import subprocess

import yaml

import deploylib as d
from harness import check, log, main, tempdir

COMPOSE = os.path.join(d.ROOT, "docker-compose.yml")
SIMPLE = os.path.join(d.ROOT, "docker-compose.simple.yml")
DOCKERFILE = os.path.join(d.ROOT, "deploy", "Dockerfile")

# service -> (host port, container port) the seed's README promises.
SEED_PORTS = {"api-gateway": (3000, 3000), "webhook-manager": (4000, 4000),
              "mock-webhook": (5000, 5000), "prometheus": (9090, 9090), "grafana": (3001, 3000)}
# env.example's port variables: (variable, service, its port in the
# container and on the host by default, a host port to set in .env).
DOTENV_PORTS = [("API_GATEWAY_PORT", "api-gateway", 3000, 3100),
                ("WEBHOOK_MANAGER_PORT", "webhook-manager", 4000, 4100),
                ("MOCK_WEBHOOK_PORT", "mock-webhook", 5000, 5100),
                ("BROKER_PORT", "orchestrator", 5555, 6555),
                ("BROKER_METRICS_PORT", "orchestrator", 9555, 9655)]
SERVICES = {"redis", "orchestrator", "api-gateway", "workers", "webhook-manager", "mock-webhook",
            "prometheus", "grafana"}
SIMPLE_SERVICES = {"redis", "orchestrator", "api-gateway", "workers", "webhook-manager", "mock-webhook"}
# The gateway's default limit in Compose: 100 requests per 15 minutes.
SEED_RATE = 100 / (15 * 60)
# The docker-compose commands of the replaced system's README, as its users
# type them at the repository root.
SEED_COMMANDS = [
    "up --build -d", "ps", "logs -f", "logs -f api-gateway", "logs -f orchestrator",
    "logs -f workers", "logs -f webhook-manager", "logs --tail=50", "up --scale workers=5 -d",
    "down", "down -v", "build --no-cache", "up --build",
    "-f docker-compose.simple.yml up",
]
# Libraries from packages every Debian image has.
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}
# Sanitizer runtimes (the ASan build of CI), not part of a release image.
SANITIZER_LIBS = re.compile(r"lib(asan|ubsan|tsan|lsan)\.so")


class Root:
    """A copy of the repository root as Compose sees it (the two Compose
    files, deploy/ linked), with or without a .env."""

    def __init__(self, dotenv=None):
        self.dir = tempdir("botmesh-compose-")
        for f in (COMPOSE, SIMPLE):
            shutil.copy(f, self.dir)
        os.symlink(os.path.join(d.ROOT, "deploy"), os.path.join(self.dir, "deploy"))
        if dotenv is not None:
            with open(os.path.join(self.dir, ".env"), "w") as f:
                f.write(dotenv)

    def compose(self, *args):
        """docker-compose in this root with a clean environment."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.dir}
        return subprocess.run(["docker-compose"] + list(args), cwd=self.dir,
                              capture_output=True, text=True, timeout=60, env=env)

    def resolved(self, *files):
        args = [a for f in files for a in ("-f", f)]
        p = self.compose(*(args + ["config", "-q"]))
        check(p.returncode == 0, "docker-compose %s config -q accepts it" % " ".join(args), p.stdout, p.stderr)
        p = self.compose(*(args + ["config"]))
        check(p.returncode == 0, "docker-compose %s config resolves it" % " ".join(args), p.stderr)
        return yaml.safe_load(p.stdout)["services"]


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


def check_compose(services):
    check(SERVICES <= set(services), "the seed's services are there", sorted(services))
    check("broker" not in services, "the broker is one service, orchestrator", sorted(services))
    aliases = services["orchestrator"].get("networks", {}).get("default", {}).get("aliases", [])
    check("broker" in aliases, "the orchestrator also answers as broker on the network", aliases)

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
    check(ours.keys() >= {"orchestrator", "api-gateway", "workers", "webhook-manager", "mock-webhook"},
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
    check(dc.get("WEBHOOK_ALLOWED_HOSTS") == "mock-webhook:5000",
          "the webhook manager may call http://mock-webhook:5000 (the seed's webhookUrl), "
          "and no other port of that host", dc)


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


def rate_limit(services):
    """(requests per second, bucket) the resolved gateway gets."""
    e = services["api-gateway"]["environment"]
    return float(e.get("RATE_LIMIT_RPS") or 0), float(e.get("RATE_LIMIT_BURST") or 0)


def check_seed_rate(services, how):
    rps, burst = rate_limit(services)
    check(abs(rps - SEED_RATE) < 0.001 and burst == 100,
          "%s: the gateway allows 100 requests per 15 minutes per address" % how, rps, burst)


def check_simple(simple, full):
    check(set(simple) == SIMPLE_SERVICES, "the simple stack has exactly %s" % sorted(SIMPLE_SERVICES),
          sorted(simple))
    check(simple["workers"].get("deploy", {}).get("replicas", 1) == 1, "the simple stack runs one worker")
    for name, svc in simple.items():
        ref = full[name]
        for key in ("image", "command") if name != "redis" else ("image",):
            check(svc.get(key) == ref.get(key), "simple %s: same %s as docker-compose.yml" % (name, key),
                  svc.get(key), ref.get(key))
        check(set(ports_of(svc)) <= set(ports_of(ref)), "simple %s: ports of docker-compose.yml" % name,
              ports_of(svc), ports_of(ref))
        for var in ("BROKER_ENDPOINT", "REDIS_URL", "API_GATEWAY_PORT", "WEBHOOK_MANAGER_PORT",
                    "MOCK_WEBHOOK_PORT", "BROKER_METRICS_PORT", "WEBHOOK_ALLOWED_HOSTS"):
            a = (svc.get("environment") or {}).get(var)
            b = (ref.get("environment") or {}).get(var)
            check(a == b, "simple %s: %s as in docker-compose.yml" % (name, var), a, b)
        b = svc.get("build") or {}
        if name != "redis":
            check(os.path.isfile(os.path.join(b.get("context", ""), b.get("dockerfile", ""))),
                  "simple %s builds from deploy/Dockerfile" % name, b)
    check_seed_rate(simple, "docker-compose.simple.yml")


def parse_cli(argv):
    """docker-compose's own parser on a command line: (global options,
    command, command options); a SystemExit names what it refuses."""
    code = ("import json, sys\n"
            "from inspect import getdoc\n"
            "import compose.cli.main as m\n"
            "from compose.cli.docopt_command import docopt_full_help as parse\n"
            "top = parse(getdoc(m.TopLevelCommand), sys.argv[1:], options_first=True)\n"
            "sub = parse(getdoc(getattr(m.TopLevelCommand, top['COMMAND'])), top['ARGS'], options_first=True)\n"
            "print(json.dumps([top, sub]))\n")
    p = subprocess.run(["/usr/bin/python3", "-c", code] + argv, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return None, p.stdout + p.stderr
    top, sub = json.loads(p.stdout)
    return (top, top["COMMAND"], sub), ""


def check_seed_commands(root, services_of):
    if subprocess.run(["/usr/bin/python3", "-c", "import compose.cli.main"], capture_output=True).returncode:
        d.skip("docker-compose's Python package is not importable by /usr/bin/python3")
    # The parser refuses what it should (so these checks can fail).
    bad, why = parse_cli(["logs", "--bogus"])
    check(bad is None and "Usage" in why, "docker-compose's parser refuses an unknown option", why)
    for line in SEED_COMMANDS:
        parsed, why = parse_cli(line.split())
        check(parsed, "`docker-compose %s` parses" % line, why)
        top, cmd, sub = parsed
        files = top.get("--file") or ["docker-compose.yml"]
        check(all(os.path.isfile(os.path.join(root.dir, f)) for f in files),
              "`docker-compose %s`: its files are at the root" % line, files)
        services = services_of(tuple(files))
        named = list(sub.get("SERVICE") or [])
        named += [s.split("=")[0] for s in sub.get("--scale") or []]
        unknown = [s for s in named if s not in services]
        check(not unknown, "`docker-compose %s` names services that exist" % line, unknown, sorted(services))
    log("%d docker-compose commands parsed" % len(SEED_COMMANDS))


def test():
    check_dockerfile()
    if not shutil.which("docker-compose"):
        d.skip("docker-compose is not installed (bash deploy/install-deps.sh installs it)")
    example = open(os.path.join(d.ROOT, "env.example")).read()

    # No .env: the defaults of the files.
    bare = Root()
    full = bare.resolved("docker-compose.yml")
    check_compose(full)
    check_seed_rate(full, "without a .env")
    simple = bare.resolved("docker-compose.simple.yml")
    check_simple(simple, full)
    cache = {("docker-compose.yml",): full, ("docker-compose.simple.yml",): simple}

    def services_of(files):
        if files not in cache:
            cache[files] = bare.resolved(*files)
        return cache[files]
    check_seed_commands(bare, services_of)

    # env.example as .env, as the quick start says, with every port changed:
    # Compose reads that .env at the root and publishes those host ports.
    changed = example
    for var, service, default, port in DOTENV_PORTS:
        edited = changed.replace("\n%s=%d\n" % (var, default), "\n%s=%d\n" % (var, port))
        check(edited != changed, "env.example sets %s=%d" % (var, default))
        changed = edited
    dotenv = Root(changed)
    for f in ("docker-compose.yml", "docker-compose.simple.yml"):
        services = dotenv.resolved(f)
        for var, service, default, port in DOTENV_PORTS:
            # The simple file publishes fewer ports: those it does.
            if f == "docker-compose.yml" or default in [t for _, t in ports_of(services[service])]:
                check((port, default) in ports_of(services[service])
                      and not any(p == default for p, _ in ports_of(services[service])),
                      "%s reads .env: %s=%d there publishes %s on %d" % (f, var, port, service, port),
                      ports_of(services[service]))
        check_seed_rate(services, "%s with env.example as .env" % f)
    # A limit set in .env replaces the default (0 turns it off).
    off = Root(example + "\nRATE_LIMIT_RPS=0\n")
    check(rate_limit(off.resolved("docker-compose.yml"))[0] == 0, "RATE_LIMIT_RPS=0 in .env turns the limit off")


if __name__ == "__main__":
    main(test)

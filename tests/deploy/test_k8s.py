"""deploy.k8s - the Kubernetes manifests in deploy/k8s/ parse and hang together.

Parsed as YAML (python3-yaml; no cluster here): workers are a Deployment
that `kubectl scale` grows, broker and Redis are StatefulSets with a
governing Service, every Service selects pods that exist and targets ports
they declare, every container runs a binary the build produces, every
ConfigMap key is in env.example, kustomization.yaml lists every file.
The broker runs two replicas with BROKER_HA=redis, each announcing its own
stable name, and the peers' BROKER_ENDPOINT lists both.
The gateway and the webhook manager take API_KEYS and ADMIN_API_KEYS from
the Secret botmesh-api-keys, optional (no Secret, no keys: the pods still
start), and the webhook manager and the mock WEBHOOK_SECRET from it, as
Compose passes it to both; the command deploy/README.md gives makes that
Secret with the three keys, its WEBHOOK_SECRET one the manager can use.
With kubectl installed, `kubectl kustomize` renders the set as well.

The optional CURVE overlay (deploy/k8s-curve/) patches workloads of the
base: the broker gets CURVE_SERVER_CERT and CURVE_CLIENTS_DIR, every
ZeroMQ peer (worker, gateway, webhook manager) CURVE_SERVER_KEY and its own
CURVE_CLIENT_CERT, from Secrets mounted readable by the pods' group.  The
shell commands in its kustomization.yaml are run as written (with a
stand-in kubectl that writes each Secret's keys as files), the files laid
out where the patches mount them, and a real broker started with the
broker's patched variables answers botmesh-client run with each peer's,
and not one with a key it was not given.
"""
import base64
import glob
import os
import shutil
import subprocess

import yaml

import deploylib as d
from harness import Stack, check, log, main, tempdir, wait_until

K8S = os.path.join(d.ROOT, "deploy", "k8s")
K8S_CURVE = os.path.join(d.ROOT, "deploy", "k8s-curve")
# The binaries that connect to the broker (CURVE peers).
PEERS = ("botmesh-worker", "botmesh-gateway", "botmesh-webhook")
# kubectl for the overlay's commands: `create secret generic NAME` writes
# each key of the Secret as a file under $SECRETS/NAME (as a secret volume
# shows them); anything else (apply) does nothing.
FAKE_KUBECTL = r"""
kubectl() {
  case "$*" in *"create secret generic "*) ;; *) return 0 ;; esac
  while [ "$1" != generic ]; do shift; done
  local dir="$SECRETS/$2" a p kv; shift 2
  mkdir -p "$dir"
  for a; do
    case $a in
      --from-file=*) p=${a#--from-file=}
                     if [ -d "$p" ]; then cp "$p"/* "$dir"/; else cp "$p" "$dir"/; fi ;;
      --from-literal=*) kv=${a#--from-literal=}; printf %s "${kv#*=}" > "$dir/${kv%%=*}" ;;
      *) echo "kubectl stand-in: unexpected argument $a" >&2; return 1 ;;
    esac
  done
}
set -e
"""


def load():
    docs = []
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        if os.path.basename(path) == "kustomization.yaml":
            continue
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    check(doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"),
                          "%s: a document with apiVersion, kind, metadata.name" % os.path.basename(path), doc)
                    doc["_file"] = os.path.basename(path)
                    docs.append(doc)
    return docs


def by_kind(docs, kind):
    return {x["metadata"]["name"]: x for x in docs if x["kind"] == kind}


def test():
    docs = load()
    check(docs, "deploy/k8s holds manifests")
    deps, sts = by_kind(docs, "Deployment"), by_kind(docs, "StatefulSet")
    svcs, cms = by_kind(docs, "Service"), by_kind(docs, "ConfigMap")

    check("workers" in deps and deps["workers"]["spec"].get("replicas", 1) >= 1,
          "workers are a Deployment (kubectl scale deployment/workers grows it)", sorted(deps))
    for name in ("broker", "redis"):
        check(name in sts, "%s is a StatefulSet" % name, sorted(sts))
        check(sts[name]["spec"].get("serviceName") in svcs,
              "%s's serviceName names a Service" % name, sts[name]["spec"].get("serviceName"))
    for name in ("api-gateway", "webhook-manager", "mock-webhook"):
        check(name in deps, "%s is a Deployment" % name, sorted(deps))

    workloads = dict(deps, **sts)
    env, _ = d.parse_env_example()
    for name, w in workloads.items():
        spec = w["spec"]
        sel = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in sel.items()),
              "%s: the selector matches the pod labels" % name, sel, labels)
        for c in spec["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                check("hostPort" not in p, "%s: no hostPort (replicas can share a node)" % name, p)
            if c["image"].startswith("botmesh"):
                cmd = c.get("command") or []
                check(cmd and cmd[0] in d.BINARIES, "%s runs a botmesh binary (%s)" % (name, cmd[:1]), cmd)
                check(d.binary(cmd[0]), "the build produces %s (in %s)" % (cmd[0], d.BIN))
                refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
                check(all(r in cms for r in refs), "%s: its ConfigMaps exist" % name, refs)
                for e in c.get("env", []):
                    if "fieldRef" in e.get("valueFrom", {}):
                        continue        # the downward API, for other values only
                    check(e["name"] in env, "%s: %s is in env.example" % (name, e["name"]))
        sc = spec["template"]["spec"].get("securityContext", {})
        check(sc.get("runAsNonRoot") is True, "%s runs as non-root" % name, sc)

    # Gateway pods stay in the Service while the brokers or Redis are away
    # (they answer 503 + Retry-After): readiness is /health, not /ready.
    gw = deps["api-gateway"]["spec"]["template"]["spec"]["containers"][0]
    check(gw.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/health",
          "the gateway's readiness probe is /health (a Redis blip keeps its pods serving 503s)",
          gw.get("readinessProbe"))

    # Two brokers with BROKER_HA=redis; peers know both.
    broker = sts["broker"]["spec"]
    check(broker.get("replicas") == 2, "the broker StatefulSet runs two replicas", broker.get("replicas"))
    benv = {e["name"]: e for e in broker["template"]["spec"]["containers"][0].get("env", [])}
    check(benv.get("BROKER_HA", {}).get("value") == "redis", "the brokers run with BROKER_HA=redis", benv.get("BROKER_HA"))
    adv = benv.get("BROKER_ADVERTISE_ENDPOINT", {}).get("value", "")
    check(adv == "tcp://$(POD_NAME).broker:5555"
          and benv.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "each broker announces its own stable name", adv)
    check(svcs["broker"]["spec"].get("publishNotReadyAddresses") is True,
          "the broker Service publishes both pods' names", svcs["broker"]["spec"])
    peers = cms["botmesh-config"]["data"]["BROKER_ENDPOINT"].split(",")
    check(peers == ["tcp://broker-%d.broker:5555" % i for i in range(2)],
          "the peers' BROKER_ENDPOINT lists both brokers", peers)

    for name, s in svcs.items():
        sel = s["spec"].get("selector") or {}
        targets = [w for w in workloads.values()
                   if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        check(sel and targets, "Service %s selects a workload" % name, sel)
        ports = {p.get("name") for w in targets for c in w["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        ports |= {p["containerPort"] for w in targets for c in w["spec"]["template"]["spec"]["containers"]
                  for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            check(p.get("targetPort", p["port"]) in ports,
                  "Service %s port %s targets a declared container port" % (name, p["port"]), ports)
    seed = {"api-gateway": 3000, "webhook-manager": 4000, "mock-webhook": 5000}
    for name, port in seed.items():
        check(any(p["port"] == port for p in svcs[name]["spec"]["ports"]),
              "Service %s listens on the seed's port %d" % (name, port))

    for name, cm in cms.items():
        unknown = sorted(k for k in cm.get("data", {}) if k not in env)
        check(not unknown, "ConfigMap %s: every key is in env.example" % name, unknown)

    kust = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml")))
    files = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    check(set(kust.get("resources", [])) == files, "kustomization.yaml lists every manifest",
          sorted(files ^ set(kust.get("resources", []))))

    check_api_keys(deps)
    check_kustomize(K8S, "all %d objects" % len(docs), len(docs))
    log("%d objects checked" % len(docs))
    check_curve(docs)


def check_api_keys(deps):
    """API_KEYS and ADMIN_API_KEYS reach the gateway and the webhook
    manager, WEBHOOK_SECRET the webhook manager and the mock (the services
    Compose passes it to), from one optional Secret, which deploy/README.md's
    command makes."""
    refs = set()
    compose = yaml.safe_load(open(os.path.join(d.ROOT, "docker-compose.yml")))
    signed = sorted(n for n, s in compose["services"].items()
                    if "WEBHOOK_SECRET" in (s.get("environment") or {}))
    check(signed == ["mock-webhook", "webhook-manager"], "Compose passes WEBHOOK_SECRET to the "
          "webhook manager and the mock", signed)
    wanted = {"api-gateway": ("API_KEYS", "ADMIN_API_KEYS"),
              "webhook-manager": ("API_KEYS", "ADMIN_API_KEYS", "WEBHOOK_SECRET"),
              "mock-webhook": ("WEBHOOK_SECRET",)}
    for name, variables in wanted.items():
        c = deps[name]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        for var in variables:
            ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
            check(ref, "%s: %s comes from a Secret" % (name, var), env.get(var))
            check(ref.get("optional") is True, "%s: %s's Secret is optional (the pods start without it)"
                  % (name, var), ref)
            check(ref["key"] == var, "%s: %s is the Secret's key of that name" % (name, var), ref)
            refs.add(ref["name"])
    check(refs == {"botmesh-api-keys"}, "both read the one Secret botmesh-api-keys", sorted(refs))

    readme = open(os.path.join(d.ROOT, "deploy", "README.md")).read()
    blocks = [b.split("```", 1)[0] for b in readme.split("```bash\n")[1:]]
    made = [b for b in blocks if "create secret generic botmesh-api-keys" in b]
    check(len(made) == 1, "deploy/README.md gives the command that makes botmesh-api-keys", len(made))
    secrets = tempdir("botmesh-k8s-keys-")
    p = subprocess.run(["bash", "-c", FAKE_KUBECTL + made[0]], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, SECRETS=secrets))
    check(p.returncode == 0, "the documented commands run", made[0], p.stderr)
    held = sorted(os.listdir(os.path.join(secrets, "botmesh-api-keys")))
    check(held == ["ADMIN_API_KEYS", "API_KEYS", "WEBHOOK_SECRET"], "the Secret it makes holds the three keys",
          held)
    secret = open(os.path.join(secrets, "botmesh-api-keys", "WEBHOOK_SECRET")).read()
    check(secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) >= 24,
          "its WEBHOOK_SECRET is a whsec_ secret of 24 random bytes or more", secret)
    keys = open(os.path.join(secrets, "botmesh-api-keys", "API_KEYS")).read().split(",")
    admin = open(os.path.join(secrets, "botmesh-api-keys", "ADMIN_API_KEYS")).read().split(",")
    check(set(admin) <= set(keys), "its admin keys are among its API keys", admin, keys)
    log("API keys: from the optional Secret botmesh-api-keys (%d keys, %d admin)" % (len(keys), len(admin)))


def check_kustomize(directory, what, expected):
    """`kubectl kustomize DIRECTORY` renders `expected` objects (where
    kubectl is installed and runs)."""
    if not shutil.which("kubectl"):
        return
    p = subprocess.run(["kubectl", "kustomize", directory], capture_output=True, text=True, timeout=60)
    if p.returncode == 0:
        n = len([x for x in yaml.safe_load_all(p.stdout) if x])
        check(n == expected, "kubectl kustomize renders %s" % what, n)
    else:
        log("kubectl kustomize did not run here (%s): not checked" % p.stderr.strip()[:200])


def overlay_commands(text):
    """The shell commands of kustomization.yaml's comment: each run of
    indented comment lines that follows an empty comment line."""
    out, run, prev = [], False, None
    for line in text.splitlines():
        if line.startswith("#   ") and (run or prev == "#"):
            out.append(line[4:])
            run = True
        else:
            run = False
        prev = line.rstrip()
    return "\n".join(out)


def check_curve(docs):
    base = {(x["kind"], x["metadata"]["name"]): x for x in docs}
    kust_text = open(os.path.join(K8S_CURVE, "kustomization.yaml")).read()
    kust = yaml.safe_load(kust_text)
    check(kust.get("resources") == ["../k8s"], "k8s-curve is an overlay of deploy/k8s", kust.get("resources"))
    files = {os.path.basename(p) for p in glob.glob(os.path.join(K8S_CURVE, "*.yaml"))} - {"kustomization.yaml"}
    listed = {p.get("path") for p in kust.get("patches", [])}
    check(listed == files, "k8s-curve/kustomization.yaml lists every patch", sorted(files ^ listed))
    env_example, _ = d.parse_env_example()
    patched = {}
    for f in sorted(files):
        patch = yaml.safe_load(open(os.path.join(K8S_CURVE, f)))
        key = (patch["kind"], patch["metadata"]["name"])
        check(key in base, "%s patches a workload of the base" % f, key)
        spec, bspec = patch["spec"]["template"]["spec"], base[key]["spec"]["template"]["spec"]
        check(spec.get("securityContext", {}).get("fsGroup") == bspec["securityContext"]["runAsUser"],
              "%s: the pods' group (fsGroup) is their user's, so they read the Secret files" % f)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            bc = [x for x in bspec["containers"] if x["name"] == c["name"]]
            check(bc, "%s: container %s is in the base" % (f, c["name"]))
            for e in c.get("env", []):
                check(e["name"] in env_example, "%s: %s is in env.example" % (f, e["name"]))
            mounts = {m["mountPath"]: volumes.get(m["name"]) for m in c.get("volumeMounts", [])}
            check(all(mounts.values()), "%s: every mount names a volume of the patch" % f, mounts)
            patched[bc[0]["command"][0]] = (f, {e["name"]: e for e in c.get("env", [])}, mounts)
    check(set(patched) == {"botmesh-broker"} | set(PEERS), "the broker and every peer are patched",
          sorted(patched))
    keys = [i["key"] for b in PEERS for v in patched[b][2].values() for i in v["secret"].get("items") or []]
    check(len(keys) == len(PEERS) and len(set(keys)) == len(keys), "each peer mounts its own secret certificate", keys)

    check_kustomize(K8S_CURVE, "the CURVE overlay's %d objects" % len(docs), len(docs))
    if not d.binary("botmesh-broker") or not d.binary("botmesh-client"):
        d.skip("botmesh-broker or botmesh-client not built: the CURVE overlay's keys were not tried")

    with Stack("k8s-curve") as s:
        # The commands as documented, from a root where build/bin is the build's.
        os.makedirs(os.path.join(s.dir, "build"))
        os.symlink(d.BIN, os.path.join(s.dir, "build", "bin"))
        secrets = os.path.join(s.dir, "secrets")
        script = FAKE_KUBECTL + overlay_commands(kust_text)
        p = subprocess.run(["bash", "-c", script], cwd=s.dir, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, SECRETS=secrets))
        check(p.returncode == 0, "the overlay's documented commands run", script, p.stdout, p.stderr)

        def pod(binary):
            """Its patched variables, with the Secret files laid out under
            a root of its own where the patch mounts them."""
            f, env, mounts = patched[binary]
            root = os.path.join(s.dir, "pods", binary)
            for path, v in mounts.items():
                src = os.path.join(secrets, v["secret"]["secretName"])
                check(os.path.isdir(src), "%s: the commands make Secret %s" % (f, v["secret"]["secretName"]))
                os.makedirs(root + path)
                for it in v["secret"].get("items") or [{"key": k, "path": k} for k in os.listdir(src)]:
                    check(os.path.isfile(os.path.join(src, it["key"])),
                          "%s: Secret %s holds %s" % (f, v["secret"]["secretName"], it["key"]))
                    shutil.copy(os.path.join(src, it["key"]), os.path.join(root + path, it["path"]))
            out = {}
            for name, e in env.items():
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    out[name] = open(os.path.join(secrets, ref["name"], ref["key"])).read()
                else:
                    check(any(e["value"].startswith(m) for m in mounts), "%s: %s lies in a mounted Secret"
                          % (f, name), e["value"])
                    out[name] = root + e["value"]
            return out

        broker = s.spawn("broker", [s.bin("botmesh-broker")],
                         dict(pod("botmesh-broker"), BROKER_ENDPOINT="tcp://127.0.0.1:0", REDIS_URL="none",
                              BROKER_METRICS_PORT="0"))
        endpoint = "tcp://127.0.0.1:%d" % broker.listening("zmq")
        wait_until(lambda: "CURVE on" in broker.output(), 10, "the broker to say CURVE is on")

        def ping(env, timeout_ms):
            return subprocess.run([s.bin("botmesh-client"), "--endpoint", endpoint, "--timeout-ms",
                                   str(timeout_ms), "ping"], capture_output=True, text=True, timeout=30,
                                  env=dict(os.environ, **env))
        for binary in PEERS:
            env = pod(binary)
            r = ping(env, 10000)
            check(r.returncode == 0, "the broker answers a peer with %s's keys" % binary, r.stderr)
        subprocess.run([s.bin("botmesh-client"), "keygen", os.path.join(s.dir, "other"), "intruder"],
                       capture_output=True, timeout=10, check=True)
        env = dict(env, CURVE_CLIENT_CERT=os.path.join(s.dir, "other", "intruder.key_secret"))
        r = ping(env, 1000)
        check(r.returncode == 3 and "refused this peer's CURVE key" in r.stderr,
              "and not a peer whose key the Secrets do not hold", r.returncode, r.stderr)


if __name__ == "__main__":
    main(test)

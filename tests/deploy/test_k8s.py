"""deploy.k8s - the Kubernetes manifests in deploy/k8s/ parse and hang together.

Parsed as YAML (python3-yaml; no cluster here): workers are a Deployment
that `kubectl scale` grows, broker and Redis are StatefulSets with a
governing Service, every Service selects pods that exist and targets ports
they declare, every container runs a binary the build produces, every
ConfigMap key is in env.example, kustomization.yaml lists every file.
The broker runs two replicas with BROKER_HA=redis, each announcing its own
stable name, and the peers' BROKER_ENDPOINT lists both.
With kubectl installed, `kubectl kustomize` renders the set as well.
"""
import glob
import os
import shutil
import subprocess

import yaml

import deploylib as d
from harness import check, log, main

K8S = os.path.join(d.ROOT, "deploy", "k8s")


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

    if shutil.which("kubectl"):
        p = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            n = len([x for x in yaml.safe_load_all(p.stdout) if x])
            check(n == len(docs), "kubectl kustomize renders all %d objects" % len(docs), n)
        else:
            log("kubectl kustomize did not run here (%s): not checked" % p.stderr.strip()[:200])
    log("%d objects checked" % len(docs))


if __name__ == "__main__":
    main(test)

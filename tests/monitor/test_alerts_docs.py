"""test_alerts_docs.py - every alert of deploy/alerts.yml has its entry in
TROUBLESHOOTING.md, as README and deploy/README promise.

An entry is a heading "### `NAME`: ..." in the "Alerts" section, with a
Symptom, a Check (what to run first) and a Fix (usual causes); no entry
names an alert that does not exist.
"""
import os
import re

import yaml

import harness
from harness import check, log


def test():
    rules = yaml.safe_load(open(os.path.join(harness.ROOT, "deploy", "alerts.yml")))
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    log("alerts in deploy/alerts.yml", alerts)
    check(len(alerts) >= 10, "deploy/alerts.yml has its alerts", alerts)

    text = open(os.path.join(harness.ROOT, "TROUBLESHOOTING.md")).read()
    section = re.search(r"^## Alerts\b.*?(?=^## )", text, re.M | re.S)
    check(section, "TROUBLESHOOTING.md has an Alerts section")
    entries = {}
    for block in re.split(r"(?=^### )", section.group(0), flags=re.M)[1:]:
        name = re.match(r"### `(\w+)`", block)
        check(name, "each entry's heading names its alert in backquotes", block.splitlines()[0])
        entries[name.group(1)] = block
    missing = [a for a in alerts if a not in entries]
    check(not missing, "every alert has an entry in TROUBLESHOOTING.md", missing)
    unknown = sorted(set(entries) - set(alerts))
    check(not unknown, "every entry names an alert of deploy/alerts.yml", unknown)
    for name, block in sorted(entries.items()):
        parts = [p for p in ("**symptom**", "**check", "fix**") if p not in block.lower()]
        check(not parts, "%s: Symptom, Check and Fix" % name, parts)
    for doc in ("README.md", os.path.join("deploy", "README.md")):
        check("entry per alert" in " ".join(open(os.path.join(harness.ROOT, doc)).read().split()),
              "%s points to the entries" % doc)


if __name__ == "__main__":
    harness.main(test)

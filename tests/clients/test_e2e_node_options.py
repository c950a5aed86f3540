"""The Node client's job options (attempts, backoff, delayMs, runAt) and its
control and schedule calls, end to end: a real redis-server and broker, a
Python worker serving 'pywork' (and no worker for 'pyhold'), the checks in
e2e_node_options.js run by Node against them.
"""
import os
import subprocess

from e2elib import harness, botmesh, need_node, pyworker, wait_worker, RUN_NODE, HERE
from harness import check

SCHEDULE = 0x0E


def main():
    need_node()
    with harness.Stack("clients-node-options") as s:
        s.redis()
        s.broker(env={"MAX_PYWORK_BOTS": "4", "MAX_PYHOLD_BOTS": "1"})
        pyworker(s, "py-opts", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-opts")
        r = subprocess.run(["sh", RUN_NODE, os.path.join(HERE, "e2e_node_options.js"), s.endpoint],
                           capture_output=True, text=True, timeout=150)
        print(r.stdout, r.stderr, flush=True)
        check(r.returncode == 0 and "NODE OPTIONS PASS" in r.stdout, "the Node client's option checks pass",
              r.returncode)
        # What Node did is what the broker holds, seen by another client.
        cmd, body = c.request(SCHEDULE, {"action": "list"})
        check(cmd == botmesh.REPLY and not [x for x in body["schedules"] if x["key"].startswith("node-")],
              "the Python client sees no schedule left behind", body)
        check(c.stats()["types"]["pywork"]["paused"] is False, "pywork is not paused after the Node resume")
        c.close()


if __name__ == "__main__":
    harness.main(main)

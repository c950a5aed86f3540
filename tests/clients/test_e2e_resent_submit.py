"""A SUBMIT sent again to the next broker after no answer makes one job.

    test_e2e_resent_submit.py python|node

A client given several brokers gives each broker a share of a request's
timeout and sends the request again to the next one (clients/README.md).
Real redis-server and broker; the client's endpoint list names that broker
twice (a leader and its standby, as far as the client knows). Redis
pauses writes for 5 s (CLIENT PAUSE WRITE), so the broker answers nothing
meanwhile; a SUBMIT without an idempotency key (request timeout 6 s: 3 s
a broker) goes unanswered for 3 s, is sent again, and is answered when the
pause ends. The broker then holds one job of that payload, not two: the
client gave the job a random key (auto-...) before its first send.
"""
import json
import subprocess
import time

from e2elib import RUN_NODE, ROOT, harness, botmesh, client_side
from harness import check, wait_until

NODE_SUBMIT = """
const bm = require(require('path').join(process.env.BOTMESH_ROOT, 'clients', 'node', 'botmesh.js'));
(async () => {
  const c = new bm.Client({ endpoint: process.argv[1], timeoutMs: 6000 });
  // Ready: the test pauses Redis, then says go (a line on stdin), so that
  // Node's start, however slow, is not counted in the pause.
  console.log(JSON.stringify({ ready: true }));
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const t0 = Date.now();
  const r = await c.submitFull('python', { n: 1 });
  console.log(JSON.stringify({ jobId: r.jobId, s: (Date.now() - t0) / 1000 }));
  c.close();
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
"""


def main():
    side = client_side()
    with harness.Stack("clients-resent-submit-" + side) as s:
        s.redis()
        s.broker()
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_until(lambda: c.ping().get("redis"), 10, "the broker connected to redis")
        twice = "%s,%s" % (s.endpoint, s.endpoint)
        if side == "python":
            check(s.redis_cli("CLIENT", "PAUSE", "5000", "WRITE") == "OK", "redis pauses writes for 5 s")
            t0 = time.monotonic()
            with botmesh.Client(twice, timeout=6) as both:
                jid = both.submit("python", {"n": 1})
            took = time.monotonic() - t0
        else:
            node = subprocess.Popen(["sh", RUN_NODE, "-e", NODE_SUBMIT, twice], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=dict(s.env, BOTMESH_ROOT=ROOT))
            try:
                first = ""
                while not first.startswith("{"):        # run_node.sh may say it installs first
                    first = node.stdout.readline()
                    check(first, "the node client starts", node.stderr.read()[-2000:] if not first else "")
                check(json.loads(first).get("ready"), "the node client is ready", first)
                check(s.redis_cli("CLIENT", "PAUSE", "5000", "WRITE") == "OK", "redis pauses writes for 5 s")
                node.stdin.write("go\n")
                node.stdin.flush()
                rest, err = node.communicate(timeout=60)
            finally:
                if node.poll() is None:
                    node.kill()
                    node.wait()
            got = json.loads(rest.strip().splitlines()[-1])
            check("jobId" in got, "the node client's SUBMIT is answered", got, err[-2000:])
            jid, took = got["jobId"], got["s"]
        check(took >= 3.0, "answered after the first broker's 3 s share ran out (%.1fs): the SUBMIT was sent "
              "again" % took)
        # A SUBMIT after both: the broker writes to Redis in order, so its
        # answer comes after both sends above were handled.
        marker = c.submit("python", {"marker": True}, idempotency_key="marker")
        ids = [j["jobId"] for j in c.list(bot_type="python") if j["jobId"] != marker]
        check(ids == [jid], "one job for the SUBMIT sent twice, the one answered", ids, jid)
        c.close()


if __name__ == "__main__":
    harness.main(main)

"""webhook.docs - the receiver's checks in webhook/README.md work on real
deliveries, and the headers it lists are the ones sent.

The Python and Node snippets under "What is sent" are taken from the
README as written and run against deliveries botmesh-webhook makes to a
receiver written here (it keeps each request's raw bytes and headers).
The body carries non-ASCII text and a "\\/" escape, so a check that
re-serialises the JSON or formats the bytes as text fails.  Each snippet
must accept the delivery and refuse it with one byte changed or with
another secret, for a whsec_ secret and for a raw one.  A manager without
WEBHOOK_SECRET sends webhook-id and webhook-timestamp but no signature.

Runs against a fake broker (tests/lib/fakebroker.py) that hands the
manager its jobs: no Redis, broker or bot workers are needed."""
import base64
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, wait_until
import whlib
from whlib import JOB, DONE, READY, FakeBroker, job

ROOT = harness.ROOT
WHSEC = "whsec_" + base64.b64encode(b"docs-test-key-0123456789abcdef").decode()
RAW_SECRET = "a plain secret, used as its bytes"
# Compact JSON as the broker writes it, with what text-handling gets wrong.
BODY = ('{"jobId":"%s","botType":"python","status":"completed","success":true,'
        '"result":{"name":"Zo\u00eb \u2603","path":"a\\/b"},"attempts":1}')


def snippet(lang):
    """The fenced block of lang under webhook/README.md's "What is sent"."""
    text = open(os.path.join(ROOT, "webhook", "README.md"), encoding="utf-8").read()
    section = re.search(r"^## What is sent$(.*?)^## ", text, re.S | re.M)
    check(section, "webhook/README.md has a section 'What is sent'")
    block = re.search(r"^```%s\n(.*?)^```$" % lang, section.group(1), re.S | re.M)
    check(block, "webhook/README.md shows a %s receiver's check" % lang)
    return block.group(1)


class Receiver(http.server.ThreadingHTTPServer):
    """Answers 200 to every POST and keeps (path, headers, raw body)."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.got.append((self.path, self.headers, raw))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def take(self, path):
        def find():
            with self.lock:
                return next((g for g in self.got if g[0] == path), None)
        return wait_until(find, 15, "the delivery to %s" % path)


def node_verify(source, secret, headers, raw):
    """Run the README's Node snippet (it defines verify) in a fresh node."""
    prog = source + """
let input = '';
process.stdin.on('data', d => input += d).on('end', () => {
  const a = JSON.parse(input);
  process.stdout.write(JSON.stringify(verify(a.secret, a.headers, Buffer.from(a.body, 'base64'))));
});
"""
    # Node's HTTP servers give header names in lower case.
    arg = {"secret": secret, "headers": {k.lower(): v for k, v in headers.items()},
           "body": base64.b64encode(raw).decode()}
    out = subprocess.run(["node", "-e", prog], input=json.dumps(arg), capture_output=True, text=True,
                         timeout=60)
    check(out.returncode == 0, "the Node snippet runs", out.stderr[-2000:])
    return json.loads(out.stdout)


def deliver(broker, mgr, recv, job_id):
    """Have mgr deliver BODY for job_id to the receiver; (headers, raw)."""
    broker.take(lambda m: m.cmd == READY and isinstance(m.body, dict) and m.body.get("pid") == mgr.pid,
                15, "READY from %s" % mgr.name)
    broker.send(JOB, job(job_id + ".wh1", recv.url + "/" + job_id, BODY % job_id))
    _, _, done = broker.expect_cmd(DONE, job_id + ".wh1", timeout=30)
    check(done.get("ok") is True, "%s: delivered" % job_id, done)
    _, headers, raw = recv.take("/" + job_id)
    check(raw == (BODY % job_id).encode(), "%s: the body arrives byte for byte" % job_id, raw)
    check(headers["webhook-id"] == job_id and headers["X-Bot-Job-Id"] == job_id,
          "%s: webhook-id and X-Bot-Job-Id are the job id" % job_id, dict(headers))
    ts = headers["webhook-timestamp"]
    check(ts is not None and ts.isdigit() and abs(int(ts) - time.time()) < 60,
          "%s: webhook-timestamp is now, in seconds" % job_id, dict(headers))
    return headers, raw


def main():
    py_src, node_src = snippet("python"), snippet("js")
    scope = {}
    exec(compile(py_src, "webhook/README.md (python)", "exec"), scope)
    py_verify = scope["verify"]
    have_node = shutil.which("node") is not None
    if not have_node:
        harness.log("node is not installed: the Node snippet is not run")

    with harness.Stack("wh-docs") as s:
        broker = FakeBroker()
        s.endpoint = broker.endpoint
        recv = Receiver()
        try:
            for job_id, secret, other in (("signed", WHSEC, RAW_SECRET), ("rawkey", RAW_SECRET, WHSEC)):
                mgr = whlib.manager(s, {"WEBHOOK_SECRET": secret, "HEARTBEAT_INTERVAL_MS": str(whlib.HB)},
                                    name="webhook-" + job_id)
                headers, raw = deliver(broker, mgr, recv, job_id)
                check(headers["webhook-signature"].startswith("v1,"), "%s: webhook-signature v1,..." % job_id)
                tampered = raw.replace(b"a\\/b", b"a/b")
                check(tampered != raw, "the tampered body differs by a byte")
                check(py_verify(secret, headers, raw) is True,
                      "%s: the README's Python check accepts the delivery" % job_id)
                check(py_verify(secret, headers, tampered) is False,
                      "%s: ... and refuses it with the body changed" % job_id)
                check(py_verify(other, headers, raw) is False,
                      "%s: ... and refuses it under another secret" % job_id)
                if have_node:
                    check(node_verify(node_src, secret, headers, raw) is True,
                          "%s: the README's Node check accepts the delivery" % job_id)
                    check(node_verify(node_src, secret, headers, tampered) is False,
                          "%s: ... and refuses it with the body changed" % job_id)
                    check(node_verify(node_src, other, headers, raw) is False,
                          "%s: ... and refuses it under another secret" % job_id)
                whlib.stop_clean(mgr)

            # No secret: the Standard Webhooks id and timestamp all the same, no signature.
            mgr = whlib.manager(s, {"HEARTBEAT_INTERVAL_MS": str(whlib.HB)}, name="webhook-unsigned")
            headers, raw = deliver(broker, mgr, recv, "unsigned")
            check(headers.get("webhook-signature") is None, "unsigned: no webhook-signature", dict(headers))
            whlib.stop_clean(mgr)
        finally:
            recv.shutdown()
            recv.server_close()
            broker.close()


harness.main(main)

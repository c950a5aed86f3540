"""TLS and the SSRF guard, against a fake broker (whlib.FakeBroker):
an https receiver trusted through WEBHOOK_CA_FILE gets its delivery; one
with an untrusted certificate fails with a TLS error that is retried;
a redirect is a permanent failure and is not followed; host names and
addresses outside the public space are refused before any byte is sent
(a name is checked on the address it resolves to)."""
import http.server
import os
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, wait_until
import whlib
from whlib import DONE, JOB, PROGRESS, READY, FakeBroker, job


class Receiver(http.server.BaseHTTPRequestHandler):
    hits = {}

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        Receiver.hits[self.path] = Receiver.hits.get(self.path, 0) + 1
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def tls_server(directory, name):
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, cert


def main():
    with harness.Stack("wh-tls-ssrf") as s:
        trusted, trusted_cert = tls_server(s.dir, "trusted")
        untrusted, _ = tls_server(s.dir, "untrusted")
        broker = FakeBroker()
        s.endpoint = broker.endpoint
        mgr = whlib.manager(s, {
            # Liveness is not under test here: 10 intervals (2 s), so that a
            # manager whose loop starts late (TSan, a loaded machine) does
            # not take the fake broker for silent, reconnect, and lose the
            # first JOB on the socket it left.
            "HEARTBEAT_INTERVAL_MS": str(whlib.HB), "HEARTBEAT_LIVENESS": "10", "WEBHOOK_ALLOW_PRIVATE": "0",
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_CA_FILE": trusted_cert,
            "WEBHOOK_MAX_RETRIES": "1", "WEBHOOK_RETRY_DELAY": "50", "WEBHOOK_JITTER": "none"}, wait=False)
        broker.expect_cmd(READY, what="READY")

        # https, trusted through WEBHOOK_CA_FILE: delivered.
        port = trusted.server_address[1]
        broker.send(JOB, job("t1.wh1", "https://127.0.0.1:%d/ok" % port, "{}"))
        _, _, done = broker.expect_cmd(DONE, "t1.wh1")
        check(done["ok"] is True and done["webhook"]["lastStatus"] == 200 and Receiver.hits.get("/ok") == 1,
              "https receiver trusted via WEBHOOK_CA_FILE: delivered", done)

        # Untrusted certificate: a TLS error, retried (2 attempts with WEBHOOK_MAX_RETRIES=1).
        broker.send(JOB, job("t2.wh1", "https://127.0.0.1:%d/bad" % untrusted.server_address[1], "{}"))
        _, _, progress = broker.expect_cmd(PROGRESS, "t2.wh1")
        err = progress["webhook"]["lastError"].lower()
        check(progress["webhook"]["state"] == "retrying" and ("ssl" in err or "certificate" in err),
              "untrusted certificate: a TLS error, retried", progress["webhook"])
        _, _, done = broker.expect_cmd(DONE, "t2.wh1")
        check(done["ok"] is False and done["webhook"]["attempts"] == 2 and "gave up after 2" in done["error"]["message"],
              "then failed after 1 + WEBHOOK_MAX_RETRIES attempts", done)
        check("/bad" not in Receiver.hits, "no request body reached the untrusted receiver")

        # A redirect: permanent, not followed.
        broker.send(JOB, job("t3.wh1", "https://127.0.0.1:%d/redirect" % port, "{}"))
        _, _, done = broker.expect_cmd(DONE, "t3.wh1")
        check(done["ok"] is False and done["webhook"]["attempts"] == 1 and done["webhook"]["lastStatus"] == 302
              and "not followed" in done["webhook"]["lastError"] and "/elsewhere" not in Receiver.hits,
              "302: permanent failure, redirect not followed", done)

        # The SSRF guard: names resolving to loopback, and non-public literals.
        refused = {
            "t4.wh1": ("http://localhost:%d/x" % port, "loopback"),      # a name: checked after DNS
            "t5.wh1": ("http://[::1]:%d/x" % port, "loopback"),
            "t6.wh1": ("http://10.255.255.1/x", "private"),
            "t7.wh1": ("http://169.254.169.254/latest/meta-data/", "link-local"),
            "t8.wh1": ("http://0.0.0.0:%d/x" % port, "unspecified"),
            "t9.wh1": ("http://[fd00::1]/x", "unique-local"),
            "t10.wh1": ("http://100.64.1.1/x", "shared"),
        }
        for jid, (url, _) in refused.items():
            broker.send(JOB, job(jid, url, "{}"))
        for jid, (url, cls) in refused.items():
            _, _, done = broker.expect_cmd(DONE, jid, timeout=10)
            wh = done["webhook"]
            check(done["ok"] is False and wh["attempts"] == 1 and "SSRF" in wh["lastError"] and cls in wh["lastError"],
                  "%s refused (%s), permanently" % (url, cls), wh)
        stats = whlib.get_json(mgr.url + "/stats")
        check(stats["refused"] == len(refused), "the manager counts %d refusals" % len(refused), stats)
        whlib.stop_clean(mgr)
        trusted.shutdown()
        untrusted.shutdown()
        broker.close()


harness.main(main)

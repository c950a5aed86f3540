"""The gateway logs every request it refuses, one line each: the status,
the error code, method and path, the client's address, never the body; and
a client hammering bad requests does not flood the log: at most 10 such
lines a second, the rest counted in a "K more refused requests not logged"
line (written when the next second's first refusal comes, or at stop).

Real gateway, real HTTP (curl and keep-alive sockets); no broker is needed
for requests refused before they reach it.
"""
import http.client
import re
import time

import gwtest
import harness
from gwtest import check, curl, log, post_json, wait_until

REFUSED = re.compile(r"^\S+ (INFO|WARN) +gateway (?:job=\S+ )?refused (\d{3}) (\S+) (\S+) (\S+) from (\S+)$",
                     re.M)
SUMMARY = re.compile(r"^\S+ WARN +gateway refused: (\d+) more refused requests not logged", re.M)
SECRET = "s3cr3t-payload-text"


def refused(g):
    return REFUSED.findall(g.output())


def main():
    with harness.Stack("gateway-refused-log") as s:
        g = gwtest.gateway(s, env={"MAX_BODY_BYTES": "4096"})
        url = g.url

        # One line per kind of refusal, naming status, code, method, path, client.
        cases = [
            (post_json(url + "/invoke", '{"botType": "python", "payload": "%s"' % SECRET), 400, "POST",
             "/invoke"),
            (curl("-X", "POST", url + "/invoke", "-H", "Content-Type: text/plain", "-d",
                  SECRET), 415, "POST", "/invoke"),
            (post_json(url + "/invoke", '{"botType": "python", "payload": "%s"}' % ("x" * 8000)), 413,
             "POST", "/invoke"),
            (curl(url + "/no/such/page"), 404, "GET", "/no/such/page"),
            (curl("-X", "DELETE", url + "/stats"), 405, "DELETE", "/stats"),
        ]
        for resp, status, method, path in cases:
            check(resp.status == status, "%s %s answered %d" % (method, path, status), resp)
            code = resp.error_code()

            def logged():
                return [m for m in refused(g) if m[1] == str(status) and m[2] == code
                        and m[3] == method and m[4] == path and m[5] == "127.0.0.1"]
            wait_until(logged, 5, "a log line 'refused %d %s %s %s from 127.0.0.1'" % (
                status, code, method, path))
            log("ok: refused %d %s %s logged with its code %s and the client" % (status, method, path,
                                                                                 code))
        check(SECRET not in g.output(), "no request body in the log")
        levels = {m[0] for m in refused(g)}
        check(levels == {"INFO"}, "4xx refusals log at INFO", levels)

        # A path with a newline (%0A) and quotes stays on one escaped line.
        resp = curl(url + "/x%0Aforged%20line%22")
        check(resp.status == 404, "odd path -> 404", resp)
        wait_until(lambda: any(m[4].startswith("/x%0Aforged%20line%22") for m in refused(g)), 5,
                   "the odd path logged escaped on its line")
        check(not re.search(r"^forged", g.output(), re.M), "no forged log line")

        # A client hammering bad requests: at most 10 lines a second.
        before = len(refused(g))
        sent = 0
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
        for _ in range(1500):
            conn.request("POST", "/invoke", body="not json", headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            check(r.status == 400, "bad request refused", r.status) if sent == 0 else None
            sent += 1
        conn.close()
        elapsed = time.monotonic() - start
        lines = len(refused(g)) - before
        log("%d bad requests in %.2f s -> %d log lines" % (sent, elapsed, lines))
        check(lines <= 10 * (int(elapsed) + 2),
              "at most 10 refusal lines a second under a hammering client", lines, elapsed)

        # The count of the lines left out comes with the next second's refusal.
        probes = []

        def summary():
            probes.append(curl(url + "/nothing-here", show=False).status)
            return SUMMARY.search(g.output())
        m = wait_until(summary, 10, "a 'K more refused requests not logged' line", interval=0.2)
        check(int(m.group(1)) > 0, "the summary counts the requests not logged", m.group(0))

        # At stop, the rest is summed up: every refusal is logged or counted.
        gwtest.stop_clean(g)
        out = g.output()
        logged = len(REFUSED.findall(out))
        counted = sum(int(k) for k in SUMMARY.findall(out))
        log("logged %d, counted %d" % (logged, counted))
        # Refusals: the cases, the odd path, the hammering, the probes for the summary.
        total = len(cases) + 1 + sent + len(probes)
        check(logged + counted == total, "every refusal is logged or counted in a summary",
              logged, counted, total)


if __name__ == "__main__":
    harness.main(main)

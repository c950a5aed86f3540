"""gateway.docs - the HTTP API a user reads is the one the gateway serves.

The gateway's route table (s_routes in gateway/gw_server.c: the method and
path template of every route it answers) against the two tables users read:
README.md's "The HTTP API" and gateway/README.md's "Endpoints".  Every
route is in both, and neither lists a route the gateway does not serve.
Path parameters compare by position ({id} and {jobId} are the same).
"""
import os
import re

import harness as h

ROOT = os.environ.get("BOTMESH_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS")


def norm(path):
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0].rstrip("/"))


def served():
    src = open(os.path.join(ROOT, "gateway", "gw_server.c")).read()
    table = re.search(r"s_routes\s*\[R_COUNT\]\s*=\s*\{(.*?)\n\};", src, re.S)
    h.check(table, "gw_server.c has its s_routes table")
    rows = re.findall(r'\{\s*"(/[^"]*)",\s*"([A-Z]+)"', table.group(1))
    h.check(len(rows) >= 10, "s_routes lists the routes", rows)
    return {(m, norm(p)) for p, m in rows}


def documented(path, heading):
    """(method, path) of the first cells of the table under heading.  A cell
    may list several: `POST /a/{x}/pause`, `/resume` (the same method and
    parent), `GET /b`."""
    text = open(os.path.join(ROOT, path)).read()
    m = re.search(r"^#+ %s.*?$(.*?)(?=^#+ )" % re.escape(heading), text, re.S | re.M)
    h.check(m, "%s has a section '%s'" % (path, heading))
    out = set()
    for line in m.group(1).splitlines():
        if not line.startswith("| `"):
            continue
        method = parent = None
        for tok in re.findall(r"`([^`]*)`", line.split("|")[1]):
            words = tok.split()
            if len(words) == 2 and words[0] in METHODS:
                method, p = words
            elif len(words) == 1 and tok.startswith("/") and method:
                # `/resume` after `POST /queues/{botType}/pause`: a sibling.
                p = parent + tok if tok.count("/") == 1 and parent else tok
            else:
                continue
            if method == "OPTIONS" or p.endswith("/*"):
                continue      # CORS preflight on any path; the dashboard's assets
            parent = norm(p).rsplit("/", 1)[0]
            out.add((method, norm(p)))
    h.check(out, "%s's table lists routes" % path)
    return out


def test():
    routes = served()
    h.log("the gateway serves %d routes" % len(routes))
    for path, heading in (("README.md", "The HTTP API"), ("gateway/README.md", "Endpoints")):
        docs = documented(path, heading)
        missing = sorted("%s %s" % r for r in routes - docs)
        h.check(not missing, "%s lists every route the gateway serves" % path, missing)
        extra = sorted("%s %s" % r for r in docs - routes)
        h.check(not extra, "%s lists no route the gateway does not serve" % path, extra)
    readme = open(os.path.join(ROOT, "README.md")).read()
    h.check("(gateway/README.md)" in readme, "README.md links gateway/README.md, the whole API")


if __name__ == "__main__":
    h.main(test)

"""A per-type variable whose type is one edit from a built-in one is a
misspelling, and stops the broker at start, unless BROKER_NEW_TYPES says
the type is meant.

1. MAX_PYTON_BOTS=4: the broker exits 2 without binding, with an ERROR
   line naming the variable, the one it misspells (MAX_PYTHON_BOTS) and
   BROKER_NEW_TYPES; RETRY_NOD_ATTEMPTS=2 likewise (RETRY_NODE_ATTEMPTS).
2. The same with BROKER_NEW_TYPES=pyton: the broker starts, and STATS
   lists the type pyton with limit 4.
3. A type of its own (MAX_REPORT_BOTS=2) needs no declaration, nor does
   a built-in name with more after it (MAX_PYTHON3_BOTS=3,
   MAX_NODES_BOTS=5: a name made longer on purpose, not misspelt).

Before, the broker only warned "unknown setting MAX_PYTON_BOTS (did you
mean MAX_PYTHON_BOTS?)", started, and made the type pyton with limit 4: a
SUBMIT of botType pyton was accepted and waited for ever (in part 1 the
broker bound its endpoint and ran on)."""
import harness as h


def refused(s, name, env, misspelt, meant, tname):
    p = s.spawn(name, [s.bin("botmesh-broker")],
                dict(env, BROKER_ENDPOINT="tcp://127.0.0.1:%d" % h.free_port(),
                     BROKER_METRICS_PORT="0", REDIS_URL="none"))
    try:
        code = p.p.wait(20)
    except Exception:
        code = None
    out = p.output()
    errors = [l for l in out.splitlines() if " ERROR " in l]
    h.check(code == 2, "%s=%s: the broker exits 2 at start" % (misspelt, env[misspelt]), code, out[-1500:])
    h.check("listening zmq" not in out, "and never binds its endpoint", out[-1500:])
    h.check(len(errors) == 1 and misspelt in errors[0] and "did you mean %s?" % meant in errors[0]
            and "'%s'" % tname in errors[0] and "BROKER_NEW_TYPES" in errors[0],
            "one ERROR line names %s, %s, the type and BROKER_NEW_TYPES" % (misspelt, meant), errors)


def types(s, env):
    broker = s.broker(env=env, redis=False)
    c = s.client()
    try:
        return c.stats()["types"]
    finally:
        c.close()
        h.check(broker.stop() == 0, "the broker stops cleanly", broker.output()[-1500:])


def test():
    with h.Stack("type-typo") as s:
        refused(s, "broker-pyton", {"MAX_PYTON_BOTS": "4"}, "MAX_PYTON_BOTS", "MAX_PYTHON_BOTS", "pyton")
        refused(s, "broker-nod", {"RETRY_NOD_ATTEMPTS": "2"}, "RETRY_NOD_ATTEMPTS",
                "RETRY_NODE_ATTEMPTS", "nod")

        got = types(s, {"MAX_PYTON_BOTS": "4", "BROKER_NEW_TYPES": "report, pyton"})
        h.check("pyton" in got and got["pyton"].get("limit") == 4,
                "BROKER_NEW_TYPES=pyton: the type pyton is made, limit 4", sorted(got))

        s.endpoint = None
        got = types(s, {"MAX_REPORT_BOTS": "2"})
        h.check("report" in got and got["report"].get("limit") == 2,
                "MAX_REPORT_BOTS=2, a type of its own: made without a declaration", sorted(got))

        s.endpoint = None
        got = types(s, {"MAX_PYTHON3_BOTS": "3", "MAX_NODES_BOTS": "5"})
        h.check(got.get("python3", {}).get("limit") == 3 and got.get("nodes", {}).get("limit") == 5,
                "MAX_PYTHON3_BOTS=3, MAX_NODES_BOTS=5 (a built-in name made longer): made "
                "without a declaration", sorted(got))


if __name__ == "__main__":
    h.main(test)

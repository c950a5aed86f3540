"""A per-type variable whose type is one edit from a built-in one is a
misspelling: the broker ignores it, with an ERROR line, and starts, unless
BROKER_NEW_TYPES says the type is meant.

1. MAX_PYTON_BOTS=4: the broker starts (a typo in the settings of a
   restart must not leave the stack without its broker), with one ERROR
   line naming the variable, the one it misspells (MAX_PYTHON_BOTS) and
   BROKER_NEW_TYPES; STATS lists no type pyton, and a SUBMIT of botType
   pyton is REJECTED unknown_bot_type.  RETRY_NOD_ATTEMPTS=2 likewise
   (RETRY_NODE_ATTEMPTS).
2. The same with BROKER_NEW_TYPES=pyton: STATS lists the type pyton with
   limit 4.
   A custom type one letter from a built-in one, nodeb (MAX_NODEB_BOTS=2):
   the ERROR line spells the declaration, BROKER_NEW_TYPES=nodeb (with the
   types BROKER_NEW_TYPES lists already, BROKER_NEW_TYPES=report,nodeb);
   declared, nodeb has limit 2 and a worker offering 5 slots runs 2 of its
   jobs at once, the third queued.
3. A type of its own (MAX_REPORT_BOTS=2) needs no declaration, nor does
   a built-in name with a digit, '-' or '_' after it (MAX_PYTHON3_BOTS=3,
   MAX_NODE_V2_BOTS=5: a name made longer on purpose, not misspelt); a
   doubled letter (MAX_PYTHONN_BOTS) is a misspelling.

Before, the broker made the type pyton with limit 4 (a SUBMIT of botType
pyton was accepted and waited for ever); then for a while it refused to
start, which took a whole stack down on `./botmesh restart`."""
import harness as h
from fakeworker import FakeWorker


def types(s, env, name):
    broker = s.broker(env=env, redis=False, name=name)
    c = s.client()
    try:
        return broker, c, c.stats()["types"]
    finally:
        c.close()


def stop(broker):
    h.check(broker.stop() == 0, "the broker stops cleanly", broker.output()[-1500:])


def ignored(s, env, misspelt, meant, tname, declare=None):
    broker, c, got = types(s, env, "broker-" + tname + ("-declared-other" if declare else ""))
    errors = [l for l in broker.output().splitlines() if " ERROR " in l]
    declare = declare or "BROKER_NEW_TYPES=" + tname
    h.check(len(errors) == 1 and declare + ")" in errors[0],
            "the ERROR line says how to declare %s: %s" % (tname, declare), errors)
    h.check(len(errors) == 1 and misspelt in errors[0] and "ignored" in errors[0]
            and "did you mean %s?" % meant in errors[0]
            and "'%s'" % tname in errors[0] and "BROKER_NEW_TYPES" in errors[0],
            "%s=%s: the broker starts; one ERROR line says it is ignored, naming %s, the type "
            "and BROKER_NEW_TYPES" % (misspelt, env[misspelt], meant), errors)
    h.check(tname not in got, "STATS lists no type %s" % tname, sorted(got))
    c = s.client()
    try:
        r = c.request(h.SUBMIT, {"botType": tname, "payload": {}})
        h.check(r[0] == h.REJECTED and r[1].get("code") == "unknown_bot_type",
                "a SUBMIT of botType %s: REJECTED unknown_bot_type" % tname, r)
    finally:
        c.close()
    stop(broker)


def test():
    with h.Stack("type-typo") as s:
        ignored(s, {"MAX_PYTON_BOTS": "4"}, "MAX_PYTON_BOTS", "MAX_PYTHON_BOTS", "pyton")
        s.endpoint = None
        ignored(s, {"RETRY_NOD_ATTEMPTS": "2"}, "RETRY_NOD_ATTEMPTS", "RETRY_NODE_ATTEMPTS", "nod")
        s.endpoint = None
        ignored(s, {"MAX_PYTHONN_BOTS": "2"}, "MAX_PYTHONN_BOTS", "MAX_PYTHON_BOTS", "pythonn")

        s.endpoint = None
        ignored(s, {"MAX_NODEB_BOTS": "2"}, "MAX_NODEB_BOTS", "MAX_NODE_BOTS", "nodeb")
        s.endpoint = None
        ignored(s, {"MAX_NODEB_BOTS": "2", "BROKER_NEW_TYPES": "report"}, "MAX_NODEB_BOTS",
                "MAX_NODE_BOTS", "nodeb", declare="BROKER_NEW_TYPES=report,nodeb")

        s.endpoint = None
        broker, c, got = types(s, {"MAX_NODEB_BOTS": "2", "BROKER_NEW_TYPES": "nodeb"}, "broker-nodeb")
        h.check(got.get("nodeb", {}).get("limit") == 2,
                "BROKER_NEW_TYPES=nodeb: MAX_NODEB_BOTS=2 is taken, limit 2", sorted(got))
        w = FakeWorker(s.endpoint, "w-nodeb", ["nodeb"], 5)
        s.wait_workers(1, "nodeb")
        c = s.client()
        jobs = [c.submit("nodeb", {"n": i}) for i in range(3)]
        ran = [w.recv_job()["jobId"] for _ in range(2)]
        h.check(sorted(ran) == sorted(jobs[:2]), "the first 2 nodeb jobs run", ran, jobs)
        h.check(c.status(jobs[2])["state"] == "queued" and w.recv(timeout=0.5) is None,
                "the third waits queued: at most 2 nodeb bots at once (the worker has 5 slots)")
        w.done(ran[0], {"ok": 1})
        h.check(w.recv_job()["jobId"] == jobs[2], "the third runs once one of the 2 ended")
        c.close()
        w.close()
        stop(broker)

        s.endpoint = None
        broker, c, got = types(s, {"MAX_PYTON_BOTS": "4", "BROKER_NEW_TYPES": "report, pyton"},
                                 "broker-declared")
        h.check("pyton" in got and got["pyton"].get("limit") == 4,
                "BROKER_NEW_TYPES=pyton: the type pyton is made, limit 4", sorted(got))
        stop(broker)

        s.endpoint = None
        broker, c, got = types(s, {"MAX_REPORT_BOTS": "2"}, "broker-report")
        h.check("report" in got and got["report"].get("limit") == 2,
                "MAX_REPORT_BOTS=2, a type of its own: made without a declaration", sorted(got))
        stop(broker)

        s.endpoint = None
        broker, c, got = types(s, {"MAX_PYTHON3_BOTS": "3", "MAX_NODE_V2_BOTS": "5"}, "broker-longer")
        h.check(got.get("python3", {}).get("limit") == 3 and got.get("node_v2", {}).get("limit") == 5,
                "MAX_PYTHON3_BOTS=3, MAX_NODE_V2_BOTS=5 (a built-in name made longer): made "
                "without a declaration", sorted(got))
        stop(broker)


if __name__ == "__main__":
    h.main(test)

"""Two live Python or Node workers under one name take turns slowly, not in
a loop (docs/protocol.md section 5, "One name, one live worker"; as
tests/broker/test_duplicate_name.py shows for the C worker).

    test_e2e_duplicate_name.py python|node

A real broker (no Redis) and two client-library workers as processes
(tests/clients/pyworker.py or nodeworker.js) with one name for about 5 s:
each, told DISCONNECT replaced, logs one error naming the name and the
process that took it and waits (1 s doubling to 30 s) before it registers
again, so each connects a handful of times, not thousands; the broker logs
one ERROR; jobs submitted meanwhile complete.
"""
import re
import time

from e2elib import harness, botmesh, client_side, side_worker, wait_worker
from harness import check, wait_until


def twin(stack, side, proc_name):
    return side_worker(stack, side, proc_name, "twin", 2)


def main():
    side = client_side()
    with harness.Stack("clients-duplicate-name-" + side) as s:
        broker = s.broker(redis=False)
        bot_type = "pywork" if side == "python" else "nodework"
        c = botmesh.Client(s.endpoint, timeout=5)
        a = twin(s, side, "twin-a")
        wait_worker(c, "twin")
        started = time.monotonic()
        b = twin(s, side, "twin-b")
        states = []
        while time.monotonic() - started < 5:
            jid = c.submit(bot_type, {"sleepMs": 20, "n": len(states)})
            states.append(c.wait(jid, timeout=40)["state"])
        check(states and set(states) == {"completed"},
              "the %d jobs submitted one after the other while the twins flap all complete" % len(states),
              states)
        wait_until(lambda: "Two live processes use the worker name twin" in broker.output(), 30,
                   "the broker's ERROR on the name twin")
        out = broker.output()
        check(len(re.findall("Two live processes use the worker name twin", out)) == 1,
              "the broker logs one ERROR for the streak")
        replacing = [l for l in out.splitlines() if "replaces connection" in l]
        check(len(replacing) < 20, "the broker logged %d replacement lines (< 20)" % len(replacing), replacing)
        said = 0
        for w in (a, b):
            wout = w.output()
            errors = re.findall(r"another worker registered with the same name twin \(pid \d+ at 127\.0\.0\.1\)",
                                wout, re.I)
            check(len(errors) <= 1, "%s logs at most one error naming the name and the other process" % w.name,
                  wout[-3000:])
            said += len(errors)
            check(len(wout) < 64 * 1024, "%s's log stays small (%d bytes)" % (w.name, len(wout)))
        check(said >= 1, "a replaced worker said why")
        if side == "node":
            connects = [len(re.findall(r"nodeworker twin connected", w.output())) for w in (a, b)]
            check(max(connects) < 10, "each Node worker connected a handful of times", connects)
        c.close()


if __name__ == "__main__":
    harness.main(main)

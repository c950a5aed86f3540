"""invalid_bot_type lists the bot types whole when there are too many for
its message: the default bots' types (java, node, python) first, then the
others by name, whole names only, and "... and N more" for the rest, on
every endpoint: POST /invoke and POST /invoke/batch (the broker's refusal,
completed from a STATS reply), POST /schedules and POST /queues/{type}/pause
(the types from a STATS reply); and the broker's own SUBMIT refusal.

Real stack: broker (no Redis), one no-op worker serving 16 custom types,
real gateway and curl.
"""
import re

import gwtest
import harness
from gwtest import check, curl, log, post_json

PREFIX = "botType must be one of: "
BUILTIN = ["java", "node", "python"]
CUSTOM = ["reportbot-team-%02d" % i for i in range(1, 17)]


def check_list(msg, where):
    check(msg.startswith(PREFIX), where + ": the message lists the types", msg)
    names = msg[len(PREFIX):].split(", ")
    more = re.fullmatch(r"\.\.\. and (\d+) more", names[-1])
    check(more is not None, where + ": the list ends '... and N more' (19 types do not fit)", msg)
    names = names[:-1]
    check(names[:3] == BUILTIN, where + ": the default bots' types come first", names)
    others = names[3:]
    check(others and others == sorted(CUSTOM)[:len(others)],
          where + ": then the others by name, each a whole type name", others)
    check(len(names) + int(more.group(1)) == len(BUILTIN) + len(CUSTOM),
          where + ": shown + N more = every type the broker knows", names, more.group(0))
    log("%s: %s" % (where, msg))
    return msg


def main():
    with harness.Stack("gateway-bot-type-list") as s:
        s.broker(redis=False)
        s.worker("--type", ",".join(CUSTOM), "--noop", "--concurrency", "2")
        for t in CUSTOM:
            s.wait_workers(1, bot_type=t)
        # The broker's own refusal, as any client gets it: whole names in
        # the same order, within the 160 bytes a batch item's message has.
        c = s.client()
        cmd, reply = c.request(harness.SUBMIT, {"botType": "reportbot-tema-01", "payload": {}})
        check(cmd == harness.REJECTED and reply.get("code") == "unknown_bot_type",
              "the broker refuses the unknown type", reply)
        check_list(reply.get("message", ""), "the broker")
        check(len(reply["message"]) < 160, "the broker's message fits a batch item's 160 bytes", reply)
        c.close()
        g = gwtest.gateway(s)
        u = g.url

        def message(r, what):
            check(r.status == 400 and r.error_code() == "invalid_bot_type",
                  what + ": 400 invalid_bot_type", r)
            return r.json["error"]["message"]

        lists = {}
        lists["/invoke"] = check_list(
            message(post_json(u + "/invoke", {"botType": "reportbot-tema-01", "payload": {}}), "/invoke"),
            "/invoke")
        r = post_json(u + "/invoke/batch", [{"botType": "reportbot-team-01", "payload": 1},
                                            {"botType": "reportbot-tema-01", "payload": 2}])
        jobs = (r.json or {}).get("jobs") or [{}, {}]
        check(jobs[1].get("error", {}).get("code") == "invalid_bot_type",
              "/invoke/batch: the unknown type's item is refused", r)
        lists["/invoke/batch"] = check_list(jobs[1]["error"]["message"], "/invoke/batch")
        lists["/schedules"] = check_list(message(post_json(u + "/schedules", {
            "key": "k1", "botType": "reportbot-tema-01", "payload": {}, "everyMs": 60000}), "/schedules"),
            "/schedules")
        lists["/queues/.../pause"] = check_list(
            message(curl("-X", "POST", u + "/queues/reportbot-tema-01/pause"), "/queues/.../pause"),
            "/queues/.../pause")
        check(len(set(lists.values())) == 1, "every endpoint gives the same list", lists)
        gwtest.stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

"""invalid_bot_type lists the valid bot types in one order, the default
bots' types (java, node, python) first, then the others by name, whatever
the endpoint: POST /invoke (the broker's refusal), POST
/invoke/batch (per item), POST /schedules, POST /queues/{type}/pause.

Real stack: broker (no Redis), no-op workers serving types whose hash
order differs from their name order, real gateway and curl.
"""
import gwtest
import harness
from gwtest import check, curl, post_json

TYPES = ["zeta", "python", "alpha", "node", "java", "mid-1", "beta_2"]


def listed(resp, what):
    msg = (resp.json or {}).get("error", {}).get("message", "")
    check(resp.status == 400 and resp.error_code() == "invalid_bot_type"
          and msg.startswith("botType must be one of: "), what + ": 400 invalid_bot_type listing the types",
          resp)
    return msg[len("botType must be one of: "):]


def main():
    with harness.Stack("gateway-bot-type-order") as s:
        s.broker(redis=False)
        gwtest.start_workers(s, TYPES, credit=5)
        g = gwtest.gateway(s)
        u = g.url
        builtin = ["java", "node", "python"]
        want = ", ".join(builtin + sorted(t for t in TYPES if t not in builtin))

        lists = {
            "/invoke": listed(post_json(u + "/invoke", {"botType": "cobol", "payload": {}}), "/invoke"),
        }
        r = post_json(u + "/invoke/batch", [{"botType": "python", "payload": 1},
                                            {"botType": "cobol", "payload": 2}])
        body = r.json
        items = body if isinstance(body, list) else (body or {}).get("results") or (body or {}).get("jobs") or []
        bad = [i for i in items if (i.get("error") or {}).get("code") == "invalid_bot_type"]
        check(len(bad) == 1, "/invoke/batch: the unknown type's item is refused", r)
        lists["/invoke/batch"] = bad[0]["error"]["message"][len("botType must be one of: "):]
        lists["/schedules"] = listed(post_json(u + "/schedules", {
            "key": "k1", "botType": "cobol", "payload": {}, "everyMs": 60000}), "/schedules")
        lists["/queues/cobol/pause"] = listed(curl("-X", "POST", u + "/queues/cobol/pause"),
                                              "/queues/cobol/pause")
        for where, got in lists.items():
            check(got == want, "%s lists the default types, then the others by name" % where, got, want)
        gwtest.stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

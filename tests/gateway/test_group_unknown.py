"""A group commit's answer that cannot be split: POST /invoke answers 502
broker_error saying the outcome is unknown, against a scripted fake broker
(a real ROUTER socket).

Concurrent /invoke requests go to the broker as one SUBMIT_MANY (the
link's group commit).  When the broker's ACCEPTED_MANY cannot be split
into one answer per request (here it lists one outcome fewer than the
requests it holds), the requests left without one were sent and may have
been accepted: 502 with a message that says
so and how to find out, never 503 "the broker is not reachable" (which
says the request was not sent, so a retry without idempotencyKey is
safe: here it is not).
"""
import threading
import time

import harness
from harness import ACCEPTED
from gwtest import FakeBroker, check, curl, gateway

SUBMIT, SUBMIT_MANY, ACCEPTED_MANY = 0x01, 0x0A, 0x85


def handler(cmd, body):
    if cmd == SUBMIT:
        time.sleep(0.03)        # a slow broker: the next requests queue up
        return ACCEPTED, {"jobId": "job-%d" % body["req"], "duplicate": False, "position": 1}
    if cmd == SUBMIT_MANY:        # one outcome short: the last request's is missing
        return ACCEPTED_MANY, {"jobs": [{"jobId": "job-%d-%d" % (body["req"], i), "duplicate": False}
                                        for i in range(len(body["jobs"]) - 1)]}
    return None


def main():
    with harness.Stack("gw-group-unknown") as s:
        fb = FakeBroker(handler)
        g = gateway(s, endpoint=fb.endpoint)
        u = g.url + "/invoke"
        answers = []

        def invoke():
            r = curl("-X", "POST", u, "-H", "Content-Type: application/json",
                     "-d", '{"botType":"python","payload":1}', show=False)
            answers.append(r)

        def grouped():
            threads = [threading.Thread(target=invoke) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return any(cmd == SUBMIT_MANY for cmd, _ in fb.seen)
        harness.wait_until(grouped, 30, "the gateway to send concurrent SUBMITs as one SUBMIT_MANY")

        statuses = sorted(set(r.status for r in answers))
        harness.log("statuses answered: %s" % statuses)
        unknown = [r for r in answers if r.status != 202]
        check(unknown, "some requests went in the group whose answer cannot be split")
        for r in unknown:
            message = (r.json or {}).get("error", {}).get("message", "")
            check(r.status == 502 and r.error_code() == "broker_error"
                  and "outcome is unknown" in message and "idempotencyKey" in message,
                  "a request of that group: 502 broker_error, its outcome unknown", r)
        print(unknown[0].body)
        check(g.alive(), "the gateway is alive")
        fb.close()


if __name__ == "__main__":
    harness.main(main)

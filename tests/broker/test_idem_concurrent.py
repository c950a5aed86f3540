"""One idempotencyKey, one job, however many SUBMITs with it arrive at once.

A real redis-server and broker; several DEALER clients send SUBMITs with
the same keys back to back, while Redis holds the broker's writes back
(CLIENT PAUSE ... WRITE), so that every SUBMIT after the first finds the
first job still being confirmed:

1. Same body from every client: one job per key; every other SUBMIT is
   ACCEPTED as a duplicate with that job's id.
2. Another payload per client: one job per key; every other SUBMIT is
   REJECTED idempotency_key_reused naming that job.
3. A SUBMIT_MANY and SUBMITs with the same keys at once: one job per key.
Redis holds exactly one record and one idempotency entry per key.
4. Redis dies while the first job's write is held: the SUBMITs waiting on
   it get its refusal, store_unavailable (none is lost, none hangs).
"""
import harness as h

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85
CLIENTS, KEYS = 5, 12


def collect(clients, count, timeout=20):
    """Every client's answers: {client index: {req: (cmd, reply)}}."""
    out = {}
    for i, c in enumerate(clients):
        got = {}
        while len(got) < count[i]:
            cmd, reply = c.recv(timeout)
            if cmd in (h.RESULT, h.RESULT_MANY):
                continue
            got[reply["req"]] = (cmd, reply)
        out[i] = got
    return out


def pause_writes(s, ms=400):
    h.check(s.redis_cli("CLIENT", "PAUSE", str(ms), "WRITE") == "OK", "redis paused writes")


def test():
    with h.Stack("idem_concurrent") as s:
        redis = s.redis()
        s.broker()
        clients = [s.client() for _ in range(CLIENTS)]
        h.wait_until(lambda: clients[0].request(h.PING)[1]["redis"], 10, "broker connected to redis")
        unfinished = "botmesh:{bm}:unfinished"

        # 1. The same body from every client.
        pause_writes(s)
        for k in range(KEYS):
            for i, c in enumerate(clients):
                c.send(h.SUBMIT, {"req": k, "botType": "python", "payload": {"k": k},
                                  "idempotencyKey": "same-%d" % k})
        out = collect(clients, [KEYS] * CLIENTS)
        for k in range(KEYS):
            answers = [out[i][k] for i in range(CLIENTS)]
            h.check(all(cmd == h.ACCEPTED for cmd, _ in answers), "key same-%d: all accepted" % k,
                    answers)
            ids = {r["jobId"] for _, r in answers}
            firsts = [r for _, r in answers if r["duplicate"] is False]
            h.check(len(ids) == 1 and len(firsts) == 1,
                    "key same-%d: one job, %d duplicates of it" % (k, CLIENTS - 1), answers)
        h.check(int(s.redis_cli("SCARD", unfinished)) == KEYS, "Redis holds %d jobs" % KEYS,
                s.redis_cli("SCARD", unfinished))

        # 2. Another payload from each client.
        pause_writes(s)
        for k in range(KEYS):
            for i, c in enumerate(clients):
                c.send(h.SUBMIT, {"req": 100 + k, "botType": "python", "payload": {"client": i},
                                  "idempotencyKey": "diff-%d" % k})
        out = collect(clients, [KEYS] * CLIENTS)
        for k in range(KEYS):
            answers = [out[i][100 + k] for i in range(CLIENTS)]
            accepted = [r for cmd, r in answers if cmd == h.ACCEPTED]
            rejected = [r for cmd, r in answers if cmd == h.REJECTED]
            h.check(len(accepted) == 1 and accepted[0]["duplicate"] is False
                    and len(rejected) == CLIENTS - 1,
                    "key diff-%d: one job, the others refused" % k, answers)
            h.check(all(r["code"] == "idempotency_key_reused" and accepted[0]["jobId"] in r["message"]
                        for r in rejected), "key diff-%d: refused as idempotency_key_reused, "
                    "naming the job" % k, rejected)
        h.check(int(s.redis_cli("SCARD", unfinished)) == 2 * KEYS, "Redis holds %d jobs" % (2 * KEYS))

        # 3. SUBMIT_MANY and SUBMITs with the same keys at once.
        pause_writes(s)
        items = [{"botType": "python", "payload": {"m": k}, "idempotencyKey": "many-%d" % k}
                 for k in range(KEYS)]
        clients[1].send(h.SUBMIT, {"req": 300, **items[0]})
        clients[0].send(SUBMIT_MANY, {"req": 200, "jobs": items})
        for i, c in enumerate(clients[1:], 1):
            for k in range(KEYS):
                c.send(h.SUBMIT, {"req": 200 + k, **items[k]})
        out = collect(clients, [1, KEYS + 1] + [KEYS] * (CLIENTS - 2))
        cmd, many = out[0][200]
        h.check(cmd == ACCEPTED_MANY and len(many["jobs"]) == KEYS, "SUBMIT_MANY answered", many)
        ids_seen = set()
        for k in range(KEYS):
            answers = [many["jobs"][k]] + [out[i][200 + k][1] for i in range(1, CLIENTS)]
            if k == 0:
                answers.append(out[1][300][1])
            ids = {r.get("jobId") for r in answers}
            firsts = [r for r in answers if r.get("duplicate") is False]
            h.check(None not in ids and len(ids) == 1 and len(firsts) == 1,
                    "key many-%d: one job, the rest duplicates of it" % k, answers)
            ids_seen |= ids
        h.check(int(s.redis_cli("SCARD", unfinished)) == 3 * KEYS, "Redis holds %d jobs" % (3 * KEYS),
                s.redis_cli("SCARD", unfinished))
        h.check(int(s.redis_cli("HLEN", "botmesh:{bm}:idem")) == 3 * KEYS,
                "one idempotency entry per key in Redis", s.redis_cli("HLEN", "botmesh:{bm}:idem"))

        # 4. The first job is refused: so are the SUBMITs waiting on it.
        pause_writes(s, 5000)
        for i, c in enumerate(clients):
            c.send(h.SUBMIT, {"req": 400, "botType": "python", "payload": {"lost": 1},
                              "idempotencyKey": "lost-1"})
        # Every SUBMIT is in the broker (a PING behind each is answered)
        for c in clients:
            c.send(h.PING, {"req": 401})
        out = collect(clients, [1] * CLIENTS)
        h.check(all(list(out[i]) == [401] for i in range(CLIENTS)),
                "the SUBMITs wait while the first job's write is held", out)
        redis.kill()
        h.log("redis killed while the first job's write was held")
        out = collect(clients, [1] * CLIENTS)
        answers = [out[i][400] for i in range(CLIENTS)]
        h.check(all(cmd == h.REJECTED and r["code"] == "store_unavailable" for cmd, r in answers),
                "every SUBMIT with key lost-1 is refused store_unavailable", answers)
        for c in clients:
            c.close()


if __name__ == "__main__":
    h.main(test)

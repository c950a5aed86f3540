"""A subscriber that never reads does not stall the broker (protocol.md,
SUBSCRIBE, EVENT): its events are dropped once its queue is full
(BROKER_PEER_HWM, 10 here), counted in broker_events_dropped_total, and
its subscription's seq still counts them, so that when it reads at last
it sees the gap.  Meanwhile 2000 jobs run to the end on a real worker.

Real redis, broker and worker (simulated bots).
"""
import zmq
import harness as h
from test_events import SUBSCRIBE, EVENT, metric

SUBMIT_MANY = 0x0A
JOBS = 2000


def test():
    with h.Stack("events-slow") as s:
        s.redis()
        s.broker(env={"BROKER_PEER_HWM": "10"})
        s.worker("--simulate", "--type", "python", "--concurrency", "100",
                 env={"SIM_DURATION_MS": "0-1"})
        s.wait_workers(1, "python")
        # The subscriber: a socket with the smallest queue and TCP buffer,
        # which reads its SUBSCRIBE's answer and then nothing.
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 4096)
        sock.connect(s.endpoint)
        sock.send_multipart([h.CLIENT, bytes([SUBSCRIBE]), h.pack({"req": 1})])
        h.check(sock.poll(10000), "SUBSCRIBE answered")
        frames = sock.recv_multipart()
        h.check(frames[1][0] == h.REPLY, "SUBSCRIBE answered REPLY", h.unpack(frames[2]))

        c = s.client()
        for n in range(0, JOBS, 1000):
            cmd, r = c.request(SUBMIT_MANY, {"jobs": [{"botType": "python", "payload": {"n": i}}
                                                      for i in range(n, n + 1000)]}, timeout=30)
            h.check(cmd == 0x85 and all("jobId" in j for j in r["jobs"]), "1000 jobs accepted", cmd)
        h.wait_until(lambda: c.stats()["totals"]["completed"] >= JOBS, 90,
                     "the %d jobs to complete while the subscriber reads nothing" % JOBS, interval=0.2)
        dropped = metric(c, "broker_events_dropped_total")
        h.check(dropped and dropped > 0, "events were dropped for the subscriber", dropped)
        h.log("dropped %d events" % dropped)

        seqs = []
        while sock.poll(500):
            frames = sock.recv_multipart()
            h.check(frames[1][0] == EVENT, "an EVENT", frames[1])
            seqs.append(h.unpack(frames[2])["seq"])
        h.check(seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seqs only grow", seqs[:50])
        h.check(seqs and seqs[-1] > len(seqs), "the seqs show the gap: the last is %s, %d came"
                % (seqs[-1] if seqs else None, len(seqs)), len(seqs))
        sock.close()


if __name__ == "__main__":
    h.main(test)

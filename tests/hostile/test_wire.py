"""Hostile peers on the wire, against a real broker with Redis.

What tests/broker/ already covers is not repeated here (one SUBMIT past
MAX_QUEUE, a silent worker holding one job, DONE twice, wrong protocol
versions, truncated and oversized client frames, rejected frames counted by
reason).  This adds the hostile versions:

1. a client flooding 3,000 SUBMITs at once past a queue bound of 100: the
   broker answers every one (100 ACCEPTED, the rest REJECTED queue_full,
   counted in broker_jobs_rejected_total{reason="queue_full"}), keeps
   answering another client meanwhile, loses none of the 100;
2. a worker that takes 20 jobs and never heartbeats again: all 20 go to a
   good worker (attempt 2), counted in broker_jobs_requeued_total; its late
   DONE is refused and does not overwrite the real result;
3. a worker answering DONE, PROGRESS and RELEASE for a job another live
   worker owns: NACK not_owner each time, the owner's result stands, and the
   refusals are counted in the broker's metrics (reason="not_owner");
4. worker-side garbage (wrong version, unknown command, truncated body,
   declared sizes past the bytes, oversized frame): NACK with the code,
   each counted in broker_frames_rejected_total;
5. a flood of 10,000 malformed frames from one peer while a client's 200
   jobs run: every job completes, every bad frame is counted, and the log
   holds at most 20 lines a second of them."""
import os
import threading
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
import harness as h                 # noqa: E402
from harness import check, log, wait_until  # noqa: E402
from fakeworker import FakeWorker   # noqa: E402

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}
QUEUE = 100
FLOOD = 3000


def metrics(c):
    cmd, r = c.request(h.METRICS)
    check(cmd == h.REPLY, "METRICS answered")
    return r["text"]


def sample(text, name, labels):
    key = "%s{%s}" % (name, labels)
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


def raw_socket(endpoint):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(endpoint)
    return sock


def ping_time(s):
    """Seconds a fresh client waits for PING's answer."""
    c = s.client()
    t = time.monotonic()
    try:
        c.request(h.PING, timeout=10)
    finally:
        c.close()
    return time.monotonic() - t


def submit_flood(s, c):
    before = sample(metrics(c), "broker_jobs_rejected_total", 'reason="queue_full"')
    flooder = raw_socket(s.endpoint)
    for i in range(FLOOD):
        flooder.send_multipart([h.CLIENT, bytes([h.SUBMIT]),
                                h.pack({"req": i, "botType": "flood", "payload": {"i": i}})])
    took = ping_time(s)
    check(took < 2, "another client's PING is answered during the flood (%.2fs)" % took)
    answers = {}
    deadline = time.monotonic() + 60
    while len(answers) < FLOOD and time.monotonic() < deadline:
        if not flooder.poll(1000):
            continue
        frames = flooder.recv_multipart()
        body = h.unpack(frames[2])
        check(body.get("req") not in answers, "one answer per SUBMIT (req %s)" % body.get("req"))
        answers[body.get("req")] = (frames[1][0], body)
    flooder.close()
    check(len(answers) == FLOOD, "every one of the %d SUBMITs was answered (%d)" % (FLOOD, len(answers)))
    accepted = [b["jobId"] for cmd, b in answers.values() if cmd == h.ACCEPTED]
    codes = {}
    for cmd, b in answers.values():
        if cmd == h.REJECTED:
            codes[b["code"]] = codes.get(b["code"], 0) + 1
    check(len(accepted) == QUEUE and codes == {"queue_full": FLOOD - QUEUE},
          "%d ACCEPTED, %d REJECTED queue_full" % (QUEUE, FLOOD - QUEUE), len(accepted), codes)
    after = sample(metrics(c), "broker_jobs_rejected_total", 'reason="queue_full"')
    check(after - before == FLOOD - QUEUE, "broker_jobs_rejected_total{reason=\"queue_full\"} "
          "grew by %d (%g)" % (FLOOD - QUEUE, after - before))
    # None of the accepted is lost: a worker arrives, all complete.
    w = s.worker("--noop", "--type", "flood", "--concurrency", "20", env=HB, name="flood-worker")
    states = [c.wait(j, 30)["state"] for j in accepted]
    check(states.count("completed") == len(accepted), "all %d accepted jobs completed" % len(accepted),
          states)
    check(c.submit("flood", {"after": 1}), "the queue takes jobs again once drained")
    w.stop()


def silent_worker(s, c):
    before = sample(metrics(c), "broker_jobs_requeued_total", 'reason="worker_lost"')
    before_all = sum(float(l.split()[-1]) for l in metrics(c).splitlines()
                     if l.startswith("broker_jobs_requeued_total{"))
    silent = FakeWorker(s.endpoint, "w-silent", ["hostile"], 20)
    jobs = [c.submit("hostile", {"i": i}) for i in range(20)]
    got = []
    while len(got) < 20:
        job = silent.recv_job(5)
        check(job is not None, "the silent worker received its jobs (%d so far)" % len(got))
        got.append(job["jobId"])
    check(sorted(got) == sorted(jobs), "all 20 jobs went to the worker that will go silent")
    # From here on it sends nothing at all.
    t = time.monotonic()
    good = FakeWorker(s.endpoint, "w-good", ["hostile"], 20)
    again = []
    while len(again) < 20:
        job = good.recv_job(10)
        check(job is not None, "the good worker receives the silent one's jobs (%d so far)" % len(again))
        if job["attempt"] != 2:
            check(False, "re-dispatched as attempt 2", job)
        again.append(job["jobId"])
    log("the silent worker's 20 jobs came back after %.1fs" % (time.monotonic() - t))
    for j in again:
        good.done(j, {"by": "w-good"})
    recs = [c.wait(j, 10) for j in jobs]
    bad = [r for r in recs if not (r["state"] == "completed" and r["result"] == {"by": "w-good"}
                                   and r["worker"] == "w-good")]
    check(not bad, "all 20 completed by w-good", bad[:3])
    text = metrics(c)
    after_all = sum(float(l.split()[-1]) for l in text.splitlines()
                    if l.startswith("broker_jobs_requeued_total{"))
    check(after_all - before_all == 20, "broker_jobs_requeued_total grew by 20 (%g; worker_lost: %g)"
          % (after_all - before_all, sample(text, "broker_jobs_requeued_total", 'reason="worker_lost"') - before))
    # The silent worker wakes up and claims a job: refused, result kept.
    silent.done(jobs[0], {"by": "w-silent"})
    msg = silent.recv(3)
    check(msg and msg[0] in (h.DISCONNECT, h.NACK), "its late DONE is refused", msg)
    check(c.status(jobs[0])["result"] == {"by": "w-good"}, "the late DONE did not overwrite the result")
    silent.close()
    good.close()


def not_owner(s, c):
    def nacks():
        text = metrics(c)
        return sum(float(l.split()[-1]) for l in text.splitlines()
                   if 'reason="not_owner"' in l and not l.startswith("#"))
    before = nacks()
    a = FakeWorker(s.endpoint, "w-a", ["owned"], 1)
    b = FakeWorker(s.endpoint, "w-b", ["owned"], 1)
    s.wait_workers(2, "owned")
    j1 = c.submit("owned", {"n": 1})
    j2 = c.submit("owned", {"n": 2})
    ja, jb = a.recv_job(5), b.recv_job(5)
    check(ja and jb, "each worker holds one job")
    victim, thief, owner = ja["jobId"], b, a
    thief.done(victim, {"forged": True})
    msg = thief.recv(3)
    check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner", "DONE for another's job -> NACK not_owner", msg)
    thief.send(h.PROGRESS, {"jobId": victim, "progress": 99})
    msg = thief.recv(3)
    check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner", "PROGRESS for another's job -> NACK not_owner", msg)
    thief.send(h.RELEASE, {"jobId": victim})
    msg = thief.recv(3)
    check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner", "RELEASE of another's job -> NACK not_owner", msg)
    rec = c.status(victim)
    check(rec["state"] == "running" and rec["worker"] == "w-a" and rec.get("progress", 0) != 99,
          "the job is still w-a's, running, progress untouched", rec)
    owner.done(victim, {"real": True})
    rec = c.wait(victim, 10)
    check(rec["state"] == "completed" and rec["result"] == {"real": True}, "the owner's DONE stands", rec)
    thief.done(jb["jobId"], {"mine": True})
    check(c.wait(jb["jobId"], 10)["result"] == {"mine": True}, "w-b completes its own job")
    check({j1, j2} == {victim, jb["jobId"]}, "both jobs accounted for")
    a.close()
    b.close()
    counted = nacks() - before
    check(counted >= 3, "the 3 not_owner refusals are counted in the broker's metrics "
          "(a series with reason=\"not_owner\"; counted %g)" % counted)


def worker_garbage(s, c):
    def frames_rejected():
        text = metrics(c)
        return {r: sample(text, "broker_frames_rejected_total", 'reason="%s"' % r)
                for r in ("bad_header", "bad_command", "bad_frame")}
    before = frames_rejected()
    w = FakeWorker(s.endpoint, "w-garbage", ["garbage"], 1)
    s.wait_workers(1, "garbage")
    cases = [
        ("wrong worker version", [b"BMW02", bytes([h.HEARTBEAT]), h.pack({})], "bad_header"),
        ("unknown worker command", [h.WORKER, b"\x7e", h.pack({})], "bad_command"),
        ("empty command frame", [h.WORKER, b"", h.pack({})], "bad_command"),
        ("truncated DONE", [h.WORKER, bytes([h.DONE]), h.pack({"jobId": "x", "ok": True})[:-4]], "bad_frame"),
        ("DONE declaring a 2 GB string", [h.WORKER, bytes([h.DONE]), b"\x81\xa6result\xdb\x7f\xff\xff\xff"],
         "bad_frame"),
        ("DONE frame past MAX_FRAME_BYTES", [h.WORKER, bytes([h.DONE]),
                                             b"\x81\xa6result\xc6" + (70000).to_bytes(4, "big") + b"\0" * 70000],
         "bad_frame"),
        ("READY body an array", [h.WORKER, bytes([h.READY]), h.pack(["python"])], "bad_frame"),
        ("deep nesting", [h.WORKER, bytes([h.PROGRESS]), b"\x81\xa1x" + b"\x91" * 40 + b"\x01"], "bad_frame"),
    ]
    expect = dict((k, 0) for k in before)
    for what, frames, code in cases:
        w.sock.send_multipart(frames)
        msg = w.recv(3)
        check(msg and msg[0] == h.NACK and msg[1]["code"] == code, "%s -> NACK %s" % (what, code), msg)
        expect[code] += 1
    after = frames_rejected()
    check(all(after[r] - before[r] == expect[r] for r in expect),
          "each is counted in broker_frames_rejected_total by reason", before, after, expect)
    w.close()


def garbage_flood(s, c):
    n_bad = 10000
    before = sum(float(l.split()[-1]) for l in metrics(c).splitlines()
                 if l.startswith("broker_frames_rejected_total{"))
    w = s.worker("--noop", "--type", "steady", "--concurrency", "10", env=HB, name="steady-worker")
    s.wait_workers(1, "steady")
    junk = raw_socket(s.endpoint)
    stop = threading.Event()
    broker = next(p for p in s.procs if p.name == "broker")
    log_mark = len(broker.output())
    flood_began = time.monotonic()

    def flood():
        for i in range(n_bad):
            junk.send_multipart([h.CLIENT, b"\x01", b"\xc1" + i.to_bytes(4, "big")])
        stop.set()
    t = threading.Thread(target=flood)
    t.start()
    jobs = [c.submit("steady", {"i": i}) for i in range(200)]
    t.join()
    states = [c.wait(j, 30)["state"] for j in jobs]
    check(states.count("completed") == len(jobs), "all 200 jobs completed while %d malformed "
          "frames arrived" % n_bad, states)
    # Every bad frame gets its REJECTED; read them so the count is final.
    got = 0
    while got < n_bad and junk.poll(5000):
        junk.recv_multipart()
        got += 1
    junk.close()
    check(got == n_bad, "each malformed frame was answered (%d)" % got)
    after = sum(float(l.split()[-1]) for l in metrics(c).splitlines()
                if l.startswith("broker_frames_rejected_total{"))
    check(after - before == n_bad, "broker_frames_rejected_total grew by %d (%g)" % (n_bad, after - before))
    # The log is not flooded: at most 20 refusal lines a second, and the
    # rest summed up in one line a second.
    seconds = time.monotonic() - flood_began
    wait_until(lambda: "more rejected messages not logged" in broker.output()[log_mark:], 5,
               "the line counting the refusals not logged")
    lines = [l for l in broker.output()[log_mark:].splitlines() if " rejected a frame from " in l]
    check(0 < len(lines) <= 20 * (seconds + 2), "%d refusal lines for %d bad frames in %.1f s "
          "(at most 20 a second)" % (len(lines), n_bad, seconds))
    w.stop()


def main():
    with h.Stack("hostile-wire") as s:
        s.redis()
        broker = s.broker(env=dict(HB, MAX_QUEUE_FLOOD=str(QUEUE), MAX_FLOOD_BOTS="20",
                                   MAX_HOSTILE_BOTS="20", MAX_OWNED_BOTS="2", MAX_GARBAGE_BOTS="1",
                                   MAX_STEADY_BOTS="10", MAX_FRAME_BYTES="65536"))
        c = s.client()
        failures = []
        for step in (submit_flood, silent_worker, not_owner, worker_garbage, garbage_flood):
            log("---- %s" % step.__name__)
            try:
                step(s, c)
            except h.TestFailure as e:
                # Go on with the other steps: each finding is independent.
                print(e, flush=True)
                failures.append(step.__name__)
            check(broker.alive(), "the broker is up after %s" % step.__name__)
        cmd, _ = c.request(h.PING)
        check(cmd == h.REPLY, "the broker answers PING at the end")
        c.close()
        check(not failures, "every hostile-peer step passed", failures)


if __name__ == "__main__":
    h.main(main)

"""BMW01 conformance of botmesh-worker against a fake broker (a ROUTER in
this test), transcript style: what the worker must send for what it gets.

Scenarios: READY and heartbeats; JOB -> PROGRESS + DONE with the bot's
result; credit exceeded -> RELEASE; unknown bot type -> DONE spawn_failed;
CANCEL -> DONE cancelled (and the NACK not_owner that follows is ignored);
CANCEL for a run just completed -> a log line saying its result was discarded;
local timeout; a JOB dispatched again while it runs; hostile frames;
DISCONNECT and silence -> a new socket and READY (whole credit, running:
the jobs still running), the running bot's DONE on the new socket; a broker that
comes up late meets one socket only (no second worker from a replaced
socket's queued READY); SIGTERM with and
without enough grace (DONE or RELEASE, then DISCONNECT, exit 0).
"""
import os
import signal
import time

import harness
from harness import check, log
from wlib import (READY, JOB, PROGRESS, DONE, HEARTBEAT, DISCONNECT, WCANCEL, RELEASE, NACK,
                  FakeBroker, job, worker_env, start_worker, wait_exit, children, alive, wait_until)


def scenario_basic(s):
    fb = FakeBroker()
    w = start_worker(s, fb.endpoint, "--type", "python", "--concurrency", "2", "--name", "w-basic",
                     env=worker_env())
    ident, ready = fb.ready()
    check(ready.get("name") == "w-basic" and ready.get("types") == ["python"]
          and ready.get("credit") == 2 and ready.get("pid") == w.pid,
          "READY {name, types, credit, pid}", ready)

    # Heartbeats while idle: about one per interval (100 ms).
    msgs = fb.idle(0.6)
    beats = [m for m in msgs if m[2] == HEARTBEAT]
    check(3 <= len(beats) <= 12, "worker heartbeats while idle (%d in 0.6 s)" % len(beats))
    check(all(m[3] == {} for m in beats), "HEARTBEAT body is an empty map")

    payload = {"task": "data_analysis", "dataset": "sales_2024", "size": 500, "sleepMs": 300}
    fb.send(ident, JOB, job("job-1", payload=payload, attempt=2))
    progress = []
    while True:
        _, cmd, body = fb.recv(10, want=(PROGRESS, DONE))
        if cmd == PROGRESS:
            check(body.get("jobId") == "job-1", "PROGRESS names the job", body)
            progress.append(body["progress"])
            continue
        done = body
        break
    log("progress seen:", progress)
    check(len(progress) >= 2 and progress == sorted(progress) and all(0 <= p <= 100 for p in progress),
          "PROGRESS values rise within 0..100", progress)
    check(done.get("jobId") == "job-1" and done.get("ok") is True, "DONE ok", done)
    result = done["result"]
    check(result["stats"]["count"] == 500 and result["dataset"] == "sales_2024",
          "the result is the bot's JSON (statistics of the dataset)", result)
    check(result["attempt"] == 2 and result["jobId"] == "job-1",
          "the bot saw BOT_ATTEMPT and BOT_JOB_ID", result)
    check(isinstance(done.get("startedAt"), int) and done["startedAt"] <= result["startedAt"]
          <= result["finishedAt"] <= done["finishedAt"],
          "DONE startedAt/finishedAt frame the bot's own times", done, result)

    # Same dataset, same numbers (deterministic generation).
    fb.send(ident, JOB, job("job-2", payload=dict(payload, sleepMs=0)))
    _, _, done2 = fb.recv(10, want=DONE)
    check(done2["result"]["stats"] == result["stats"], "same dataset name, same statistics")

    # Credit: a third job while two run is handed back at once.
    fb.send(ident, JOB, job("slow-1", payload={"sleepMs": 1500}))
    fb.send(ident, JOB, job("slow-2", payload={"sleepMs": 1500}))
    fb.send(ident, JOB, job("extra", payload={}))
    _, cmd, body = fb.recv(2, want=(RELEASE, DONE))
    check(cmd == RELEASE and body == {"jobId": "extra"}, "a JOB past the credit gets RELEASE", cmd, body)

    # The same job dispatched again while it runs: no second bot, one DONE.
    fb.send(ident, JOB, job("slow-1", payload={"sleepMs": 1500}, attempt=2))
    done_ids = []
    for _ in range(2):
        _, _, body = fb.recv(10, want=DONE)
        done_ids.append(body["jobId"])
    check(sorted(done_ids) == ["slow-1", "slow-2"], "both slow jobs done once each", done_ids)
    later = fb.idle(0.3)
    check(not [m for m in later if m[2] == DONE], "no second DONE for the job dispatched twice")

    # Unknown bot type: DONE spawn_failed right away.
    fb.send(ident, JOB, job("j-unknown", bot_type="cobol"))
    _, _, body = fb.recv(5, want=DONE)
    check(body["jobId"] == "j-unknown" and body["ok"] is False
          and body["error"]["code"] == "spawn_failed", "unknown bot type -> DONE spawn_failed", body)

    # CANCEL: the bot is killed, DONE cancelled; the NACK that follows is ignored.
    fb.send(ident, JOB, job("j-cancel", payload={"sleepMs": 20000}))
    pid = wait_until(lambda: children(w.pid), 5, "the bot to start")[0]
    t0 = time.monotonic()
    fb.send(ident, WCANCEL, {"jobId": "j-cancel", "reason": "cancelled"})
    _, _, body = fb.recv(5, want=DONE)
    check(body["jobId"] == "j-cancel" and body["ok"] is False and body["error"]["code"] == "cancelled",
          "CANCEL -> DONE with error cancelled (%.2f s)" % (time.monotonic() - t0), body)
    check(not alive(pid), "the cancelled bot is gone", pid)
    fb.send(ident, NACK, {"code": "not_owner", "message": "job j-cancel is not yours"})
    fb.send(ident, WCANCEL, {"jobId": "no-such-job", "reason": "cancelled"})

    # Local timeout (timeoutMs 400 on a bot sleeping 20 s).
    t0 = time.monotonic()
    fb.send(ident, JOB, job("j-timeout", payload={"sleepMs": 20000}, timeout_ms=400))
    _, _, body = fb.recv(5, want=DONE)
    took = time.monotonic() - t0
    check(body["error"]["code"] == "timeout" and 0.35 < took < 3.0,
          "the worker enforces timeoutMs itself (DONE timeout after %.2f s)" % took, body)

    # The JOB's deadline is the broker's wall clock: a broker whose clock is an
    # hour ahead or behind changes nothing; timeoutMs counts on the worker's
    # own monotonic clock from the JOB's arrival.
    fb.send(ident, JOB, job("j-skew-behind", payload={}, timeout_ms=30000,
                            deadline=int(time.time() * 1000) - 3600 * 1000))
    _, _, body = fb.recv(10, want=DONE)
    check(body["ok"] is True, "a deadline an hour in the past (clock skew) does not time the job out", body)
    t0 = time.monotonic()
    fb.send(ident, JOB, job("j-skew-ahead", payload={"sleepMs": 20000}, timeout_ms=400,
                            deadline=int(time.time() * 1000) + 3600 * 1000))
    _, _, body = fb.recv(5, want=DONE)
    took = time.monotonic() - t0
    check(body["error"]["code"] == "timeout" and 0.35 < took < 3.0,
          "a deadline an hour ahead does not extend timeoutMs (timeout after %.2f s)" % took, body)

    # The worker is still fine, and answers a new job.
    fb.send(ident, JOB, job("j-after", payload={"size": 3}))
    _, _, body = fb.recv(10, want=DONE)
    check(body["ok"] is True and body["result"]["stats"]["count"] == 3, "next job runs fine", body)

    # CANCEL for the run we just completed (the broker had taken the worker
    # for lost and given the job to another): the log says the result was
    # discarded, instead of leaving "completed" as the last word.
    fb.send(ident, WCANCEL, {"jobId": "j-after", "reason": "finished"})
    wait_until(lambda: "result discarded" in w.output(), 5,
               "the worker to log that its result was discarded")
    line = [l for l in w.output().splitlines() if "result discarded" in l][0]
    check("job=j-after" in line and "another worker" in line and "WARN" in line,
          "one WARN line names the job and says another worker had it", line)
    later = fb.idle(0.3)
    check(not [m for m in later if m[2] in (DONE, RELEASE)], "nothing is sent for that CANCEL", later)
    # The discarded result is gone: a later JOB for the job (its retry) runs
    # the bot again instead of being answered with it.
    fb.send(ident, JOB, job("j-after", payload={"size": 4}, attempt=2))
    _, _, body = fb.recv(10, want=DONE)
    check(body["ok"] is True and body["attempt"] == 2 and body["result"]["stats"]["count"] == 4,
          "the retry runs the bot again: its own result, not the discarded one", body)
    check(w.alive(), "worker alive")
    fb.close()
    w.stop()


def scenario_hostile_frames(s):
    fb = FakeBroker()
    w = start_worker(s, fb.endpoint, "--type", "python", "--concurrency", "1", env=worker_env())
    ident, _ = fb.ready()
    W = harness.WORKER
    DEEP = 1
    for _ in range(40):
        DEEP = [DEEP]
    bad = [
        [b"XXXXX", bytes([JOB]), harness.pack({"jobId": "x"})],                  # wrong header
        [harness.CLIENT, bytes([JOB]), harness.pack({"jobId": "x"})],            # client header
        [W, bytes([JOB])],                                                      # 2 frames
        [W, bytes([JOB]), b"", b""],                                            # 4 frames
        [W, b"\x02\x02", harness.pack({})],                                     # 2-byte command
        [W, bytes([0x7f]), harness.pack({})],                                   # unknown command
        [W, bytes([JOB]), b"\xdd\xff\xff\xff\xff"],                             # array of 4G items
        [W, bytes([JOB]), b"\xdb\x7f\xff\xff\xff" + b"a" * 10],                  # str of 2 GB declared
        [W, bytes([JOB]), harness.pack([1, 2, 3])],                             # body not a map
        [W, bytes([JOB]), harness.pack({"jobId": 42, "botType": "python"})],    # jobId not a string
        [W, bytes([JOB]), harness.pack({"jobId": "has space", "botType": "python"})],
        [W, bytes([JOB]), harness.pack({"botType": "python"})],                 # no jobId
        [W, bytes([JOB]), harness.pack({"jobId": "j-deep", "botType": "python",
                                        "payload": DEEP})],      # nested too deeply
        [W, bytes([WCANCEL]), harness.pack({})],                                # CANCEL without jobId
        [W, bytes([NACK]), harness.pack({"code": 1})],
    ]
    for frames in bad:
        fb.send_raw(ident, frames)
    fb.send(ident, JOB, job("j-ok", payload={"size": 2}))
    _, _, body = fb.recv(10, want=DONE)
    check(body["ok"] is True and w.alive(), "after %d hostile frames the worker runs jobs" % len(bad), body)
    check("bad message from the broker" in w.output(), "hostile frames are logged")
    w.signal(signal.SIGINT)
    _, _, body = fb.recv(5, want=READY)
    check(body["credit"] == 0, "SIGINT -> READY credit 0, like SIGTERM", body)
    fb.recv(5, want=DISCONNECT)
    check(wait_exit(w, 5) == 0, "SIGINT: DISCONNECT, exit 0")
    fb.close()


def scenario_reconnect(s):
    fb = FakeBroker()
    w = start_worker(s, fb.endpoint, "--type", "python", "--concurrency", "3", env=worker_env())
    ident, ready = fb.ready()
    check(ready["credit"] == 3, "credit 3", ready)

    # DISCONNECT from the broker: a new socket (identity), READY again.
    fb.send(ident, DISCONNECT, {"reason": "unknown worker"})
    ident2, ready2 = fb.ready(5)
    check(ident2 != ident and ready2["credit"] == 3,
          "after DISCONNECT: READY again on a new socket", ident, ident2, ready2)

    # A job runs; then the broker goes silent: the worker reconnects while
    # the bot carries on, announces its whole credit and the running job
    # (READY running: the broker counts it), and sends the DONE on the new
    # socket.
    fb.send(ident2, JOB, job("j-long", payload={"sleepMs": 1500, "size": 10}))
    wait_until(lambda: children(w.pid), 5, "the bot to start")
    fb.quiet = True
    t0 = time.monotonic()
    ident3, ready3 = fb.ready(5)
    took = time.monotonic() - t0
    check(ident3 != ident2 and 0.2 < took < 5.0,
          "silence for HEARTBEAT_LIVENESS intervals -> new socket and READY (%.2f s)" % took)
    check(ready3["credit"] == 3 and ready3.get("running") == ["j-long"],
          "the new READY lists the job still running, credit whole", ready3)
    fb.quiet = False
    fb.peers = {ident3}              # heartbeats for the new socket only
    got, _, body = fb.recv(10, want=DONE)
    check(got == ident3 and body["jobId"] == "j-long" and body["ok"] is True,
          "the running bot's DONE comes on the new socket", body)
    fb.close()
    w.stop()


def scenario_late_broker(s):
    # The broker is away when the worker starts: the worker reconnects every
    # few heartbeats, each time on a new socket.  When the broker comes up,
    # only the current socket may reach it: a replaced socket that still
    # held its queued READY would register a second worker (same process,
    # other identity) that the broker feeds jobs nobody reads.
    endpoint = "ipc://%s/late-broker" % s.dir      # ours alone: nobody takes it meanwhile
    w = start_worker(s, endpoint, "--type", "python", "--concurrency", "2", "--noop",
                     env={"HEARTBEAT_INTERVAL_MS": "100", "HEARTBEAT_LIVENESS": "2"})
    wait_until(lambda: w.output().count("no word from the broker") >= 2, 10,
               "the worker to replace its socket twice while no broker listens")
    replaced_before = w.output().count("no word from the broker")
    fb = FakeBroker(endpoint=endpoint)
    fb.idle(1.5)
    # A socket the worker replaces after the broker came up (it may: its
    # silence timer can run out before the first HEARTBEAT reaches it, on a
    # loaded machine) brings its own READY; a socket replaced before it
    # came up must bring none.
    replaced_after = w.output().count("no word from the broker") - replaced_before
    readys = {ident for _, ident, command, _ in fb.log if command == READY}
    check(1 <= len(readys) <= 1 + replaced_after,
          "one READY identity once the broker is up, plus one per socket replaced since "
          "(%d replaced)" % replaced_after, [i.hex() for i in readys])
    fb.close()
    w.stop()


def scenario_sigterm(s):
    # Enough grace: READY credit 0, the job finishes (DONE), DISCONNECT, exit 0.
    fb = FakeBroker()
    w = start_worker(s, fb.endpoint, "--type", "python", "--concurrency", "2", "--grace-ms", "5000",
                     env=worker_env())
    ident, _ = fb.ready()
    fb.send(ident, JOB, job("j-finish", payload={"sleepMs": 700, "size": 5}))
    wait_until(lambda: children(w.pid), 5, "the bot to start")
    w.signal(signal.SIGTERM)
    _, cmd, body = fb.recv(5, want=READY)
    check(body["credit"] == 0, "SIGTERM -> READY credit 0", body)
    fb.send(ident, JOB, job("j-toolate", payload={}))
    seen = []
    while True:
        _, cmd, body = fb.recv(5, want=(DONE, RELEASE, DISCONNECT))
        seen.append((cmd, body.get("jobId")))
        if cmd == DISCONNECT:
            break
    check((RELEASE, "j-toolate") in seen, "a JOB arriving while stopping gets RELEASE", seen)
    check((DONE, "j-finish") in seen and seen[-1][0] == DISCONNECT,
          "the running job finishes within grace (DONE), then DISCONNECT", seen)
    check(wait_exit(w, 5) == 0, "the worker exits 0")
    fb.close()

    # Not enough grace: the bot (which ignores nothing) is stopped at the end
    # of the grace period and handed back with RELEASE.
    fb = FakeBroker()
    w = start_worker(s, fb.endpoint, "--type", "python", "--concurrency", "2", "--grace-ms", "2000",
                     env=worker_env())
    ident, _ = fb.ready()
    fb.send(ident, JOB, job("j-long", payload={"sleepMs": 30000}))
    fb.send(ident, JOB, job("j-short", payload={"sleepMs": 100, "size": 5}))
    bots = wait_until(lambda: len(children(w.pid)) == 2 and children(w.pid), 5, "the bots to start")
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    seen = []
    while True:
        _, cmd, body = fb.recv(5, want=(DONE, RELEASE, DISCONNECT, READY))
        seen.append((cmd, body.get("jobId") or body.get("credit")))
        if cmd == DISCONNECT:
            break
    took = time.monotonic() - t0
    log("seen:", seen)
    check((DONE, "j-short") in seen and (RELEASE, "j-long") in seen and seen[-1][0] == DISCONNECT,
          "short job DONE, long job RELEASE after the grace period, then DISCONNECT (%.2f s)" % took,
          seen)
    check(not [x for x in seen if x == (DONE, "j-long")], "no DONE for the released job")
    check(wait_exit(w, 5) == 0, "the worker exits 0")
    check(not any(alive(p) for p in bots), "no bot left running", bots)
    fb.close()

    # A second signal ends a long grace period at once.
    fb = FakeBroker()
    w = start_worker(s, fb.endpoint, "--type", "python", "--concurrency", "1", "--grace-ms", "60000",
                     env=worker_env())
    ident, _ = fb.ready()
    fb.send(ident, JOB, job("j-stuck", payload={"sleepMs": 30000}))
    wait_until(lambda: children(w.pid), 5, "the bot to start")
    w.signal(signal.SIGTERM)
    fb.recv(5, want=READY)
    fb.idle(0.3)
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    _, cmd, body = fb.recv(5, want=(RELEASE, DONE))
    check(cmd == RELEASE and body["jobId"] == "j-stuck",
          "a second SIGTERM hands the job back at once (%.2f s)" % (time.monotonic() - t0), cmd, body)
    fb.recv(5, want=DISCONNECT)
    check(wait_exit(w, 5) == 0, "and the worker exits 0")
    fb.close()


def main():
    with harness.Stack("worker-protocol") as s:
        for scenario in (scenario_basic, scenario_hostile_frames, scenario_reconnect, scenario_late_broker,
                         scenario_sigterm):
            log("=== %s" % scenario.__name__)
            scenario(s)


if __name__ == "__main__":
    harness.main(main)

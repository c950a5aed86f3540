#!/usr/bin/python3
"""bench_webhook.py - benchmark of botmesh-webhook alone (not a test).

Feeds one manager deliveries straight from a fake broker (a ZeroMQ ROUTER
speaking BMW01, as in tests/webhook/test_conformance.py), so that neither
the broker nor the workers limit what is measured.

    throughput  N deliveries to botmesh-mock answering 200 at once:
                deliveries/s from the first JOB to the last DONE.
    waiting     N deliveries whose first attempt fails (mock failFirst=1)
                with a 10-minute retry delay, so all N wait in the heap:
                the manager's RSS before and after, per delivery.

usage: bench_webhook.py [--bin DIR] [--jobs N] [--waiting N] [--inflight N] [--body BYTES]
Run with /usr/bin/python3; binaries from --bin or $BOTMESH_BIN."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "webhook"))
import harness
import whlib
import zmq
from harness import free_port, pack, unpack, wait_until

W = b"BMW01"
READY, JOB, PROGRESS, DONE, HEARTBEAT = 1, 2, 3, 4, 5


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Feeder:
    def __init__(self):
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.sock.bind(self.endpoint)
        self.worker = None
        self.next_hb = 0

    def recv(self, timeout_ms):
        """One message, or None; answers heartbeats."""
        now = time.monotonic()
        if self.worker and now >= self.next_hb:
            self.sock.send_multipart([self.worker, W, bytes([HEARTBEAT]), b"\x80"])
            self.next_hb = now + 0.5
        if not self.sock.poll(timeout_ms):
            return None
        ident, _, cmd, body = self.sock.recv_multipart()
        if cmd[0] == READY and unpack(body).get("credit", 0) > 0:
            self.worker = ident
        return cmd[0], body

    def send_jobs(self, prefix, n, url, body):
        deadline = int(time.time() * 1000) + 3600000
        for i in range(n):
            jid = "%s-%06d" % (prefix, i)
            self.sock.send_multipart([self.worker, W, bytes([JOB]), pack({
                "jobId": jid + ".wh1", "botType": "webhook",
                "payload": {"url": url, "webhookId": jid, "body": body},
                "attempt": 1, "timeoutMs": 3600000, "deadline": deadline})])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("BOTMESH_BIN", os.path.join(HERE, "..", "..", "build", "bin")))
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--waiting", type=int, default=10000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--body", type=int, default=300)
    args = ap.parse_args()
    harness.BIN = os.path.abspath(args.bin)
    body = json.dumps({"jobId": "x", "botType": "python", "status": "completed",
                       "result": {"pad": "p" * max(0, args.body - 90)}, "attempts": 1})

    with harness.Stack("wh-bench") as s:
        feeder = Feeder()
        s.endpoint = feeder.endpoint
        mock = whlib.mock(s, {"MOCK_THREADS": str(args.inflight + 16), "MOCK_MAX_RECORDS": "1000",
                              "LOG_LEVEL": "warn"})
        mgr = whlib.manager(s, {"WEBHOOK_MAX_INFLIGHT": str(args.inflight), "LOG_LEVEL": "warn",
                                "WEBHOOK_CONCURRENCY": str(max(args.jobs, args.waiting, 10000)),
                                "WEBHOOK_RETRY_DELAY": "600000", "WEBHOOK_MAX_DELAY": "600000",
                                "WEBHOOK_JITTER": "none"}, wait=False)
        while feeder.worker is None:
            feeder.recv(100)
        print("manager pid %d, mock pid %d" % (mgr.pid, mock.pid), flush=True)
        url = mock.url + "/bench"

        # Throughput.
        cpu0 = (cpu_s(mgr.pid), cpu_s(mock.pid), time.process_time())
        start = time.monotonic()
        feeder.send_jobs("t", args.jobs, url, body)
        done = 0
        while done < args.jobs:
            msg = feeder.recv(1000)
            if msg and msg[0] == DONE:
                done += 1
            if time.monotonic() - start > 300:
                break
        took = time.monotonic() - start
        cpu = (cpu_s(mgr.pid) - cpu0[0], cpu_s(mock.pid) - cpu0[1], time.process_time() - cpu0[2])
        print("cpu seconds: manager %.2f, mock %.2f, feeder %.2f" % cpu, flush=True)
        ms = whlib.get_json(mock.url + "/stats")
        print("throughput: %d deliveries (body %d B, %d in flight) in %.2f s = %.0f deliveries/s; "
              "mock received %d" % (done, len(body), args.inflight, took, done / took, ms["received"]),
              flush=True)

        # Memory while deliveries wait for a retry: a fresh manager.
        mgr.stop()
        feeder.worker = None
        mgr = whlib.manager(s, {"WEBHOOK_MAX_INFLIGHT": str(args.inflight), "LOG_LEVEL": "warn",
                                "WEBHOOK_CONCURRENCY": str(max(args.waiting, 10000)),
                                "WEBHOOK_RETRY_DELAY": "600000", "WEBHOOK_MAX_DELAY": "600000",
                                "WEBHOOK_JITTER": "none"}, name="webhook-2")
        while feeder.worker is None:
            feeder.recv(100)
        whlib.mock_mode(mock, failFirst=1)
        base_rss = rss_kb(mgr.pid)
        feeder.send_jobs("w", args.waiting, url, body)
        progress = 0
        t0 = time.monotonic()
        while progress < args.waiting and time.monotonic() - t0 < 300:
            msg = feeder.recv(1000)
            if msg and msg[0] == PROGRESS:
                progress += 1
        stats = whlib.get_json(mgr.url + "/stats")
        rss = rss_kb(mgr.pid)
        print("waiting: %d deliveries waiting for a retry (held %d, in flight %d); manager RSS %.1f MB "
              "(%.1f MB before: %.0f bytes per waiting delivery); mock RSS %.1f MB"
              % (stats["retrying"], stats["held"], stats["inFlight"], rss / 1024.0, base_rss / 1024.0,
                 (rss - base_rss) * 1024.0 / max(1, stats["retrying"]), rss_kb(mock.pid) / 1024.0),
              flush=True)
        feeder.sock.close()


if __name__ == "__main__":
    main()

"""whlib.py - helpers for the webhook tests: start botmesh-mock and
botmesh-webhook under a harness.Stack, talk to their HTTP APIs."""
import json
import os
import time

import harness
from harness import check, free_port, http, log, wait_until


def mock(stack, env=None, name="mock"):
    """Start botmesh-mock on a free port (127.0.0.1); returns the Proc with
    .port and .url set, once /health answers."""
    port = free_port()
    e = {"MOCK_WEBHOOK_PORT": str(port), "MOCK_LISTEN_ADDR": "127.0.0.1"}
    e.update(env or {})
    p = stack.spawn(name, [stack.bin("botmesh-mock")], e)
    p.port = port
    p.url = "http://127.0.0.1:%d" % port
    wait_until(lambda: http("GET", p.url + "/health", timeout=2)[0] == 200, 10, "mock to answer /health")
    return p


def manager(stack, env=None, name="webhook", wait=True):
    """Start botmesh-webhook with test-friendly defaults; returns the Proc
    with .port and .url set (waits for /health unless wait is False)."""
    port = free_port()
    e = {"WEBHOOK_MANAGER_PORT": str(port), "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
         "WEBHOOK_ALLOW_PRIVATE": "1", "BROKER_ENDPOINT": stack.endpoint or "tcp://127.0.0.1:1",
         "WEBHOOK_NAME": name}
    e.update(env or {})
    p = stack.spawn(name, [stack.bin("botmesh-webhook")], e)
    p.port = port
    p.url = "http://127.0.0.1:%d" % port
    if wait:
        wait_until(lambda: http("GET", p.url + "/health", timeout=2)[0] == 200, 10,
                   "webhook manager to answer /health")
    return p


def get_json(url):
    status, _, body = http("GET", url, timeout=5)
    if status != 200:
        raise harness.TestFailure("GET %s answered %s: %r" % (url, status, body))
    return body


def mock_mode(mock_proc, **mode):
    status, _, body = http("POST", mock_proc.url + "/mode", mode)
    check(status == 200, "mock mode set to %r" % (mode,), body)
    return body


def mock_deliveries(mock_proc, job_id):
    return get_json("%s/deliveries?jobId=%s&limit=1000" % (mock_proc.url, job_id))["deliveries"]


def stop_clean(*procs):
    """SIGTERM each process and check it exits 0 (under ASan/UBSan a
    sanitizer report makes the exit code non-zero)."""
    for p in procs:
        rc = p.stop(timeout=30)
        check(rc == 0, "%s stopped cleanly on SIGTERM (exit %s)" % (p.name, rc), p.output()[-2000:])

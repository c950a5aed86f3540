"""A sentinel that goes silent is noticed: the broker follows another one.

A real Redis master, its replica, and two sentinels watching it as
"mymaster".  The
broker gets both (REDIS_SENTINELS) and subscribes to the first one's
+switch-master.  That sentinel is then frozen (SIGSTOP): its TCP
connection stays open and says nothing, so only the broker's periodic
confirmation of its subscription can tell.  What must hold: within a few
seconds the broker logs the first sentinel as silent and follows the
second one; it keeps taking jobs meanwhile.
"""
import os
import signal
import socket
import time

import harness as h


def cli(s, port, *args):
    s.redis_port, saved = port, s.redis_port
    try:
        return s.redis_cli(*args)
    finally:
        s.redis_port = saved


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
            c.sendall(b"PING\r\n")
            return c.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def sentinel(s, name, master):
    port = h.free_port()
    conf = os.path.join(s.dir, name + ".conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\n" % (port, s.dir))
        f.write("sentinel monitor mymaster 127.0.0.1 %d 1\n" % master)
    proc = s.spawn(name, ["redis-server", conf, "--sentinel"])
    h.wait_until(lambda: answers(port), 10, "%s to answer" % name)
    return port, proc


def test():
    with h.Stack("sentinel-silent") as s:
        s.redis(appendonly=False)
        master = s.redis_port
        # With sentinels the broker waits for a replica to hold each write.
        replica = h.free_port()
        s.spawn("replica", ["redis-server", "--port", str(replica), "--bind", "127.0.0.1",
                            "--dir", s.dir, "--save", "", "--appendonly", "no",
                            "--dbfilename", "replica.rdb", "--replicaof", "127.0.0.1", str(master)])
        h.wait_until(lambda: "master_link_status:up" in cli(s, replica, "INFO", "replication"), 15,
                     "the replica to sync")
        port1, sentinel1 = sentinel(s, "sentinel1", master)
        port2, _ = sentinel(s, "sentinel2", master)
        broker = s.broker(env={"REDIS_URL": "redis://127.0.0.1:1/0",
                               "REDIS_SENTINELS": "127.0.0.1:%d,127.0.0.1:%d" % (port1, port2),
                               "REDIS_MASTER_NAME": "mymaster"})
        follows = "sentinel 127.0.0.1:%d: following +switch-master for 'mymaster'"
        h.wait_until(lambda: follows % port1 in broker.output(), 10,
                     "the broker to follow the first sentinel")

        os.kill(sentinel1.p.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            c = s.client()

            def submitted():
                cmd, r = c.try_submit("python", {"n": 1})
                return cmd == h.ACCEPTED or (r.get("code") == "store_unavailable" and None)
            h.wait_until(submitted, 10, "a job to be taken while the sentinel is frozen")
            h.wait_until(lambda: follows % port2 in broker.output(), 10,
                         "the broker to follow the second sentinel")
            h.log("following the second sentinel %.1f s after the first froze" % (time.monotonic() - frozen))
            h.check("sentinel 127.0.0.1:%d: silent" % port1 in broker.output(),
                    "the broker logged the first sentinel as silent", broker.output()[-2000:])
            h.check(c.request(h.PING)[1]["redis"] is True, "the broker still has Redis")
        finally:
            os.kill(sentinel1.p.pid, signal.SIGCONT)


if __name__ == "__main__":
    h.main(test)

#!/usr/bin/python3
"""aof_replay.py - what each part of the broker's Redis writes costs Redis.

    aof_replay.py AOF VARIANT[,VARIANT...] [RUNS] [-- REDIS-SERVER-ARGS...]

AOF is the incremental AOF file of a redis-server that served a benchmark
(e.g. the appendonlydir/*.incr.aof that `bench/profile.sh broker-redis
--out DIR` leaves in DIR).  Its commands are parsed, changed per VARIANT,
and sent, as one group bracketed by CLIENT REPLY OFF/ON like the broker's,
to a fresh redis-server (AOF everysec, no RDB) per variant and run; the
variants alternate run by run.  Prints, per variant, redis-server's CPU
time per job (utime + stime from /proc, jobs = the ids the finished sets'
ZADDs add, or the PEXPIREATs of an AOF from before the finished sets),
used_memory per job and the encoding of the first job record.

Variants (joined with +, e.g. nolive+nofin):
  base     the commands as they are
  set      the sorted set "live" as a plain set (SADD/SREM "unfinished")
  nolive   without the writes of the unfinished set (or of "live")
  nofin    without the ZADDs of the finished sets
  nopexp   without the records' TTLs (PEXPIREAT; an AOF of the broker
           before the sweep of the finished sets has one a job)

Extra redis-server arguments after "--" apply to every run, e.g.
`-- --hash-max-listpack-value 1024`.  The machine's load moves the figures:
compare variants of one call only, and give the load it prints.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time


def parse(path):
    data = open(path, "rb").read()
    cmds, i, n = [], 0, len(data)
    while i < n:
        if data[i:i + 1] != b"*":
            raise SystemExit("aof_replay: %s: not a RESP array at byte %d" % (path, i))
        j = data.index(b"\r\n", i)
        argc = int(data[i + 1:j])
        i = j + 2
        args = []
        for _ in range(argc):
            j = data.index(b"\r\n", i)
            size = int(data[i + 1:j])
            i = j + 2
            args.append(data[i:i + size])
            i += size + 2
        cmds.append(args)
    return cmds


def resp(args):
    return b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in args])


def variant(cmds, parts):
    out = []
    for c in cmds:
        verb, key = c[0].upper(), c[1] if len(c) > 1 else b""
        if verb in (b"SELECT", b"LPUSH", b"LTRIM", b"MULTI", b"EXEC"):
            continue                    # metric snapshots, transactions' brackets
        live = key.endswith(b":live") or key.endswith(b":unfinished")
        if "nolive" in parts and live:
            continue
        if "nofin" in parts and b":finished:" in key and verb == b"ZADD":
            continue
        if "nopexp" in parts and verb == b"PEXPIREAT":
            continue
        if "set" in parts and key.endswith(b":live"):
            unfinished = key[:-len(b"live")] + b"unfinished"
            if verb == b"ZADD":
                c = [b"SADD", unfinished] + c[3::2]
            elif verb == b"ZREM":
                c = [b"SREM", unfinished] + c[2:]
        out.append(c)
    return out


def cpu_s(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_reply(sock, buf=b""):
    """One reply: a status/error line or a bulk string; returns (reply, rest)."""
    while b"\r\n" not in buf:
        buf += sock.recv(65536)
    line, rest = buf.split(b"\r\n", 1)
    if line[:1] != b"$":
        return line, rest
    size = int(line[1:])
    if size < 0:
        return None, rest               # nil: no such key
    while len(rest) < size + 2:
        rest += sock.recv(65536)
    return rest[:size], rest[size + 2:]


def run(cmds, jobs, extra):
    d = tempfile.mkdtemp(prefix="aof-replay.")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                          "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"] + extra,
                         stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:             # until it listens: at most 10 s
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("aof_replay: redis-server did not start on port %d" % port)
                time.sleep(0.02)
        c.settimeout(600)
        blob = b"".join([resp([b"CLIENT", b"REPLY", b"OFF"])] + [resp(x) for x in cmds]
                        + [resp([b"CLIENT", b"REPLY", b"ON"])])
        t0 = cpu_s(p.pid)
        c.sendall(blob)
        reply, rest = read_reply(c)
        t1 = cpu_s(p.pid)
        if reply != b"+OK":
            raise SystemExit("aof_replay: %r" % reply)
        c.sendall(resp([b"INFO", b"memory"]))
        info, rest = read_reply(c, rest)
        mem = int(re.search(rb"used_memory:(\d+)", info).group(1))
        key = next(x[1] for x in cmds if x[0].upper() == b"HSET")
        c.sendall(resp([b"OBJECT", b"ENCODING", key]))
        enc, _ = read_reply(c, rest)
        return (t1 - t0) * 1e6 / jobs, mem / jobs, enc.decode() if enc else "gone (expired)"
    finally:
        p.terminate()
        p.wait()
        subprocess.run(["rm", "-rf", d])


def main(argv):
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    if len(argv) < 2:
        raise SystemExit(__doc__)
    names = argv[1].split(",")
    runs = int(argv[2]) if len(argv) > 2 else 3
    cmds = parse(argv[0])
    # Finished jobs: the ids the finished sets' ZADDs add (their records
    # carry no TTL any more), or one PEXPIREAT each in an older AOF.
    added = sum((len(c) - 2) // 2 for c in cmds if c[0].upper() == b"ZADD" and b":finished:" in c[1])
    jobs = max(added, sum(1 for c in cmds if c[0].upper() == b"PEXPIREAT"))
    if jobs == 0:
        raise SystemExit("aof_replay: no finished-set ZADD or PEXPIREAT in %s: no finished job to count"
                         % argv[0])
    print("%d jobs, %d commands; load %.2f %.2f %.2f" % ((jobs, len(cmds)) + os.getloadavg()))
    built = {v: variant(cmds, set(v.split("+"))) for v in names}
    res = {v: [] for v in names}
    for _ in range(runs):
        for v in names:
            res[v].append(run(built[v], jobs, extra))
    for v in names:
        us = sorted(r[0] for r in res[v])
        print("%-16s redis-server CPU µs/job %s (median %.2f)  used_memory B/job %.0f  record %s"
              % (v, " ".join("%.2f" % x for x in us), us[len(us) // 2], res[v][0][1], res[v][0][2]))
    print("load after %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main(sys.argv[1:])

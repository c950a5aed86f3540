#!/usr/bin/env bash
# bench/batch_ab.sh - POST /invoke/batch (durable) by hand, A/B: the
# http_gateway_batch case of bench/run.sh on fresh processes, once per binary
# directory given, in rounds alternating their order, every process under
# `chrt -f 20` so that other work on the machine does not set the pace.
#
#   bash bench/batch_ab.sh [--rounds N] [--seconds S] [--conn C] [--threads T]
#                          [--env NAME=VALUE ...] [--redis "ARGS"] [--perf gateway|broker|redis]
#                          [--rewrite] BIN_A [BIN_B ...]
#
# BIN_x holds botmesh-broker, botmesh-gateway and bm-bench-worker (a build's
# bin/).  Per run: redis-server (AOF everysec), the broker (MAX_QUEUE=2000000),
# two `bm-bench-worker noop --batch`, the gateway (GATEWAY_THREADS=T, default
# C + 16); 1 s of wrk as warm-up, wait until Redis's unfinished set is empty,
# then `wrk -t2 -cC -dSs invoke_batch.lua` (BENCH_BATCH=1000).  One line per
# run: jobs/s (accepted jobs: wrk's requests x 1000), CPU µs a job of each
# process from /proc/PID/stat (redis-server with its reaped children: the
# AOF rewrites), cores busy by those processes, the machine's busy cores
# (/proc/stat: other engineers' work included), Redis's commands a job, its
# AOF rewrites and the last fork's time.  --env adds an environment setting
# to the broker and gateway of every run (a tunable under test); --redis
# more redis-server arguments; --perf records that process (perf, DWARF
# call graphs) during each measured run into /tmp/botmesh-perf-LABEL-N.data;
# --rewrite: after each run, once its jobs are finished, one BGREWRITEAOF
# timed (the child's CPU a key Redis holds, the fork).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=/usr/bin/python3
ROUNDS=4 SECS=5 CONN=8 THREADS="" EXTRA=() REDIS_ARGS=() BINS=() PERF="" REWRITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --conn) CONN=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --env) EXTRA+=("$2"); shift ;;
    --redis) read -r -a REDIS_ARGS <<<"$2"; shift ;;
    --perf) PERF=$2; shift ;;
    --rewrite) REWRITE=1 ;;
    -*) echo "batch_ab: unknown argument '$1'" >&2; exit 2 ;;
    *) BINS+=("$1") ;;
  esac
  shift
done
[ ${#BINS[@]} -gt 0 ] || { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
THREADS=${THREADS:-$((CONN + 16))}
RT=(chrt -f 20)
HZ=$(getconf CLK_TCK)
TMP="$(mktemp -d /tmp/botmesh-batchab.XXXXXX)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
  PIDS=()
}
trap 'cleanup; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# utime + stime in ticks; child_ticks: cutime + cstime (reaped children)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
child_ticks() { awk '{print $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }

one_run() {   # one_run LABEL BIN
  local label=$1 bin=$2 dir="$TMP/$1-$RANDOM"
  mkdir -p "$dir"
  local rport; rport=$(free_port)
  "${RT[@]}" redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes \
    --appendfsync everysec --daemonize no "${REDIS_ARGS[@]+"${REDIS_ARGS[@]}"}" >"$dir/redis.log" 2>&1 &
  local redis=$!; PIDS+=("$redis")
  for _ in $(seq 1 100); do [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  local ep="tcp://127.0.0.1:$(free_port)"
  env BROKER_ENDPOINT="$ep" REDIS_URL="redis://127.0.0.1:$rport/0" BROKER_METRICS_PORT="$(free_port)" \
    LOG_LEVEL=warn MAX_PYTHON_BOTS=100000 MAX_BOTS_DEFAULT=100000 MAX_QUEUE=2000000 \
    "${EXTRA[@]+"${EXTRA[@]}"}" "${RT[@]}" "$bin/botmesh-broker" >"$dir/broker.log" 2>&1 &
  local broker=$!; PIDS+=("$broker")
  local workers=()
  for i in 1 2; do
    "${RT[@]}" "$bin/bm-bench-worker" noop --endpoint "$ep" --types python --credit 500 --batch \
      >"$dir/worker-$i.log" 2>&1 &
    workers+=("$!"); PIDS+=("$!")
  done
  "$bin/bm-bench" ping --endpoint "$ep" --wait-workers 2 >/dev/null 2>&1 \
    || { echo "$label: broker not ready" >&2; cleanup; return 1; }
  local gport; gport=$(free_port)
  env API_GATEWAY_PORT="$gport" GATEWAY_LISTEN=127.0.0.1 BROKER_ENDPOINT="$ep" REDIS_URL=none \
    GATEWAY_THREADS="$THREADS" RATE_LIMIT_RPS=0 LOG_LEVEL=warn "${EXTRA[@]+"${EXTRA[@]}"}" \
    "${RT[@]}" "$bin/botmesh-gateway" >"$dir/gateway.log" 2>&1 &
  local gw=$!; PIDS+=("$gw")
  for _ in $(seq 1 150); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$gport/health" && break; sleep 0.1; done
  local url="http://127.0.0.1:$gport/invoke/batch"
  BENCH_BATCH=1000 "${RT[@]}" wrk -t2 -c"$CONN" -d1s -s "$ROOT/bench/invoke_batch.lua" "$url" >/dev/null 2>&1
  for _ in $(seq 1 600); do
    [ "$(redis-cli -p "$rport" SCARD 'botmesh:{bm}:unfinished' 2>/dev/null)" = 0 ] && break
    sleep 0.1
  done
  redis-cli -p "$rport" config resetstat >/dev/null
  local p before=() after=()
  for p in "$gw" "$broker" "$redis" "${workers[@]}"; do before+=("$(ticks "$p")"); done
  before+=("$(ticks "$redis/task/$redis")" "$(child_ticks "$redis")")
  local m0; m0=$(busy)
  local perf_pid=""
  if [ -n "$PERF" ]; then
    local target; case "$PERF" in gateway) target=$gw ;; broker) target=$broker ;; redis) target=$redis ;; esac
    PERF_N=$(( ${PERF_N:-0} + 1 ))
    perf record -q -F 999 --call-graph dwarf,16384 -p "$target" \
      -o "/tmp/botmesh-perf-${label//[\/#]/_}-$PERF_N.data" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
  fi
  local t0; t0=$(date +%s.%N)
  BENCH_BATCH=1000 "${RT[@]}" wrk -t2 -c"$CONN" -d"${SECS}s" --latency -s "$ROOT/bench/invoke_batch.lua" \
    "$url" >"$dir/wrk.txt" 2>&1
  local t1; t1=$(date +%s.%N)
  local backlog; backlog=$(redis-cli -p "$rport" SCARD 'botmesh:{bm}:unfinished' 2>/dev/null)
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null; fi
  local m1; m1=$(busy)
  for p in "$gw" "$broker" "$redis" "${workers[@]}"; do after+=("$(ticks "$p")"); done
  after+=("$(ticks "$redis/task/$redis")")
  # An AOF rewrite child still running is waited for (its CPU shows in
  # redis-server's cutime once reaped)
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$rport" info persistence | awk -F: '/^aof_rewrite_in_progress:/ {print $2+0}')" = 0 ] && break
    sleep 0.1
  done
  after+=("$(child_ticks "$redis")")
  local hsets; hsets=$(redis-cli -p "$rport" info commandstats | awk -F'[:=,]' '/^cmdstat_hset:/ {print $3}')
  local calls; calls=$(redis-cli -p "$rport" info commandstats | awk -F'[:=,]' '/^cmdstat_/ {n += $3} END {print n}')
  local rewrites; rewrites=$(redis-cli -p "$rport" info persistence | awk -F: '/^aof_rewrites:/ {print $2+0}')
  local fork_us; fork_us=$(redis-cli -p "$rport" info stats | awk -F: '/^latest_fork_usec:/ {print $2+0}')
  local rewrite_text=""
  if [ "$REWRITE" = 1 ]; then
    for _ in $(seq 1 600); do
      [ "$(redis-cli -p "$rport" SCARD 'botmesh:{bm}:unfinished' 2>/dev/null)" = 0 ] && break
      sleep 0.1
    done
    local keys; keys=$(redis-cli -p "$rport" dbsize)
    local c0; c0=$(child_ticks "$redis")
    redis-cli -p "$rport" bgrewriteaof >/dev/null
    sleep 0.2
    for _ in $(seq 1 600); do
      [ "$(redis-cli -p "$rport" info persistence | awk -F: '/^aof_rewrite_in_progress:/ {print $2+0}')" = 0 ] && break
      sleep 0.1
    done
    local c1; c1=$(child_ticks "$redis")
    local fork; fork=$(redis-cli -p "$rport" info stats | awk -F: '/^latest_fork_usec:/ {print $2+0}')
    local mem; mem=$(redis-cli -p "$rport" info memory | awk -F: '/^used_memory:/ {print $2+0}')
    rewrite_text=$(awk -v c="$((c1 - c0))" -v hz="$HZ" -v k="$keys" -v f="$fork" -v m="$mem" \
      'BEGIN {printf "  BGREWRITEAOF of %d keys: %.2f us a key (fork %d us), used_memory %d B a key", k, c / hz * 1e6 / k, f, m / k}')
  fi
  local reqs; reqs=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt")
  local p99; p99=$(awk '$1=="99%" {print $2}' "$dir/wrk.txt")
  cleanup
  [ -n "$rewrite_text" ] && echo "$label:$rewrite_text"
  "$PY" - "$label" "$t0" "$t1" "${reqs:-0}" "${non2xx:-0}" "${p99:-?}" "${hsets:-0}" "${calls:-0}" \
    "${rewrites:-0}" "${fork_us:-0}" "${backlog:-?}" "$HZ" "$m0" "$m1" "${before[*]}" "${after[*]}" <<'EOF'
import sys
(label, t0, t1, reqs, non2xx, p99, hsets, calls, rewrites, fork_us, backlog, hz, m0, m1, b, a) = sys.argv[1:]
wall = float(t1) - float(t0)
jobs = int(reqs) * 1000
hz = int(hz)
b = [int(x) for x in b.split()]
a = [int(x) for x in a.split()]
d = [(y - x) / hz for x, y in zip(b, a)]
names = ["gateway", "broker", "redis"]
per = {n: v for n, v in zip(names, d[:3])}
per["workers"] = sum(d[3:-2])
per["rewrite"] = d[-1]
redis_main = d[-2]
us = {n: v * 1e6 / max(jobs, 1) for n, v in per.items()}
total = sum(v for n, v in per.items() if n != "rewrite")
mb0, mt0 = [int(x) for x in m0.split()]
mb1, mt1 = [int(x) for x in m1.split()]
machine = 2.0 * (mb1 - mb0) / max(mt1 - mt0, 1)
print(f"{label}: jobs/s {jobs / wall:9.0f}  us/job gw {us['gateway']:.2f} broker {us['broker']:.2f} "
      f"redis {us['redis']:.2f} (+{us['rewrite']:.2f} rewrite) workers {us['workers']:.2f} all {sum(v for n, v in us.items() if n != 'rewrite'):.2f}  "
      f"cores {total / wall:.2f} (redis-server's main thread {redis_main / wall:.2f}) "
      f"machine {machine:.2f}  cmds/job {int(calls) / max(jobs, 1):.2f} "
      f"hset/job {int(hsets) / max(jobs, 1):.2f}  rewrites {rewrites} fork_us {fork_us} "
      f"unfinished at the end {backlog}  p99 {p99} non2xx {non2xx}", flush=True)
EOF
}

echo "# $(date -u +%H:%M:%S) rounds=$ROUNDS seconds=$SECS conn=$CONN threads=$THREADS load $(cut -d' ' -f1-3 /proc/loadavg) ${EXTRA[*]+"${EXTRA[*]}"} ${REDIS_ARGS[*]+"${REDIS_ARGS[*]}"}"
n=${#BINS[@]}
for (( r=0; r<ROUNDS; r++ )); do
  for (( k=0; k<n; k++ )); do
    # Rotate the order each round: A B, B A, ...
    i=$(( (k + r) % n ))
    one_run "$(basename "$(dirname "${BINS[$i]}")")/$(basename "${BINS[$i]}")#$i" "${BINS[$i]}"
  done
done
echo "# $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# bench/profile.sh - profile one botmesh process under the benchmark load, so
# that what bounds a figure of docs/benchmarks.md can be named function by
# function.
#
#   bash bench/profile.sh broker-none|broker-redis|gateway [--jobs N] [--seconds S] [--out DIR]
#
#   broker-none    perf record (DWARF call graphs) of botmesh-broker, no Redis,
#                  during bm-bench throughput (50,000 jobs)
#   broker-redis   the same with Redis (AOF everysec); also prints the CPU
#                  time of redis-server and its INFO commandstats
#   gateway        perf record of botmesh-gateway (broker with Redis) under wrk
#
# Prints the CPU seconds each process used, then the top functions by
# inclusive ("children") and self time.  perf.data stays in --out (default
# a temp dir) for `perf report -i DIR/perf.data`.  Uses BOTMESH_BIN like
# bench/run.sh; needs perf (linux-perf).  Every process it starts is stopped.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BOTMESH_BIN:-${BOTMESH_BUILD_DIR:-$ROOT/build}/bin}"
PY=/usr/bin/python3
TARGET="${1:-}"; shift || true
JOBS=50000 SECONDS_WRK=10 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS=$2; shift ;;
    --seconds) SECONDS_WRK=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "profile: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
case "$TARGET" in broker-none|broker-redis|gateway) ;; *)
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;; esac
command -v perf >/dev/null || { echo "profile: perf is not installed" >&2; exit 1; }
[ -n "$OUT" ] || OUT="$(mktemp -d /tmp/botmesh-profile.XXXXXX)"
mkdir -p "$OUT"

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null; }

REDIS_URL=none REDIS_PID="" RPORT=""
if [ "$TARGET" != broker-none ]; then
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$OUT" --save "" --appendonly yes \
    --appendfsync everysec >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!; PIDS+=("$REDIS_PID")
  for _ in $(seq 1 100); do [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  REDIS_URL="redis://127.0.0.1:$RPORT/0"
fi
EP="tcp://127.0.0.1:$(free_port)"
env BROKER_ENDPOINT="$EP" REDIS_URL="$REDIS_URL" BROKER_METRICS_PORT="$(free_port)" LOG_LEVEL=warn \
  MAX_PYTHON_BOTS=100000 MAX_QUEUE=2000000 "$BIN/botmesh-broker" >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!; PIDS+=("$BROKER_PID")
for i in 1 2; do
  env BROKER_ENDPOINT="$EP" LOG_LEVEL=warn "$BIN/botmesh-worker" --type python --concurrency 500 --noop \
    >"$OUT/worker-$i.log" 2>&1 &
  PIDS+=("$!")
done
"$BIN/bm-bench" ping --endpoint "$EP" --wait-workers 2 >/dev/null || { echo "profile: broker not ready" >&2; exit 1; }
[ -n "$RPORT" ] && redis-cli -p "$RPORT" config resetstat >/dev/null

if [ "$TARGET" = gateway ]; then
  GPORT=$(free_port)
  env API_GATEWAY_PORT="$GPORT" GATEWAY_LISTEN=127.0.0.1 BROKER_ENDPOINT="$EP" REDIS_URL="$REDIS_URL" \
    GATEWAY_THREADS=80 RATE_LIMIT_RPS=0 LOG_LEVEL=warn "$BIN/botmesh-gateway" >"$OUT/gateway.log" 2>&1 &
  PROF_PID=$!; PIDS+=("$PROF_PID")
  for _ in $(seq 1 150); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$GPORT/" && break; sleep 0.1; done
else
  PROF_PID=$BROKER_PID
fi

b0=$(cpu_s "$BROKER_PID"); r0=$([ -n "$REDIS_PID" ] && cpu_s "$REDIS_PID"); g0=$(cpu_s "$PROF_PID")
perf record -F 999 --call-graph dwarf,16384 -p "$PROF_PID" -o "$OUT/perf.data" >/dev/null 2>&1 &
PERF_PID=$!
sleep 0.5
if [ "$TARGET" = gateway ]; then
  wrk -t2 -c64 -d"${SECONDS_WRK}s" --latency -s "$ROOT/bench/invoke.lua" "http://127.0.0.1:$GPORT/invoke" \
    | grep -E "Requests/sec|99%|Non-2xx"
else
  "$BIN/bm-bench" throughput --endpoint "$EP" --jobs "$JOBS" --warmup 0
fi
kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null
echo "CPU seconds during the load: broker $(awk -v a="$b0" -v b="$(cpu_s "$BROKER_PID")" 'BEGIN{print b-a}')" \
     "$([ -n "$REDIS_PID" ] && echo "redis-server $(awk -v a="$r0" -v b="$(cpu_s "$REDIS_PID")" 'BEGIN{print b-a}')")" \
     "$([ "$TARGET" = gateway ] && echo "gateway $(awk -v a="$g0" -v b="$(cpu_s "$PROF_PID")" 'BEGIN{print b-a}')")"
[ -n "$RPORT" ] && { echo "redis commands:"; redis-cli -p "$RPORT" info commandstats | grep '^cmdstat' | sed 's/^/  /'; }
echo
echo "== top functions, inclusive (children) =="
perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | grep -v '0x0000' | head -45
echo
echo "== top functions, self =="
perf report -i "$OUT/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | head -25
echo
echo "perf data: $OUT/perf.data"

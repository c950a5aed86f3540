#!/usr/bin/env bash
# bench/run.sh - `./botmesh bench`: botmesh against BullMQ (the seed's queue)
# and against the limits of the machine (a bare libzmq relay, a bare civetweb
# handler), side by side, in one run on this machine.
#
#   bash bench/run.sh [--quick] [--no-write] [--runs N] [--only GROUPS] [--keep-logs]
#
#   --quick       seconds-long version of every case (small counts, 1 run): CI
#   --no-write    print the table only; do not write docs/benchmarks.md
#   --runs N      runs per case (default 3; --quick: 1)
#   --only G,...  groups to run: throughput, latency, http, scale, ha (default
#                 all of these), bulk (only when named: the bulk cases of
#                 throughput alone, botmesh SUBMIT_MANY and BullMQ addBulk at
#                 BENCH_BULK_WINDOW batches in flight), bots (only when named: the default bots end
#                 to end per execution mode, with Celery and BullMQ sandboxed
#                 processors on the same bot work; bench/bots.py), record (only
#                 when named: the job record in Redis, bytes and commands per
#                 job, and durable jobs/s; BENCH_BEFORE_BIN=DIR runs it on an
#                 earlier build's binaries too; bench/record.py)
#                 ha: durable throughput without and with BROKER_HA=redis
#                 (the cost of fencing, A/B in the same run, order alternating)
#                 and the failover time of 10 leader kills (bench/failover.py)
#   --keep-logs   keep the scratch directory with every process log
#
# Each case runs N times on fresh processes (fresh redis-server, broker,
# workers); the table shows the median and the min-max.  Every server
# listens on 127.0.0.1 on a free port; every process started here is
# stopped when the script ends, whatever happens.
#
# Full runs renice themselves to BENCH_NICE (default -10, when allowed) so
# background jobs disturb the figures less; the load averages before and
# after the run are written down with the figures.
#
# Environment: BOTMESH_BIN (binaries; default $BOTMESH_BUILD_DIR/bin, then
# ./build/bin; built with cmake + ninja when missing), BENCH_WORKERS and
# BENCH_CREDIT (no-op worker processes and credit each for the throughput
# cases), BENCH_WINDOW (jobs in flight of the driver), BENCH_WRK_SECONDS,
# BENCH_BULK_WINDOW (batches in flight in the bulk cases, both sides),
# BENCH_WRK_CONNECTIONS, BENCH_BATCH (jobs per POST /invoke/batch, 1000) and
# BENCH_BATCH_CONNECTIONS (connections posting them, 8).
#
# Exit status: 0; 1 if a case failed; 77 (skip) with --quick when only the
# npm peers (BullMQ, Express) could not be installed or run.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
PEERS="$BENCH/peers"
PY=/usr/bin/python3

QUICK=0 WRITE=1 RUNS="" ONLY="throughput,latency,http,scale,ha" KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-write) WRITE=0 ;;
    --runs) RUNS="${2:-}"; shift ;;
    --only) ONLY="${2:-}"; shift ;;
    --keep-logs) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | grep -v '^set' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$RUNS" ] || RUNS=$([ $QUICK = 1 ] && echo 1 || echo 3)
case "$RUNS" in ''|*[!0-9]*|0) echo "bench: --runs must be a positive integer" >&2; exit 2 ;; esac
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# --- sizes -------------------------------------------------------------------
if [ $QUICK = 1 ]; then
  JOBS=2000 LAT_JOBS=200 LAT_WARMUP=20 WRK_SECONDS=${BENCH_WRK_SECONDS:-2}
  FILL_SMALL=10000 FILL_LARGE=20000 IDLE_WORKERS=100 IDLE_SECONDS=2 TYPE_COUNTS="1 10"
  FAILOVER_KILLS=2
else
  JOBS=50000 LAT_JOBS=2000 LAT_WARMUP=100 WRK_SECONDS=${BENCH_WRK_SECONDS:-10}
  FILL_SMALL=100000 FILL_LARGE=1000000 IDLE_WORKERS=1000 IDLE_SECONDS=10 TYPE_COUNTS="1 10 100"
  FAILOVER_KILLS=10
fi
WORKERS=${BENCH_WORKERS:-2}          # no-op worker processes (throughput cases)
CREDIT=${BENCH_CREDIT:-500}          # credit (concurrency) of each
WINDOW=${BENCH_WINDOW:-2000}         # jobs in flight of the C driver
BULK_BATCH=1000                      # jobs per SUBMIT_MANY in the bulk cases (BullMQ's addBulk batch)
# Batches in flight in the bulk cases, the same for both sides: the botmesh
# driver keeps BULK_WINDOW SUBMIT_MANY of BULK_BATCH jobs unfinished, BullMQ's
# best setting BULK_WINDOW addBulk calls (docs/benchmarks.md says why this many)
BULK_WINDOW=${BENCH_BULK_WINDOW:-2}
case "$BULK_WINDOW" in ''|*[!0-9]*|0) echo "bench: BENCH_BULK_WINDOW must be a positive integer" >&2; exit 2 ;; esac
WRK_CONN=${BENCH_WRK_CONNECTIONS:-64}
BATCH=${BENCH_BATCH:-1000}            # jobs per POST /invoke/batch
BATCH_CONN=${BENCH_BATCH_CONNECTIONS:-8}  # keep-alive connections posting batches
# BullMQ as the throughput targets set it (addBulk batches of 1,000, worker concurrency 50),
# and the best setting a sweep found here (see bench/findings.md)
BULLMQ_CONCURRENCY=50 BULLMQ_BATCH=1000 BULLMQ_INFLIGHT=1
BULLMQ_BEST_CONCURRENCY=200 BULLMQ_BEST_INFLIGHT=$BULK_WINDOW

# Full runs take priority over background jobs (builds, tests of others) when
# allowed: every process started here inherits it.  BENCH_NICE=0 to keep 0.
NICE=${BENCH_NICE:--10}
if [ $QUICK = 0 ] && [ "$NICE" != 0 ]; then renice -n "$NICE" -p $$ >/dev/null 2>&1 || NICE=0; else NICE=0; fi

# --- scratch space and cleanup ------------------------------------------------
TMP="$(mktemp -d /tmp/botmesh-bench.XXXXXX)"
RESULTS="$TMP/results.tsv" COMMANDS="$TMP/commands.txt" META="$TMP/meta.txt"
: >"$RESULTS"; : >"$COMMANDS"; : >"$META"
PIDS=()
LAST_PID=""
FAILED=0 NODE_OK=0

stop_pid() {   # TERM the process group, wait, KILL what is left
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
  return 0
}
stop_all() {
  local i
  CPU_WATCH=""
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop_pid "${PIDS[$i]}"; done
  return 0
}
cleanup() {
  stop_all
  if [ $KEEP = 1 ]; then echo "bench: logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# spawn NAME ENV... -- CMD...: start in its own process group; LAST_PID
spawn() {
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]+"${envs[@]}"}" setsid "$@" >>"$TMP/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# record CASE COMMAND-TEXT: the exact command of a case, once
record_cmd() {
  grep -q "^$1	" "$COMMANDS" 2>/dev/null || printf '%s\t%s\n' "$1" "$2" >>"$COMMANDS"
}

# CPU_WATCH="role:pid ...": processes whose CPU time measure() reports for
# the next case, as cpu_<role>_s (summed by role); the driver's own CPU time
# (with its children) is cpu_driver_s.  A process's CPU time includes the
# children it has reaped: redis-server's AOF rewrites (a fork that writes the
# whole dataset, ~6 µs a key, each time the AOF has doubled) took 0.35-0.5 of
# the 2 cores unseen in the HTTP batch case.
CPU_WATCH=""
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# cpu_watch_start / cpu_watch_end: CPU time of the CPU_WATCH processes in
# between, as " cpu_<role>_s=S ..." (summed by role)
declare -A CPU_BEFORE=()
cpu_watch_start() {
  local w
  CPU_BEFORE=()
  for w in $CPU_WATCH; do CPU_BEFORE[$w]=$(cpu_ticks "${w#*:}"); done
}
cpu_watch_end() {
  local w role out=""
  declare -A cpu=()
  for w in $CPU_WATCH; do
    role=${w%%:*}
    cpu[$role]=$(( ${cpu[$role]:-0} + $(cpu_ticks "${w#*:}") - ${CPU_BEFORE[$w]:-0} ))
  done
  for role in "${!cpu[@]}"; do
    out+=" cpu_${role}_s=$(awk -v t="${cpu[$role]}" -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')"
  done
  # The broker's peak resident memory (a fresh broker each run): what the
  # driver's window leaves queued in it shows here
  for w in $CPU_WATCH; do
    [ "${w%%:*}" = broker ] && out+=" hwm_broker_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/${w#*:}/status" 2>/dev/null || echo 0)"
  done
  echo "$out"
}

# measure CASE RUN LOGNAME CMD...: run a driver, keep its RESULT line
measure() {
  local case=$1 run=$2 name=$3; shift 3
  local out="$TMP/$name.out" pid rc line
  cpu_watch_start
  local timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f 'TIME %U %S' -o "$TMP/$name.time")
  setsid "${timer[@]+"${timer[@]}"}" "$@" >"$out" 2>"$TMP/$name.err" </dev/null &
  pid=$!
  PIDS+=("$pid")
  wait "$pid"; rc=$?
  stop_pid "$pid"
  line=$(grep '^RESULT ' "$out" | tail -1)
  if [ $rc -ne 0 ] || [ -z "$line" ]; then
    log "FAILED: $case run $run (rc $rc): $*"
    tail -n 20 "$TMP/$name.err" "$out" >&2
    printf '%s\t%s\tfailed=1\n' "$case" "$run" >>"$RESULTS"
    FAILED=1
    CPU_WATCH=""
    return 1
  fi
  line+=$(cpu_watch_end)
  [ -s "$TMP/$name.time" ] && line+=" cpu_driver_s=$(awk '/^TIME/ {printf "%.2f", $2 + $3}' "$TMP/$name.time")"
  CPU_WATCH=""
  printf '%s\t%s\t%s\n' "$case" "$run" "${line#RESULT }" >>"$RESULTS"
  log "$case run $run: ${line#RESULT }"
  return 0
}
skip_case() {   # once per case
  grep -q "^$1	0	skipped=" "$RESULTS" && return 0
  printf '%s\t0\tskipped=%s\n' "$1" "$2" >>"$RESULTS"; log "skipped $1: $2"
}
RUN_NOW=1

# --- binaries ------------------------------------------------------------------
BIN="${BOTMESH_BIN:-${BOTMESH_BUILD_DIR:-$ROOT/build}/bin}"
BUILD_DIR="$(dirname "$BIN")"
need_build=0
for b in bm-bench bm-bench-worker bm-relay bm-relay-check bm-bare-http; do [ -x "$BIN/$b" ] || need_build=1; done
if [ $need_build = 1 ]; then
  if [ -n "${BOTMESH_BIN:-}" ]; then echo "bench: $BIN lacks the bench binaries" >&2; exit 1; fi
  log "building into $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null \
    && nice ninja -C "$BUILD_DIR" >"$TMP/build.log" 2>&1 \
    || { tail -30 "$TMP/build.log" >&2; echo "bench: build failed" >&2; exit 1; }
fi
have() { [ -x "$BIN/$1" ]; }
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)
SANITIZED=$(grep -Eq '^BM_(ASAN|UBSAN|TSAN):BOOL=ON' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null && echo yes || echo no)
[ "$SANITIZED" = yes ] && log "warning: $BUILD_DIR is a sanitizer build: figures are not representative"

# botmesh-worker --noop if it is there, else the bench's own no-op worker
WORKER_KIND=none
if have botmesh-worker && "$BIN/botmesh-worker" --help 2>&1 | grep -q -- '--noop'; then
  WORKER_KIND=botmesh-worker
elif have bm-bench-worker; then
  WORKER_KIND=bm-bench-worker
fi

# --- the npm peers ---------------------------------------------------------------
if want throughput || want bulk || want latency || want http || want bots; then
  if command -v node >/dev/null && command -v npm >/dev/null; then
    peers_ok() { (cd "$PEERS" && node -e 'require("bullmq"); require("express"); require("ioredis")') >/dev/null 2>&1; }
    if ! peers_ok; then
      log "installing the npm peers (npm ci in bench/peers)"
      (cd "$PEERS" && timeout 180 npm ci --no-audit --no-fund --loglevel=error --prefer-offline \
         --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 \
         --fetch-timeout=30000) >"$TMP/npm.log" 2>&1 \
        || { log "npm ci failed:"; tail -3 "$TMP/npm.log" >&2; }
    fi
    peers_ok && NODE_OK=1
  fi
  [ $NODE_OK = 1 ] || log "BullMQ / Express peers unavailable: their cases are skipped"
fi
command -v wrk >/dev/null || log "wrk not found: HTTP cases are skipped"

# --- services --------------------------------------------------------------------
REDIS_PORT="" REDIS_PID=""
start_redis() {   # fresh redis-server, AOF everysec, no RDB snapshots
  REDIS_PORT=$(free_port)
  local dir="$TMP/redis-$REDIS_PORT"; mkdir -p "$dir"
  spawn "redis-$REDIS_PORT" -- redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
    --save "" --appendonly yes --appendfsync everysec --daemonize no
  REDIS_PID=$LAST_PID
  local i
  for i in $(seq 1 100); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  log "redis-server did not start"; return 1
}
REDIS_CMD="redis-server --port PORT --bind 127.0.0.1 --save \"\" --appendonly yes --appendfsync everysec"

BROKER_EP="" BROKER_PID="" BROKER_ENV=()
start_broker() {   # start_broker redis|none [ENV=VALUE...]
  local port; port=$(free_port)
  [ "$1" = redis ] || REDIS_PID=""
  BROKER_EP="tcp://127.0.0.1:$port"
  local redis_url=none
  [ "$1" = redis ] && redis_url="redis://127.0.0.1:$REDIS_PORT/0"
  shift
  BROKER_ENV=(BROKER_ENDPOINT="$BROKER_EP" REDIS_URL="$redis_url" BROKER_METRICS_PORT="$(free_port)"
              LOG_LEVEL=warn MAX_PYTHON_BOTS=100000 MAX_BOTS_DEFAULT=100000 "$@")
  spawn "broker-$port" "${BROKER_ENV[@]}" -- "$BIN/botmesh-broker"
  BROKER_PID=$LAST_PID
}

WORKER_PIDS=()
start_workers() {   # start_workers COUNT CREDIT TYPES (comma list); WORKER_PIDS
  local n=$1 credit=$2 types=$3 i
  WORKER_PIDS=()
  for (( i=0; i<n; i++ )); do
    if [ $WORKER_KIND = botmesh-worker ] && [[ "$types" != *,* ]]; then
      spawn "worker-$i-$$" BROKER_ENDPOINT="$BROKER_EP" LOG_LEVEL=warn -- \
        "$BIN/botmesh-worker" --type "$types" --concurrency "$credit" --noop
    else
      spawn "worker-$i-$$" -- "$BIN/bm-bench-worker" noop --endpoint "$BROKER_EP" \
        --types "$types" --credit "$credit"
    fi
    WORKER_PIDS+=("$LAST_PID")
  done
}
start_batch_workers() {   # start_batch_workers COUNT CREDIT TYPES; WORKER_PIDS
  local n=$1 credit=$2 types=$3 i
  WORKER_PIDS=()
  for (( i=0; i<n; i++ )); do
    spawn "worker-$i-$$" -- "$BIN/bm-bench-worker" noop --endpoint "$BROKER_EP" --types "$types" \
      --credit "$credit" --batch
    WORKER_PIDS+=("$LAST_PID")
  done
}
worker_cmd_text() {
  if [ $WORKER_KIND = botmesh-worker ] && [[ "$1" != *,* ]]; then
    echo "BROKER_ENDPOINT=EP botmesh-worker --type $1 --concurrency $CREDIT --noop"
  else
    echo "bm-bench-worker noop --endpoint EP --types $1 --credit $CREDIT"
  fi
}

broker_env_text() {
  local e out="" ; for e in "${BROKER_ENV[@]}"; do
    case "$e" in BROKER_ENDPOINT=*) out+="BROKER_ENDPOINT=tcp://127.0.0.1:PORT " ;;
                 BROKER_METRICS_PORT=*) out+="BROKER_METRICS_PORT=PORT2 " ;;
                 REDIS_URL=redis*) out+="REDIS_URL=redis://127.0.0.1:PORT/0 " ;;
                 *) out+="$e " ;; esac
  done
  echo "${out}botmesh-broker"
}

# ==================================================================================
# 1-3. Throughput: broker without and with Redis, BullMQ, the bare relay
# ==================================================================================
case_broker_throughput() {   # redis|none [bulk]: bulk = SUBMIT_MANY of BULK_BATCH jobs
  local mode=$1 case="tp_broker_$1" r batch=() batch_text="" window=$WINDOW
  if [ "${2:-}" = bulk ]; then
    case="tp_broker_$1_bulk" batch=(--batch "$BULK_BATCH") batch_text=" --batch $BULK_BATCH"
    window=$((BULK_WINDOW * BULK_BATCH))
  fi
  if ! have botmesh-broker || [ $WORKER_KIND = none ]; then skip_case "$case" "botmesh-broker not built"; return; fi
  for r in $RUN_NOW; do
    [ "$mode" = redis ] && { start_redis || { FAILED=1; stop_all; continue; }; }
    start_broker "$mode"
    local wtext
    if [ ${#batch[@]} -gt 0 ]; then
      # Batches end to end: workers that take JOB_MANY and answer DONE_MANY
      start_batch_workers "$WORKERS" "$CREDIT" python
      wtext="bm-bench-worker noop --endpoint EP --types python --credit $CREDIT --batch"
    else
      start_workers "$WORKERS" "$CREDIT" python
      wtext=$(worker_cmd_text python)
    fi
    local drv=("$BIN/bm-bench" throughput --endpoint "$BROKER_EP" --jobs "$JOBS" --window "$window" --wait-workers "$WORKERS" "${batch[@]}")
    record_cmd "$case" "$( [ "$mode" = redis ] && echo "$REDIS_CMD; ")$(broker_env_text); ${WORKERS}x $wtext; bm-bench throughput --endpoint EP --jobs $JOBS --window $window --wait-workers $WORKERS$batch_text"
    watch_stack
    measure "$case" "$r" "$case-$r" "${drv[@]}"
    stop_all
  done
}

# CPU_WATCH for the broker, its Redis and the workers
watch_stack() {
  local p
  CPU_WATCH="broker:$BROKER_PID"
  [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null && CPU_WATCH+=" redis:$REDIS_PID"
  for p in "${WORKER_PIDS[@]+"${WORKER_PIDS[@]}"}"; do CPU_WATCH+=" workers:$p"; done
}

case_bullmq_throughput() {   # [best]: the issue's setting, or the best one found
  local case=tp_bullmq r conc=$BULLMQ_CONCURRENCY inflight=$BULLMQ_INFLIGHT
  if [ "${1:-}" = best ]; then case=tp_bullmq_best conc=$BULLMQ_BEST_CONCURRENCY inflight=$BULLMQ_BEST_INFLIGHT; fi
  [ $NODE_OK = 1 ] || { skip_case "$case" "npm peers unavailable"; return; }
  for r in $RUN_NOW; do
    start_redis || { FAILED=1; stop_all; continue; }
    local drv=(node "$PEERS/bullmq_throughput.js" --redis "$REDIS_PORT" --jobs "$JOBS" --batch "$BULLMQ_BATCH"
               --concurrency "$conc" --workers 1 --inflight "$inflight")
    record_cmd "$case" "$REDIS_CMD; node bench/peers/bullmq_throughput.js --redis PORT --jobs $JOBS --batch $BULLMQ_BATCH --concurrency $conc --workers 1 --inflight $inflight"
    CPU_WATCH="redis:$REDIS_PID"
    measure "$case" "$r" "$case-$r" "${drv[@]}"
    stop_all
  done
}

start_relay() {
  local front back
  front="tcp://127.0.0.1:$(free_port)"; back="tcp://127.0.0.1:$(free_port)"
  spawn "relay-$$" -- "$BIN/bm-relay" relay --front "$front" --back "$back"
  RELAY_WATCH="broker:$LAST_PID"
  spawn "relay-worker-$$" -- "$BIN/bm-relay" worker --connect "$back"
  RELAY_WATCH+=" workers:$LAST_PID"
  RELAY_EP=$front
}

case_relay_throughput() {
  local case=tp_relay r
  for r in $RUN_NOW; do
    start_relay
    record_cmd "$case" "bm-relay relay --front EP1 --back EP2; bm-relay worker --connect EP2; bm-relay drive --connect EP1 --jobs $JOBS --window $WINDOW"
    CPU_WATCH=$RELAY_WATCH
    measure "$case" "$r" "$case-$r" "$BIN/bm-relay" drive --connect "$RELAY_EP" --jobs "$JOBS" --window "$WINDOW"
    stop_all
  done
}

# The relay's check: an independent bare relay (libzmq's zmq_proxy, ROUTER
# echo workers, its own driver, same message shape and in-flight window).
# bm-relay is sound when the two rates agree within the run's noise.
case_relay_check_throughput() {
  local case=tp_relay_check r front back
  have bm-relay-check || { skip_case "$case" "bm-relay-check not built"; return; }
  for r in $RUN_NOW; do
    front="tcp://127.0.0.1:$(free_port)"; back="tcp://127.0.0.1:$(free_port)"
    spawn "relay-check-$$" -- "$BIN/bm-relay-check" proxy --front "$front" --back "$back"
    CPU_WATCH="broker:$LAST_PID"
    spawn "relay-check-worker-$$" -- "$BIN/bm-relay-check" worker --connect "$back"
    CPU_WATCH+=" workers:$LAST_PID"
    record_cmd "$case" "bm-relay-check proxy --front EP1 --back EP2; bm-relay-check worker --connect EP2; bm-relay-check drive --connect EP1 --jobs $JOBS --window $WINDOW"
    measure "$case" "$r" "$case-$r" "$BIN/bm-relay-check" drive --connect "$front" --jobs "$JOBS" --window "$WINDOW"
    stop_all
  done
}

# ==================================================================================
# 4. Latency at light load: one job at a time
# ==================================================================================
case_broker_latency() {   # redis|none
  local mode=$1 case="lat_broker_$1" r
  if ! have botmesh-broker || [ $WORKER_KIND = none ]; then skip_case "$case" "botmesh-broker not built"; return; fi
  for r in $RUN_NOW; do
    [ "$mode" = redis ] && { start_redis || { FAILED=1; stop_all; continue; }; }
    start_broker "$mode"
    start_workers 1 "$CREDIT" python
    record_cmd "$case" "$( [ "$mode" = redis ] && echo "$REDIS_CMD; ")$(broker_env_text); $(worker_cmd_text python); bm-bench latency --endpoint EP --jobs $LAT_JOBS --warmup $LAT_WARMUP --wait-workers 1"
    measure "$case" "$r" "$case-$r" "$BIN/bm-bench" latency --endpoint "$BROKER_EP" --jobs "$LAT_JOBS" \
      --warmup "$LAT_WARMUP" --wait-workers 1
    stop_all
  done
}

case_bullmq_latency() {
  local case=lat_bullmq r
  [ $NODE_OK = 1 ] || { skip_case "$case" "npm peers unavailable"; return; }
  for r in $RUN_NOW; do
    start_redis || { FAILED=1; stop_all; continue; }
    record_cmd "$case" "$REDIS_CMD; node bench/peers/bullmq_latency.js --redis PORT --jobs $LAT_JOBS --warmup $LAT_WARMUP"
    measure "$case" "$r" "$case-$r" node "$PEERS/bullmq_latency.js" --redis "$REDIS_PORT" --jobs "$LAT_JOBS" --warmup "$LAT_WARMUP"
    stop_all
  done
}

case_relay_latency() {
  local case=lat_relay r
  for r in $RUN_NOW; do
    start_relay
    record_cmd "$case" "bm-relay relay ...; bm-relay worker ...; bm-relay drive --connect EP1 --latency --jobs $LAT_JOBS --warmup $LAT_WARMUP"
    measure "$case" "$r" "$case-$r" "$BIN/bm-relay" drive --connect "$RELAY_EP" --latency --jobs "$LAT_JOBS" --warmup "$LAT_WARMUP"
    stop_all
  done
}

# ==================================================================================
# 5. HTTP: wrk against POST /invoke
# ==================================================================================
wait_http() {   # wait_http PORT: any HTTP answer within 15 s
  local i
  for i in $(seq 1 150); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$1/" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
wait_line() {   # wait_line FILE PATTERN: the first line matching, within 15 s
  local i
  for i in $(seq 1 150); do
    grep -m1 "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# run_wrk CASE RUN PORT [SCRIPT PATH CONNECTIONS BATCH]: wrk -> RESULT rps=.. p99_ms=..
# non2xx=.. errors=.. (batch=N: each request carries N jobs)
run_wrk() {
  local case=$1 run=$2 port=$3 out="$TMP/$1-$2.wrk"
  local script=${4:-invoke.lua} path=${5:-/invoke} conn=${6:-$WRK_CONN} batch=${7:-}
  local cmd=(wrk -t2 -c"$conn" -d"${WRK_SECONDS}s" --latency -s "$BENCH/$script" "http://127.0.0.1:$port$path")
  record_cmd "$case.wrk" "$( [ -n "$batch" ] && echo "BENCH_BATCH=$batch ")wrk -t2 -c$conn -d${WRK_SECONDS}s --latency -s bench/$script http://127.0.0.1:PORT$path"
  # Warm-up (connections, threads, JIT), then the measured run
  wrk -t2 -c"$conn" -d1s -s "$BENCH/$script" "http://127.0.0.1:$port$path" >/dev/null 2>&1
  # WRK_SETTLE: a command run between them (the batch case: the warm-up's
  # jobs finished, so that the measured run's CPU is its own jobs')
  [ -n "${WRK_SETTLE:-}" ] && $WRK_SETTLE
  cpu_watch_start
  if [ -x /usr/bin/time ]; then /usr/bin/time -f 'TIME %U %S' -o "$out.time" "${cmd[@]}" >"$out" 2>&1
  else "${cmd[@]}" >"$out" 2>&1; fi
  local cpu; cpu=$(cpu_watch_end)
  CPU_WATCH=""
  [ -s "$out.time" ] && cpu+=" cpu_driver_s=$(awk '/^TIME/ {printf "%.2f", $2 + $3}' "$out.time")"
  local rps p99 non2xx errs requests
  requests=$(awk '/requests in/ {print $1}' "$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out"); non2xx=${non2xx:-0}
  errs=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' "$out"); errs=${errs:-0}
  if [ -z "$rps" ]; then
    log "FAILED: $case run $run: wrk gave no rate"; cat "$out" >&2
    printf '%s\t%s\tfailed=1\n' "$case" "$run" >>"$RESULTS"; FAILED=1; return 1
  fi
  printf '%s\t%s\trps=%s p99_ms=%s non2xx=%s errors=%s requests=%s%s%s\n' "$case" "$run" "$rps" "$p99" \
    "$non2xx" "$errs" "${requests:-0}" "$( [ -n "$batch" ] && echo " batch=$batch")" "$cpu" >>"$RESULTS"
  log "$case run $run: rps=$rps p99_ms=$p99 non2xx=$non2xx errors=$errs$( [ -n "$batch" ] && echo " (x$batch jobs)")"
  if [ "$non2xx" != 0 ]; then
    log "warning: $case: $non2xx answers were not 2xx"
    curl -s -XPOST -H 'Content-Type: application/json' \
      -d '{"botType":"python","payload":{"seq":1}}' "http://127.0.0.1:$port/invoke" >&2; echo >&2
  fi
}

case_gateway_http() {   # redis|none
  local mode=$1 case="http_gateway_$1" r
  if ! have botmesh-gateway || ! have botmesh-broker; then skip_case "$case" "botmesh-gateway not built"; return; fi
  command -v wrk >/dev/null || { skip_case "$case" "no wrk"; return; }
  for r in $RUN_NOW; do
    [ "$mode" = redis ] && { start_redis || { FAILED=1; stop_all; continue; }; }
    start_broker "$mode" MAX_QUEUE=2000000
    start_workers "$WORKERS" "$CREDIT" python
    "$BIN/bm-bench" ping --endpoint "$BROKER_EP" --wait-workers "$WORKERS" >/dev/null 2>&1 \
      || { log "FAILED: $case: broker not ready"; FAILED=1; stop_all; continue; }
    local port; port=$(free_port)
    local redis_url=none; [ "$mode" = redis ] && redis_url="redis://127.0.0.1:$REDIS_PORT/0"
    local genv=(API_GATEWAY_PORT="$port" GATEWAY_LISTEN=127.0.0.1 BROKER_ENDPOINT="$BROKER_EP"
                REDIS_URL="$redis_url" GATEWAY_THREADS=$((WRK_CONN + 16)) RATE_LIMIT_RPS=0 LOG_LEVEL=warn)
    spawn "gateway-$case-$r" "${genv[@]}" -- "$BIN/botmesh-gateway"
    local gw_pid=$LAST_PID
    record_cmd "$case" "$( [ "$mode" = redis ] && echo "$REDIS_CMD; ")$(broker_env_text); ${WORKERS}x $(worker_cmd_text python); API_GATEWAY_PORT=PORT GATEWAY_LISTEN=127.0.0.1 BROKER_ENDPOINT=EP REDIS_URL=$( [ "$mode" = redis ] && echo 'redis://127.0.0.1:PORT/0' || echo none) GATEWAY_THREADS=$((WRK_CONN + 16)) RATE_LIMIT_RPS=0 LOG_LEVEL=warn botmesh-gateway"
    watch_stack; CPU_WATCH+=" gateway:$gw_pid"
    if wait_http "$port"; then run_wrk "$case" "$r" "$port"
    else log "FAILED: $case: gateway did not answer"; tail -20 "$TMP/gateway-$case-$r.log" >&2; FAILED=1; fi
    stop_all
  done
}

# Every job of the broker finished: Redis's unfinished set empty (at most 60 s)
settle_unfinished() {
  local i
  for i in $(seq 1 600); do
    [ "$(redis-cli -p "$REDIS_PORT" SCARD 'botmesh:{bm}:unfinished' 2>/dev/null)" = 0 ] && return 0
    sleep 0.1
  done
  log "warning: the warm-up's jobs still unfinished after 60 s"
}

# POST /invoke/batch of BATCH jobs, durable, to workers that take JOB_MANY and answer DONE_MANY.
# A 1 s warm-up leaves up to tens of thousands of jobs queued or running: the
# measured run starts once they are done (otherwise their Redis writes and
# runs were counted against the measured run's jobs: 8-20 % more per job).
case_gateway_batch() {
  local case=http_gateway_batch r
  if ! have botmesh-gateway || ! have botmesh-broker; then skip_case "$case" "botmesh-gateway not built"; return; fi
  command -v wrk >/dev/null || { skip_case "$case" "no wrk"; return; }
  for r in $RUN_NOW; do
    start_redis || { FAILED=1; stop_all; continue; }
    start_broker redis MAX_QUEUE=2000000
    start_batch_workers "$WORKERS" "$CREDIT" python
    "$BIN/bm-bench" ping --endpoint "$BROKER_EP" --wait-workers "$WORKERS" >/dev/null 2>&1 \
      || { log "FAILED: $case: broker not ready"; FAILED=1; stop_all; continue; }
    local port; port=$(free_port)
    local genv=(API_GATEWAY_PORT="$port" GATEWAY_LISTEN=127.0.0.1 BROKER_ENDPOINT="$BROKER_EP"
                REDIS_URL=none GATEWAY_THREADS=$((BATCH_CONN + 16)) RATE_LIMIT_RPS=0 LOG_LEVEL=warn)
    spawn "gateway-$case-$r" "${genv[@]}" -- "$BIN/botmesh-gateway"
    local gw_pid=$LAST_PID
    record_cmd "$case" "$REDIS_CMD; $(broker_env_text); ${WORKERS}x bm-bench-worker noop --endpoint EP --types python --credit $CREDIT --batch; API_GATEWAY_PORT=PORT GATEWAY_LISTEN=127.0.0.1 BROKER_ENDPOINT=EP REDIS_URL=none GATEWAY_THREADS=$((BATCH_CONN + 16)) RATE_LIMIT_RPS=0 LOG_LEVEL=warn botmesh-gateway"
    watch_stack; CPU_WATCH+=" gateway:$gw_pid"
    if wait_http "$port"; then
      WRK_SETTLE=settle_unfinished BENCH_BATCH=$BATCH run_wrk "$case" "$r" "$port" invoke_batch.lua \
        /invoke/batch "$BATCH_CONN" "$BATCH"
    else log "FAILED: $case: gateway did not answer"; tail -20 "$TMP/gateway-$case-$r.log" >&2; FAILED=1; fi
    stop_all
  done
}

case_express_http() {
  local case=http_express r
  [ $NODE_OK = 1 ] || { skip_case "$case" "npm peers unavailable"; return; }
  command -v wrk >/dev/null || { skip_case "$case" "no wrk"; return; }
  for r in $RUN_NOW; do
    start_redis || { FAILED=1; stop_all; continue; }
    local port; port=$(free_port)
    spawn "express-$r" -- node "$PEERS/express_gateway.js" --redis "$REDIS_PORT" --port "$port"
    CPU_WATCH="gateway:$LAST_PID redis:$REDIS_PID"
    spawn "drain-$r" -- node "$PEERS/bullmq_drain.js" --redis "$REDIS_PORT" --concurrency "$BULLMQ_CONCURRENCY"
    CPU_WATCH+=" workers:$LAST_PID"
    record_cmd "$case" "$REDIS_CMD; node bench/peers/express_gateway.js --redis PORT --port HTTP; node bench/peers/bullmq_drain.js --redis PORT --concurrency $BULLMQ_CONCURRENCY"
    if wait_line "$TMP/express-$r.log" '^listening' >/dev/null && wait_line "$TMP/drain-$r.log" '^ready' >/dev/null; then
      run_wrk "$case" "$r" "$port"
    else log "FAILED: $case: express gateway did not start"; tail -20 "$TMP/express-$r.log" >&2; FAILED=1; fi
    stop_all
  done
}

case_bare_http() {
  local case=http_bare r
  command -v wrk >/dev/null || { skip_case "$case" "no wrk"; return; }
  for r in $RUN_NOW; do
    spawn "bare-$r" -- "$BIN/bm-bare-http" --threads $((WRK_CONN + 16))
    CPU_WATCH="gateway:$LAST_PID"
    record_cmd "$case" "bm-bare-http --threads $((WRK_CONN + 16))"
    local line port
    if line=$(wait_line "$TMP/bare-$r.log" '^listening'); then
      port=${line#listening }
      run_wrk "$case" "$r" "$port"
    else log "FAILED: $case: bm-bare-http did not start"; FAILED=1; fi
    stop_all
  done
}

# ==================================================================================
# 6. Scale: memory per queued job, idle workers, many bot types
# ==================================================================================
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

case_memory() {
  local case=mem_queued r
  have botmesh-broker || { skip_case "$case" "botmesh-broker not built"; return; }
  for r in $RUN_NOW; do
    # No Redis: the broker's own memory only.  No worker serves "held".
    start_broker none MAX_QUEUE=$((FILL_LARGE + 1000)) MAX_HELD_BOTS=1
    "$BIN/bm-bench" ping --endpoint "$BROKER_EP" >/dev/null 2>&1 || { log "FAILED: $case: broker not ready"; FAILED=1; stop_all; continue; }
    local base small large line
    base=$(rss_kb "$BROKER_PID")
    record_cmd "$case" "$(broker_env_text); bm-bench fill --endpoint EP --types held --jobs $FILL_SMALL; VmRSS; bm-bench fill --endpoint EP --types held --jobs $((FILL_LARGE - FILL_SMALL)); VmRSS"
    if measure "$case-fill-small" "$r" "$case-s-$r" "$BIN/bm-bench" fill --endpoint "$BROKER_EP" --types held --jobs "$FILL_SMALL"; then
      small=$(rss_kb "$BROKER_PID")
      if measure "$case-fill-large" "$r" "$case-l-$r" "$BIN/bm-bench" fill --endpoint "$BROKER_EP" --types held --jobs $((FILL_LARGE - FILL_SMALL)); then
        large=$(rss_kb "$BROKER_PID")
        printf '%s\t%s\tbase_kb=%s small_kb=%s large_kb=%s small_jobs=%s large_jobs=%s\n' \
          "$case" "$r" "$base" "$small" "$large" "$FILL_SMALL" "$FILL_LARGE" >>"$RESULTS"
        log "$case run $r: RSS base ${base} kB, ${FILL_SMALL} jobs ${small} kB, ${FILL_LARGE} jobs ${large} kB"
      fi
    fi
    stop_all
  done
}

#  Delayed jobs: the broker's memory per delayed job (due in an hour) and the
#  rate they are accepted at as the due-time heap grows from FILL_SMALL to
#  FILL_LARGE jobs (O(log n) a job: the rate barely moves).
case_delayed() {
  local case=mem_delayed r
  have botmesh-broker || { skip_case "$case" "botmesh-broker not built"; return; }
  for r in $RUN_NOW; do
    start_broker none MAX_HELD_BOTS=1
    "$BIN/bm-bench" ping --endpoint "$BROKER_EP" >/dev/null 2>&1 || { log "FAILED: $case: broker not ready"; FAILED=1; stop_all; continue; }
    local base small large
    base=$(rss_kb "$BROKER_PID")
    record_cmd "$case" "$(broker_env_text); bm-bench fill --endpoint EP --types held --delay-ms 3600000 --jobs $FILL_SMALL; VmRSS; bm-bench fill ... --jobs $((FILL_LARGE - FILL_SMALL)); VmRSS"
    if measure "$case-fill-small" "$r" "$case-s-$r" "$BIN/bm-bench" fill --endpoint "$BROKER_EP" --types held --delay-ms 3600000 --jobs "$FILL_SMALL"; then
      small=$(rss_kb "$BROKER_PID")
      if measure "$case-fill-large" "$r" "$case-l-$r" "$BIN/bm-bench" fill --endpoint "$BROKER_EP" --types held --delay-ms 3600000 --jobs $((FILL_LARGE - FILL_SMALL)); then
        large=$(rss_kb "$BROKER_PID")
        printf '%s\t%s\tbase_kb=%s small_kb=%s large_kb=%s small_jobs=%s large_jobs=%s\n' \
          "$case" "$r" "$base" "$small" "$large" "$FILL_SMALL" "$FILL_LARGE" >>"$RESULTS"
        log "$case run $r: RSS base ${base} kB, ${FILL_SMALL} delayed jobs ${small} kB, ${FILL_LARGE} delayed jobs ${large} kB ($(( (large - base) * 1024 / FILL_LARGE )) B a job)"
      fi
    fi
    stop_all
  done
}

case_idle_workers() {
  local case=idle_workers r
  have botmesh-broker || { skip_case "$case" "botmesh-broker not built"; return; }
  for r in $RUN_NOW; do
    start_broker none
    record_cmd "$case" "$(broker_env_text); bm-bench-worker idle --endpoint EP --workers $IDLE_WORKERS --seconds $IDLE_SECONDS --broker-pid PID"
    measure "$case" "$r" "$case-$r" "$BIN/bm-bench-worker" idle --endpoint "$BROKER_EP" \
      --workers "$IDLE_WORKERS" --seconds "$IDLE_SECONDS" --broker-pid "$BROKER_PID"
    stop_all
  done
}

case_types() {   # throughput with M bot types, one no-op worker serving them all
  local m=$1 case="tp_types_$1" r
  have botmesh-broker || { skip_case "$case" "botmesh-broker not built"; return; }
  local types; types=$(seq -s, -f "bench%g" 0 $((m - 1)))
  for r in $RUN_NOW; do
    start_broker none
    local i
    WORKER_PIDS=()
    for (( i=0; i<WORKERS; i++ )); do
      spawn "types-worker-$i" -- "$BIN/bm-bench-worker" noop --endpoint "$BROKER_EP" --types "$types" --credit "$CREDIT"
      WORKER_PIDS+=("$LAST_PID")
    done
    # bm-bench-worker registers one worker per 16 types (the broker's limit per READY)
    local links=$(( WORKERS * ((m + 15) / 16) ))
    record_cmd "$case" "$(broker_env_text); ${WORKERS}x bm-bench-worker noop --endpoint EP --types bench0,...,bench$((m - 1)) --credit $CREDIT; bm-bench throughput --endpoint EP --jobs $JOBS --window $WINDOW --type-count $m --type-prefix bench --wait-workers $links"
    watch_stack
    measure "$case" "$r" "$case-$r" "$BIN/bm-bench" throughput --endpoint "$BROKER_EP" --jobs "$JOBS" \
      --window "$WINDOW" --type-count "$m" --type-prefix bench --wait-workers "$links"
    stop_all
  done
}

# ==================================================================================
# HA: the cost of fencing (A/B) and the failover time
# ==================================================================================
# ha_unfenced / ha_fenced: the durable throughput case with one broker, without
# and with BROKER_HA=redis (its write groups fenced by the lease epoch); the
# two alternate which goes first from run to run.
case_ha_fencing() {
  local r variant order=(unfenced fenced)
  if ! have botmesh-broker || [ $WORKER_KIND = none ]; then
    skip_case ha_unfenced "botmesh-broker not built"; skip_case ha_fenced "botmesh-broker not built"; return
  fi
  for r in $RUN_NOW; do
    if [ $((r % 2)) = 0 ]; then order=(fenced unfenced); else order=(unfenced fenced); fi
    for variant in "${order[@]}"; do
      local case="ha_$variant" extra=()
      [ $variant = fenced ] && extra=(BROKER_HA=redis)
      start_redis || { FAILED=1; stop_all; continue; }
      start_broker redis "${extra[@]}"
      start_workers "$WORKERS" "$CREDIT" python
      local drv=("$BIN/bm-bench" throughput --endpoint "$BROKER_EP" --jobs "$JOBS" --window "$WINDOW" --wait-workers "$WORKERS")
      record_cmd "$case" "$REDIS_CMD; $(broker_env_text); ${WORKERS}x $(worker_cmd_text python); bm-bench throughput --endpoint EP --jobs $JOBS --window $WINDOW --wait-workers $WORKERS"
      watch_stack
      measure "$case" "$r" "$case-$r" "${drv[@]}"
      stop_all
    done
  done
}

case_ha_failover() {
  local case=ha_failover r
  if ! have botmesh-broker || ! have botmesh-worker; then skip_case "$case" "botmesh-broker or botmesh-worker not built"; return; fi
  for r in $RUN_NOW; do
    start_redis || { FAILED=1; stop_all; continue; }
    record_cmd "$case" "$REDIS_CMD; 2x BROKER_HA=redis BROKER_LEASE_MS=2000 botmesh-broker; BROKER_ENDPOINT=EP1,EP2 botmesh-worker --type python --noop; bench/failover.py --kills $FAILOVER_KILLS (SIGKILL the leader, time until the other leads and until a job submitted to it completed)"
    CPU_WATCH="redis:$REDIS_PID"
    measure "$case" "$r" "$case-$r" "$PY" "$BENCH/failover.py" --bin "$BIN" --redis-port "$REDIS_PORT" --kills "$FAILOVER_KILLS"
    stop_all
  done
}

# ==================================================================================
# Run
# ==================================================================================
T0=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "bench: $([ $QUICK = 1 ] && echo quick || echo full) run, $RUNS run(s) per case, binaries in $BIN, workers: $WORKER_KIND"
# Runs interleave: run 1 of every case of a group, then run 2, ...: so
# that a slow minute of the machine does not fall on one case only.
for RUN_NOW in $(seq 1 "$RUNS"); do
  if want throughput; then
    case_broker_throughput none
    case_broker_throughput redis
    case_broker_throughput none bulk
    case_broker_throughput redis bulk
    case_bullmq_throughput
    [ $QUICK = 1 ] || case_bullmq_throughput best
    case_relay_throughput
    case_relay_check_throughput
  elif want bulk; then
    case_broker_throughput none bulk
    case_broker_throughput redis bulk
    case_bullmq_throughput best
  fi
done
for RUN_NOW in $(seq 1 "$RUNS"); do
  if want latency; then
    case_broker_latency none
    case_broker_latency redis
    case_bullmq_latency
    case_relay_latency
  fi
done
for RUN_NOW in $(seq 1 "$RUNS"); do
  if want http; then
    case_gateway_http redis
    case_gateway_batch
    case_gateway_http none
    case_express_http
    case_bare_http
  fi
done
for RUN_NOW in $(seq 1 "$RUNS"); do
  if want scale; then
    case_memory
    case_delayed
    case_idle_workers
    for m in $TYPE_COUNTS; do case_types "$m"; done
  fi
done
for RUN_NOW in $(seq 1 "$RUNS"); do
  if want ha; then
    case_ha_fencing
    # Failover: one series of kills is enough (each is timed on its own).
    [ "$RUN_NOW" = 1 ] && case_ha_failover
  fi
done
if want record; then
  RECORD_ARGS=(--bin "$BIN" --runs "$RUNS")
  [ $QUICK = 1 ] && RECORD_ARGS+=(--quick)
  [ -n "${BENCH_BEFORE_BIN:-}" ] && RECORD_ARGS+=(--before "$BENCH_BEFORE_BIN")
  [ $WRITE = 1 ] && RECORD_ARGS+=(--write "$ROOT/docs/benchmarks.md")
  "$PY" "$BENCH/record.py" "${RECORD_ARGS[@]}" || FAILED=1
  # Only the record group: its section is written, not the whole page.
  [ "$ONLY" = record ] && { log "bench: done in $(( $(date +%s) - T0 ))s"; [ $FAILED = 1 ] && exit 1; exit 0; }
fi
if want bots; then
  BOTS_ARGS=(--bin "$BIN")
  [ $QUICK = 1 ] && BOTS_ARGS+=(--quick)
  [ $WRITE = 1 ] && BOTS_ARGS+=(--write "$ROOT/docs/benchmarks.md")
  "$PY" "$BENCH/bots.py" "${BOTS_ARGS[@]}" || FAILED=1
  # Only the bots group: its section is written, not the whole page.
  [ "$ONLY" = bots ] && { log "bench: done in $(( $(date +%s) - T0 ))s"; [ $FAILED = 1 ] && exit 1; exit 0; }
fi
ELAPSED=$(( $(date +%s) - T0 ))

# --- the machine and the versions -----------------------------------------------------
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode=$([ $QUICK = 1 ] && echo quick || echo full)"
  echo "runs=$RUNS"
  echo "nice=$NICE"
  echo "load_before=$LOAD_BEFORE"
  echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "elapsed_s=$ELAPSED"
  echo "cores=$(nproc)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "os=$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}")"
  echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)')"
  echo "build=$BUILD_TYPE$([ "$SANITIZED" = yes ] && echo ' + sanitizers (NOT representative)')"
  echo "cc=$(${CC:-cc} --version 2>/dev/null | head -1)"
  echo "redis=$(redis-server --version 2>/dev/null | sed 's/^Redis server //; s/ sha=.*//')"
  echo "libzmq=$(pkg-config --modversion libzmq 2>/dev/null)"
  echo "czmq=$(pkg-config --modversion libczmq 2>/dev/null)"
  echo "msgpack-c=$(pkg-config --modversion msgpack 2>/dev/null)"
  echo "hiredis=$(pkg-config --modversion hiredis 2>/dev/null)"
  echo "jansson=$(pkg-config --modversion jansson 2>/dev/null)"
  echo "civetweb=$(dpkg-query -W -f='${Version}' libcivetweb-dev 2>/dev/null)"
  echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "node=$(node --version 2>/dev/null)"
  if [ $NODE_OK = 1 ]; then
    for p in bullmq ioredis express; do
      echo "$p=$(cd "$PEERS" && node -p "require('$p/package.json').version" 2>/dev/null)"
    done
  fi
  echo "bin=${BIN#"$ROOT"/}"
  echo "worker=$WORKER_KIND"
  echo "workers=$WORKERS"
  echo "credit=$CREDIT"
  echo "window=$WINDOW"
  echo "bulk_window=$BULK_WINDOW"
  echo "jobs=$JOBS"
  echo "lat_jobs=$LAT_JOBS"
  echo "idle_workers=$IDLE_WORKERS"
  echo "wrk_seconds=$WRK_SECONDS"
  echo "wrk_connections=$WRK_CONN"
  echo "batch=$BATCH"
  echo "batch_connections=$BATCH_CONN"
  echo "bullmq_settings=addBulk batches of $BULLMQ_BATCH ($BULLMQ_INFLIGHT in flight), 1 worker process, concurrency $BULLMQ_CONCURRENCY; best found: $BULLMQ_BEST_INFLIGHT batches in flight, concurrency $BULLMQ_BEST_CONCURRENCY"
} >"$META"

REPORT_ARGS=("$RESULTS" "$META" "$COMMANDS")
[ $WRITE = 1 ] && REPORT_ARGS+=(--write "$ROOT/docs/benchmarks.md")
"$PY" "$BENCH/report.py" "${REPORT_ARGS[@]}" || FAILED=1
log "bench: done in ${ELAPSED}s"

if [ $FAILED = 1 ]; then exit 1; fi
if [ $QUICK = 1 ] && [ $NODE_OK = 0 ] && { want throughput || want latency || want http; }; then
  echo "bench: SKIP (the BullMQ / Express peers could not be installed)"; exit 77
fi
exit 0

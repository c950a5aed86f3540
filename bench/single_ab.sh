#!/usr/bin/env bash
# bench/single_ab.sh - the single-message path without Redis by hand, A/B:
# the tp_broker_none case of bench/run.sh (botmesh-broker REDIS_URL=none, two
# `botmesh-worker --noop --concurrency 500`, `bm-bench throughput --window
# 2000`) on fresh processes, once per binary directory given, in rounds.
#
#   bash bench/single_ab.sh [--rounds N] [--jobs J] [--chrt] LABEL=BIN [LABEL=BIN ...]
#   bash bench/single_ab.sh --callgrind [--jobs J] LABEL=BIN [LABEL=BIN ...]
#
# BIN holds botmesh-broker, botmesh-worker and bm-bench (a build's bin/).
# One line per run: jobs/s, CPU µs a job of the broker, of the two workers
# (summed) and of the driver, from /proc/PID/stat and the driver's rusage,
# the load average, and the user-space part of the broker's and the
# workers' µs; medians per label at the end.  Processes run at nice -10 as
# bench/run.sh runs them, or under `chrt -f 20` with --chrt (other work on
# the machine then sets the pace less: steadier figures, bigger batches).
#
# --callgrind: instructions a job instead, which the machine's load does
# not change: the broker and the first worker run under valgrind's
# callgrind, counting from the first SUBMIT to the last RESULT (default
# 20,000 jobs); the worker's count is divided by the jobs it ran.  The
# profiles stay in /tmp/botmesh-single-LABEL/ for callgrind_annotate.
set -uo pipefail

PY=/usr/bin/python3
ROUNDS=6 JOBS="" PRIO=(nice -n -10) CALLGRIND=0 SPECS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --jobs) JOBS=$2; shift ;;
    --chrt) PRIO=(chrt -f 20) ;;
    --callgrind) CALLGRIND=1 ;;
    *=*) SPECS+=("$1") ;;
    *) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
  shift
done
[ ${#SPECS[@]} -gt 0 ] || { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
[ -n "$JOBS" ] || JOBS=$([ $CALLGRIND = 1 ] && echo 20000 || echo 50000)
HZ=$(getconf CLK_TCK)
OUT=$(mktemp -d /tmp/botmesh-single-ab.XXXXXX)

PIDS=()
stop_all() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ticks() { awk -v f="${2:-}" '{print f == "user" ? $14 : $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# start LABEL BIN [PREFIX...]: the broker and two workers; BP, WP, EP.
# PREFIX runs the broker and the first worker (callgrind).
start() {
  local label=$1 bin=$2; shift 2
  EP="tcp://127.0.0.1:$(free_port)"
  env BROKER_ENDPOINT="$EP" REDIS_URL=none BROKER_METRICS_PORT="$(free_port)" LOG_LEVEL=warn \
    MAX_PYTHON_BOTS=100000 MAX_BOTS_DEFAULT=100000 "$@" "$bin/botmesh-broker" >>"$OUT/$label.log" 2>&1 &
  BP=$!; PIDS+=("$BP"); WP=()
  local i
  for i in 1 2; do
    if [ $i = 1 ]; then
      env BROKER_ENDPOINT="$EP" LOG_LEVEL=warn "$@" "$bin/botmesh-worker" --type python \
        --concurrency 500 --noop >>"$OUT/$label.log" 2>&1 &
    else
      env BROKER_ENDPOINT="$EP" LOG_LEVEL=warn "${PRIO[@]}" "$bin/botmesh-worker" --type python \
        --concurrency 500 --noop >>"$OUT/$label.log" 2>&1 &
    fi
    WP+=("$!"); PIDS+=("$!")
  done
  "$bin/bm-bench" ping --endpoint "$EP" --wait-workers 2 --timeout 60 >/dev/null
}

if [ $CALLGRIND = 1 ]; then
  command -v callgrind_control >/dev/null || { echo "single_ab: valgrind is not installed" >&2; exit 1; }
  printf 'label\tjobs\tbroker_instr_per_job\tworker_jobs\tworker_instr_per_job\n'
  for spec in "${SPECS[@]}"; do
    label=${spec%%=*} bin=${spec#*=} dir=/tmp/botmesh-single-${spec%%=*}
    rm -rf "$dir"; mkdir -p "$dir"
    start "$label" "$bin" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/%p" \
      || { echo "single_ab: $label did not start" >&2; stop_all; continue; }
    callgrind_control -i on "$BP" >/dev/null; callgrind_control -i on "${WP[0]}" >/dev/null
    "$bin/bm-bench" throughput --endpoint "$EP" --jobs "$JOBS" --window 2000 --wait-workers 2 \
      --warmup 0 --timeout 600 >"$OUT/res" 2>&1
    callgrind_control -d "$BP" >/dev/null; callgrind_control -d "${WP[0]}" >/dev/null
    stop_all
    broker=$(awk '/^totals:/ {print $2}' "$dir/$BP.1" 2>/dev/null)
    worker=$(awk '/^totals:/ {print $2}' "$dir/${WP[0]}.1" 2>/dev/null)
    ran=$(callgrind_annotate --tree=caller "$dir/${WP[0]}.1" 2>/dev/null \
          | grep -m1 -E '< .*bm_worker.c:s_on_job \(' | sed 's/.*(\([0-9,]*\)x).*/\1/' | tr -d ,)
    awk -v l="$label" -v j="$JOBS" -v b="${broker:-0}" -v w="${worker:-0}" -v n="${ran:-0}" \
      'BEGIN {printf "%s\t%d\t%.0f\t%d\t%.0f\n", l, j, b / j, n, n ? w / n : 0}'
  done
  exit 0
fi

printf 'label\tround\tjobs/s\tbroker_us\tworkers_us\tdriver_us\tload1\tbroker_user_us\tworkers_user_us\n'
for (( r = 1; r <= ROUNDS; r++ )); do
  for spec in "${SPECS[@]}"; do
    label=${spec%%=*} bin=${spec#*=}
    start "$label" "$bin" "${PRIO[@]}" || { echo "single_ab: $label did not start" >&2; stop_all; continue; }
    b0=$(ticks "$BP"); bu0=$(ticks "$BP" user); w0=0 wu0=0
    for p in "${WP[@]}"; do w0=$((w0 + $(ticks "$p"))); wu0=$((wu0 + $(ticks "$p" user))); done
    /usr/bin/time -f 'TIME %U %S' -o "$OUT/time" "${PRIO[@]}" "$bin/bm-bench" throughput \
      --endpoint "$EP" --jobs "$JOBS" --window 2000 --wait-workers 2 >"$OUT/res" 2>&1
    b1=$(ticks "$BP"); bu1=$(ticks "$BP" user); w1=0 wu1=0
    for p in "${WP[@]}"; do w1=$((w1 + $(ticks "$p"))); wu1=$((wu1 + $(ticks "$p" user))); done
    stop_all
    rate=$(sed -n 's/^RESULT .*rate=\([0-9]*\).*/\1/p' "$OUT/res")
    [ -n "$rate" ] || { echo "single_ab: $label round $r failed: $(tail -1 "$OUT/res")" >&2; continue; }
    awk -v l="$label" -v r="$r" -v rate="$rate" -v b=$((b1 - b0)) -v w=$((w1 - w0)) \
        -v bu=$((bu1 - bu0)) -v wu=$((wu1 - wu0)) -v hz="$HZ" -v j="$JOBS" \
        -v d="$(awk '/^TIME/ {print $2 + $3}' "$OUT/time")" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
      'BEGIN {printf "%s\t%d\t%s\t%.1f\t%.1f\t%.1f\t%s\t%.1f\t%.1f\n", l, r, rate,
              b / hz / j * 1e6, w / hz / j * 1e6, d / j * 1e6, load, bu / hz / j * 1e6, wu / hz / j * 1e6}' \
      | tee -a "$OUT/rows"
  done
done
echo "== medians"
for spec in "${SPECS[@]}"; do
  label=${spec%%=*}
  for col in 3 4 8 5 9 6; do
    awk -F'\t' -v l="$label" -v c="$col" '$1 == l {print $c}' "$OUT/rows" | sort -n \
      | awk '{a[NR] = $1} END {printf "%s ", NR ? (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) : "-"}'
  done | awk -v l="$label" '{printf "%s\tjobs/s %s\tbroker %s (user %s)\tworkers %s (user %s)\tdriver %s\n",
                                    l, $1, $2, $3, $4, $5, $6}'
done
rm -rf "$OUT"

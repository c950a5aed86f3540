#!/bin/sh
#  tests/fuzz/run.sh - build the libFuzzer targets with clang and run each
#  for a bounded time.
#
#    tests/fuzz/run.sh [SECONDS] [TARGET ...]      (default 60 s, all targets)
#    tests/fuzz/run.sh --merge [SECONDS] [TARGET ...]
#
#  Targets: codec gw_invoke bot_output retry_after url record (tests/fuzz/fuzz_*.c).
#  Build dir: $BUILD_FUZZ (default <repo>/build-fuzz), configured with
#  -DCMAKE_C_COMPILER=clang -DBM_FUZZ=ON; needs clang and libclang-rt-14-dev.
#
#  Each fuzzer starts from the checked-in corpus (tests/fuzz/corpus/<target>,
#  read only) plus a scratch corpus in the build dir (where new inputs go),
#  with its dictionary, -rss_limit_mb=2048 (msgpack-c trusts declared sizes:
#  a leak past bm_msgpack_check shows up as an out-of-memory crash) and a
#  -max_len suited to the target.  When a fuzzer finds a crash, a leak, a
#  timeout or an out-of-memory input, that input is copied into the
#  checked-in corpus (so the CTest fuzz.<target> replays it from then on)
#  and the script exits 1 after running the others.  --merge also merges
#  the scratch corpus into the checked-in one (only inputs adding coverage).
#
#  Prints one line per target: seconds run, executions, execs/s, coverage
#  (edges: cov, features: ft), corpus size.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD_FUZZ:-$ROOT/build-fuzz}
MERGE=0
if [ "${1:-}" = "--merge" ]; then MERGE=1; shift; fi
SECONDS_EACH=${1:-60}
case "$SECONDS_EACH" in
    ''|*[!0-9]*) echo "usage: $0 [--merge] [SECONDS] [TARGET ...]" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
TARGETS=${*:-codec gw_invoke bot_output retry_after url record}

max_len () {
    case "$1" in
        codec) echo 8192 ;;          #  frames of real messages are small; 8 KB reaches the limits
        gw_invoke) echo 4096 ;;      #  the target's payload cap is 2048 bytes: 413 is reachable
        bot_output) echo 8192 ;;     #  stdout cap up to 4096, stderr, fd 3
        retry_after) echo 128 ;;     #  the longest date form is 30 bytes
        url) echo 4096 ;;            #  URLs up to 2048 bytes, and past it
        record) echo 4096 ;;         #  a record's fields, payload and result included
        *) echo 4096 ;;
    esac
}

command -v clang >/dev/null || { echo "run.sh: clang is not installed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p "$BUILD"
if [ ! -f "$BUILD/build.ninja" ]; then
    #  -Wno-unknown-warning-option: the top-level flags include GCC-only ones
    #  (-Wno-format-truncation) that clang refuses under -Werror.
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER=clang -DBM_FUZZ=ON \
          -DCMAKE_C_FLAGS=-Wno-unknown-warning-option \
          -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD/fuzz-configure.log" 2>&1 \
        || { cat "$BUILD/fuzz-configure.log"; echo "run.sh: configure failed" >&2; exit 2; }
fi
BINS=""
for t in $TARGETS; do BINS="$BINS fuzz_$t"; done
nice ninja -C "$BUILD" $BINS >"$BUILD/fuzz-build.log" 2>&1 \
    || { cat "$BUILD/fuzz-build.log"; echo "run.sh: build failed" >&2; exit 2; }

status=0
summary=""
for t in $TARGETS; do
    bin="$BUILD/bin/fuzz_$t"
    seeds="$HERE/corpus/$t"
    scratch="$BUILD/fuzz-corpus/$t"
    artifacts="$BUILD/fuzz-artifacts/$t"
    log="$BUILD/fuzz-$t.log"
    mkdir -p "$scratch" "$artifacts" "$seeds"
    rm -f "$artifacts"/*
    dict=""
    [ -f "$HERE/$t.dict" ] && dict="-dict=$HERE/$t.dict"
    echo "== $t: ${SECONDS_EACH}s (log: $log)"
    "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
           -timeout=10 -print_final_stats=1 $dict -artifact_prefix="$artifacts/" \
           "$scratch" "$seeds" >"$log" 2>&1
    rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
    cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$done_line" | sed -n 's/.*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p')
    found=$(ls "$artifacts" 2>/dev/null)
    if [ $rc -ne 0 ] || [ -n "$found" ]; then
        status=1
        echo "!! $t: fuzzer exited $rc; findings: ${found:-none}"
        grep -E 'ERROR:|FUZZ CHECK FAILED|runtime error|SUMMARY' "$log" | head -10
        for f in $found; do
            cp "$artifacts/$f" "$seeds/$f"
            echo "   added to the corpus: tests/fuzz/corpus/$t/$f"
        done
        verdict="FAIL"
    else
        verdict="ok"
    fi
    if [ $MERGE -eq 1 ] && [ $rc -eq 0 ]; then
        "$bin" -merge=1 -max_len="$(max_len "$t")" -rss_limit_mb=2048 "$seeds" "$scratch" \
            >"$BUILD/fuzz-$t.merge.log" 2>&1 || echo "!! $t: merge failed (see $BUILD/fuzz-$t.merge.log)"
    fi
    line=$(printf '%-12s %-4s %5ss  execs %-10s %7s/s  cov %-5s ft %-6s corpus %s' \
           "$t" "$verdict" "$SECONDS_EACH" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
    echo "$line"
    summary="$summary$line
"
done
echo
echo "fuzz summary:"
printf '%s' "$summary"
exit $status

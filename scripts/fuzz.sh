#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/, logic in Sources/PeachFuzzing) with AddressSanitizer and
# runs each for FUZZ_SECONDS (default 600) on a copy of its committed corpus (Fuzz/corpus/<name>).
#
#   scripts/fuzz.sh                 build, then fuzz frames and requests
#   scripts/fuzz.sh frames          one target only (frames | requests)
#   FUZZ_SECONDS=60 FUZZ_JOBS=2 scripts/fuzz.sh   (FUZZ_JOBS > 1: libFuzzer's -fork mode)
#   FUZZ_BUILD_ONLY=1 scripts/fuzz.sh
#
# The sanitizer build lives in .build-fuzz (the normal .build is untouched). New inputs go to
# fuzz-out/<name>/corpus, crashes to fuzz-out/<name>/crash-*; add a crash that is fixed to
# Fuzz/corpus/<name>/ so that FuzzCorpusReplayTests replays it in `swift test`. Extra arguments
# after the target names go to libFuzzer (e.g. -max_len=8192).
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-swift}
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_JOBS=${FUZZ_JOBS:-1}
SCRATCH=${FUZZ_SCRATCH:-.build-fuzz}
OUT=${FUZZ_OUT:-fuzz-out}

targets=()
while [[ $# -gt 0 && ( $1 == frames || $1 == requests ) ]]; do targets+=("$1"); shift; done
[[ ${#targets[@]} -gt 0 ]] || targets=(frames requests)

for name in "${targets[@]}"; do
    echo "== building peach-fuzz-$name (-sanitize=fuzzer,address) in $SCRATCH"
    start=$(date +%s)
    # SwiftPM's own --sanitize=fuzzer does not instrument library modules for coverage; -Xswiftc does.
    # The linker's "Cannot export local symbol" warnings are harmless.
    log=$SCRATCH/fuzz-build-$name.log
    mkdir -p "$SCRATCH"
    if ! $SWIFT build --scratch-path "$SCRATCH" --product "peach-fuzz-$name" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING >"$log" 2>&1; then
        grep -v "Cannot export local symbol" "$log" | tail -40
        echo "build of peach-fuzz-$name failed (log: $log)" >&2
        exit 1
    fi
    echo "   built in $(( $(date +%s) - start )) s"
done
[[ -z ${FUZZ_BUILD_ONLY:-} ]] || exit 0

parallel=()
[[ $FUZZ_JOBS -gt 1 ]] && parallel=(-fork="$FUZZ_JOBS")
status=0
for name in "${targets[@]}"; do
    mkdir -p "$OUT/$name/corpus"
    dir=$(cd "$OUT/$name" && pwd)
    # The request target's volume stores: on tmpfs when there is one (SQLite is faster there).
    stores=$dir/tmp
    [[ -d /dev/shm && -w /dev/shm ]] && stores=/dev/shm/peach-fuzz-$name-$$
    mkdir -p "$stores"
    cp -n Fuzz/corpus/"$name"/* "$dir/corpus/" 2>/dev/null || true
    echo "== fuzzing $name for $FUZZ_SECONDS s (log: $dir/fuzz.log)"
    # Swift's backtracer would hold the crashing process; let ASan and libFuzzer report instead.
    set +e
    PEACH_FUZZ_DIR=$stores SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:handle_abort=1} \
        "$SCRATCH/debug/peach-fuzz-$name" "$dir/corpus" -max_total_time="$FUZZ_SECONDS" \
        -artifact_prefix="$dir/" -print_final_stats=1 ${parallel[@]+"${parallel[@]}"} "$@" \
        >"$dir/fuzz.log" 2>&1
    rc=$?
    set -e
    rm -rf "$stores"
    grep -E "^(stat::|Done|#[0-9]+ *DONE)" "$dir/fuzz.log" | tail -8 || true
    if ls "$dir"/crash-* "$dir"/oom-* "$dir"/timeout-* >/dev/null 2>&1; then
        echo "!! $name: findings in $dir:" && ls "$dir"/crash-* "$dir"/oom-* "$dir"/timeout-* 2>/dev/null
        status=1
    elif [[ $rc -ne 0 ]]; then
        echo "!! $name: the fuzzer exited with $rc; see $dir/fuzz.log"
        status=1
    fi
done
exit $status

#!/usr/bin/env bash
# `make bench`: every suite of `peach bench`, full size, with its report in OUT/<suite>/.
set -euo pipefail
peach=$(realpath "${1:-.build/release/peach}")
out=${2:-bench-report}
mkdir -p "$out"
# `bench ops` runs postmark when it is installed (Debian's package).
if ! command -v postmark >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq postmark >/dev/null 2>&1 || echo "postmark not installed: bench ops skips it"
fi
# run NAME SUITE [ARGS...]: the report goes to OUT/NAME.
run() {
    local name=$1 suite=$2; shift 2
    printf '\n\033[1m== peach bench %s %s\033[0m\n' "$suite" "$*"
    "$peach" bench "$suite" "$@" --report "$out/$name" --json "$out/$name.json"
}
run ostep ostep
run ostep-mount ostep --mount
run andrew andrew
run scale scale --clients 1,2,4,8,16,32
run sharing sharing
run io io
run ops ops
"$peach" bench html "$out"
printf '\nReports: %s/index.html (all of them), %s/*/report.md\n' "$out" "$out"

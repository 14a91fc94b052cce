#!/usr/bin/env bash
# `make demo`: a file server and two AFS-mode mounts on this machine; a file written through one
# mount is read through the other, and both sides' statistics show the callback break.
# Everything it starts is stopped and unmounted on exit, whatever happens.
set -euo pipefail
peach=$(realpath "${1:-.build/debug/peach}")
work=$(mktemp -d /tmp/peach-demo-XXXXXX)
server_pid=""

cleanup() {
    for m in "$work/mnt-a" "$work/mnt-b"; do
        if grep -q " $m " /proc/mounts; then fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m"; fi
    done
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Start a file server (root $work/server)"
"$peach" server --root "$work/server" --listen 127.0.0.1:0 > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q "serving" "$work/server.log" && break; sleep 0.1; done
cat "$work/server.log"
address=$(sed -n 's/.* on \([0-9.]*:[0-9]*\).*/\1/p' "$work/server.log")

step "Mount two cache managers on it"
mkdir -p "$work/mnt-a" "$work/mnt-b"
"$peach" mount "$work/mnt-a" --server "$address" --cache "$work/cache-a"
"$peach" mount "$work/mnt-b" --server "$address" --cache "$work/cache-b"

step "Client A writes hello.txt; client B reads it"
echo "Hello from client A, $(date -u +%H:%M:%S)" > "$work/mnt-a/hello.txt"
echo "B reads: $(cat "$work/mnt-b/hello.txt")"
echo "B reads again (served from B's cache under its callback): $(cat "$work/mnt-b/hello.txt")"

step "Client A changes the file; the server breaks B's callback before A's close returns"
echo "Changed by client A" > "$work/mnt-a/hello.txt"
echo "B reads: $(cat "$work/mnt-b/hello.txt")"

step "Statistics of client A (the writer)"
"$peach" fs stats "$work/mnt-a"
step "Statistics of client B (the reader: it received the break)"
"$peach" fs stats "$work/mnt-b"
step "Callbacks client B holds now"
"$peach" fs callbacks "$work/mnt-b"
step "The server's view: its clients, and who holds a promise on what (peach admin)"
"$peach" admin clients --server "$address"
"$peach" admin callbacks --server "$address"

step "Unmount both and stop the server"
fusermount3 -u "$work/mnt-a"
fusermount3 -u "$work/mnt-b"
echo "done"

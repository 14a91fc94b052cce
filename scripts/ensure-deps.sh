#!/usr/bin/env bash
# Installs the system packages PeachFS builds and mounts with, when any is missing:
# with apt-get when run as root, otherwise prints the one command to run.
# `ensure-deps.sh test` adds what only the tests use: Chromium, for the report page's browser test.
set -euo pipefail
packages=(libfuse3-dev fuse3 libsqlite3-dev pkg-config curl)
if [ "${1:-}" = test ]; then packages+=(chromium python3); fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "Installing ${missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "PeachFS needs: ${missing[*]}. Run:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

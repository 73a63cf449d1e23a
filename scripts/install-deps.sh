#!/usr/bin/env bash
# Installs the Debian packages a make target needs, or, when not root, prints
# the exact apt-get line and fails. Usage: scripts/install-deps.sh GROUP...
# Groups: build run test image bench. Keep in sync with README.md.
set -euo pipefail

declare -A GROUP
# node-llhttp: llhttp's C sources, compiled into the binaries (Makefile).
GROUP[build]="build-essential pkg-config libuv1-dev libhiredis-dev libpq-dev libjsmn-dev node-llhttp"
GROUP[run]="redis-server redis-tools postgresql postgresql-client"
GROUP[test]="check clang libclang-rt-14-dev valgrind python3-venv prometheus curl strace"
GROUP[image]="podman debootstrap runc"
GROUP[bench]="wrk redis-tools postgresql-contrib linux-perf valgrind"

wanted=()
for g in "$@"; do
    [[ -n "${GROUP[$g]:-}" ]] || { echo "install-deps: unknown group '$g'" >&2; exit 2; }
    for p in ${GROUP[$g]}; do wanted+=("$p"); done
done

missing=()
for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "surge needs these Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Builds the surge image from the Dockerfile with podman, or with docker where
# podman is absent. With podman the base image debian:bookworm-slim is made
# locally when it cannot be pulled (scripts/base-image.sh).
# Usage: scripts/image-build.sh IMAGE [CONTEXT]   (CONTEXT: the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${1:?usage: scripts/image-build.sh IMAGE [CONTEXT]}"
ctx="${2:-$root}"

if command -v podman >/dev/null; then
    . "$root/scripts/podman-env.sh"
    "$root/scripts/base-image.sh"
    # --network host: the build stage's apt-get reaches the Debian mirror the
    # same way the host does, with no bridge or NAT set up by podman.
    podman build --network host --pull=never -f "$ctx/Dockerfile" -t "$image" "$ctx"
elif command -v docker >/dev/null; then
    docker build -f "$ctx/Dockerfile" -t "$image" "$ctx"
else
    echo "image-build: neither podman nor docker is installed (scripts/install-deps.sh image)" >&2
    exit 1
fi

#!/usr/bin/env bash
# Builds the cluster's own images with podman (FROM scratch + the static
# binaries of cluster/build-go.sh): pause, CoreDNS, metrics-server, and saves
# them in build/cluster/images/cluster.tar, which cluster/up.sh imports into
# containerd. No registry is used. Cached: unchanged images are not rebuilt.
# Usage: cluster/build-images.sh
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"
. "$CLUSTER_SRC/images.sh"

for b in pause coredns metrics-server; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run cluster/build-go.sh first"
done
image_build "$PAUSE_IMAGE" "$CLUSTER_SRC/images/pause" "$BIN/pause"
image_build "$COREDNS_IMAGE" "$CLUSTER_SRC/images/coredns" "$BIN/coredns"
image_build "$METRICS_SERVER_IMAGE" "$CLUSTER_SRC/images/metrics-server" "$BIN/metrics-server"
image_archive cluster "$PAUSE_IMAGE" "$COREDNS_IMAGE" "$METRICS_SERVER_IMAGE"

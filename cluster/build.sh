#!/usr/bin/env bash
# Builds everything the cluster needs (make cluster-build): the Debian
# packages it runs on, its Go programs, its images. Each step is cached, so a
# second run takes seconds. Usage: cluster/build.sh
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

"$CLUSTER_SRC/deps.sh"
"$CLUSTER_SRC/build-go.sh"
"$CLUSTER_SRC/build-images.sh"
say "build ready"

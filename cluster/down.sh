#!/usr/bin/env bash
# Stops the cluster (make cluster-down): the kubelet first (nothing restarts
# pods any more), every pod sandbox through the CRI (so that CNI gives back
# its addresses and veths), then each component by its recorded PID, and
# finally cluster/sweep.sh removes everything else it made on the machine
# (links, chains, ipsets, mounts, cgroups, sysctls, the marker). The state
# (etcd data, certificates, images in containerd) is kept for a fast next
# start, unless PURGE=1 (or --purge): then state, run and logs go too; the
# built binaries and image archives stay.
# Usage: cluster/down.sh [--purge]
set -uo pipefail   # no -e: stop whatever can be stopped
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

purge=${PURGE:-}
[[ ${1:-} == --purge ]] && purge=1

stop_daemons kubelet
if running containerd; then
    cri="crictl -r unix://$CONTAINERD_SOCK -i unix://$CONTAINERD_SOCK -t 60s"
    mapfile -t pods < <($cri pods -q 2>/dev/null)
    if [[ ${#pods[@]} -gt 0 ]]; then
        $cri stopp "${pods[@]}" >/dev/null 2>&1
        $cri rmp -f "${pods[@]}" >/dev/null 2>&1
        say "removed ${#pods[@]} pod sandboxes"
    fi
fi
stop_daemons kube-router kube-proxy containerd kube-scheduler kube-controller-manager
stop_daemons kube-apiserver
stop_daemons etcd
"$CLUSTER_SRC/sweep.sh"
if [[ -n $purge ]]; then
    # --one-file-system: never into a mount the sweep could not remove
    rm -rf --one-file-system "$STATE" "$RUN" "$LOGS" "$KUBECONFIG"
    say "purged the cluster's state ($STATE)"
fi

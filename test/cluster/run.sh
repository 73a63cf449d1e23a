#!/usr/bin/env bash
# make test-cluster: the project's own single-node cluster (cluster/) built
# if needed and started, surge deployed on it from test/cluster/overlay (the
# kind overlay, a shorter HPA scale-down) through cluster/deploy.sh, the
# tests of test/cluster/ run against it, then the cluster stopped and the
# machine checked to be as it was found (cluster/leftovers.sh), also when a
# test fails or the run is interrupted.
#
#   SURGE_SKIP_CLUSTER=1   skip it all, loudly (a machine without root or cgroups)
#   KEEP_CLUSTER=1         leave the cluster up at the end (debugging;
#                          make cluster-down stops it)
#   CLUSTER_TESTS=...      pytest arguments instead of the whole suite,
#                          e.g. CLUSTER_TESTS=test/cluster/test_netpol.py
#
# Never skips by itself: a cluster that cannot start fails the run.
set -uo pipefail
cd "$(dirname "$0")/../.."

banner() {
    local line
    line=$(printf '%*s' 78 '' | tr ' ' '#')
    printf '\n%s\n' "$line"
    for l in "$@"; do printf '#  %s\n' "$l"; done
    printf '%s\n\n' "$line"
}

if [[ ${SURGE_SKIP_CLUSTER:-} == 1 ]]; then
    banner "make test-cluster was SKIPPED: SURGE_SKIP_CLUSTER=1 is set." \
           "Nothing was checked on a real cluster: not the autoscaling, not the" \
           "NetworkPolicies, Pod Security, RBAC, nor that no job is lost."
    exit 0
fi

t0=$(date +%s)
last=$t0
timings=()
phase() { echo "[test-cluster +$(( $(date +%s) - t0 ))s] $*"; }
took() {   # took LABEL: the time since the previous mark
    local now
    now=$(date +%s)
    timings+=("$(printf '%6d s  %s' $((now - last)) "$1")")
    last=$now
}
summary() {
    echo
    echo "make test-cluster timings:"
    printf '  %s\n' "${timings[@]}"
    printf '  %6d s  total\n' $(( $(date +%s) - t0 ))
    mkdir -p build/cluster-test
    { printf '%s\n' "${timings[@]}"; printf '%6d s  total\n' $(( $(date +%s) - t0 )); } > build/cluster-test/timings.txt
}

# A machine that cannot run the cluster says so in one line, and fails.
cluster/preflight.sh || { banner "make test-cluster FAILED: this machine cannot run the cluster (above)." \
                                 "SURGE_SKIP_CLUSTER=1 skips it explicitly."; exit 1; }

status=0
finish() {
    local rc=$?
    trap - EXIT INT TERM
    [[ $status -ne 0 ]] || status=$rc
    if [[ ${KEEP_CLUSTER:-} == 1 ]]; then
        phase "KEEP_CLUSTER=1: the cluster stays up (export KUBECONFIG=$PWD/build/cluster/kubeconfig; make cluster-down stops it)"
    else
        phase "make cluster-down"
        make -s cluster-down || status=1
        took "cluster-down"
        phase "cluster/leftovers.sh"
        if ! cluster/leftovers.sh; then
            banner "make test-cluster FAILED: the cluster left the above on this machine."
            status=1
        fi
    fi
    summary
    if [[ $status -ne 0 ]]; then
        banner "make test-cluster FAILED (exit $status)" "component logs: build/cluster/logs/" \
               "reports of the demonstration: build/cluster-test/reports/"
    else
        banner "make test-cluster passed"
    fi
    exit "$status"
}
trap finish EXIT
trap 'status=130; exit 130' INT TERM

phase "make cluster-build (cached after the first time)"
make -s cluster-build || { status=1; banner "make test-cluster FAILED: the cluster could not be built"; exit 1; }
took "cluster-build"
phase "make cluster"
make -s cluster || { status=1; banner "make test-cluster FAILED: the cluster did not start"; exit 1; }
took "cluster start"
phase "cluster/deploy.sh test/cluster/overlay"
cluster/deploy.sh test/cluster/overlay || { status=1; banner "make test-cluster FAILED: surge could not be deployed"; exit 1; }
took "deploy surge (image, stand-ins, overlay, smoke read job)"

export KUBECONFIG=$PWD/build/cluster/kubeconfig
# The order puts the long scenario last; each test leaves surge at rest.
# shellcheck disable=SC2206 # CLUSTER_TESTS is a list of pytest arguments
tests=(${CLUSTER_TESTS:-test/cluster/test_security.py test/cluster/test_netpol.py test/cluster/test_config.py test/cluster/test_scaling.py})
phase "pytest ${tests[*]}"
.venv/bin/pytest -v -s -p no:cacheprovider "${tests[@]}" || status=1
took "tests (test/cluster)"

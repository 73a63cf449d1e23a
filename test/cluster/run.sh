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
#                          (KEDA is built and installed only when they name keda)
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
keda_build=
finish() {
    local rc=$?
    trap - EXIT INT TERM
    [[ $status -ne 0 ]] || status=$rc
    [[ -z $keda_build ]] || kill -- -"$keda_build" 2>/dev/null || true
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

# KEDA's test needs KEDA, whose cold build takes about 11 minutes of both
# cores: it runs in the background from here, in its own process group,
# under SCHED_IDLE, so that it fills the time the rest spends waiting
# (packages, images, the start, the tests) instead of adding to it. Not
# just nice 19: the cluster's own build runs at nice 19 too, and would get
# only half the CPU beside it; against SCHED_IDLE it gets five sixths.
want_keda=
[[ -n ${CLUSTER_TESTS:-} && ${CLUSTER_TESTS} != *keda* ]] || want_keda=1
if [[ -n $want_keda ]]; then
    mkdir -p build/cluster-test
    phase "cluster/build-go.sh keda, in the background (build/cluster-test/keda-build.log)"
    setsid chrt --idle 0 cluster/build-go.sh keda > build/cluster-test/keda-build.log 2>&1 &
    keda_build=$!
fi
keda() {   # waits for KEDA's build, installs KEDA
    phase "waiting for KEDA's build"
    wait "$keda_build" || { keda_build=; cat build/cluster-test/keda-build.log; return 1; }
    keda_build=
    took "KEDA build (what was left of it after the background)"
    phase "cluster/keda.sh"
    cluster/keda.sh || return 1
    took "KEDA install (image, manifests, ready)"
}

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
pytest_() {
    phase "pytest $*"
    .venv/bin/pytest -v -s -p no:cacheprovider "$@" || status=1
}
if [[ -n ${CLUSTER_TESTS:-} ]]; then
    if [[ -n $want_keda ]]; then
        keda || { status=1; banner "make test-cluster FAILED: KEDA could not be built or installed"; exit 1; }
    fi
    # shellcheck disable=SC2086 # CLUSTER_TESTS is a list of pytest arguments
    pytest_ $CLUSTER_TESTS
    took "tests (CLUSTER_TESTS)"
else
    # The order puts the long scenario last; each test leaves surge at rest.
    # KEDA's test comes after them all: its build had that long.
    pytest_ test/cluster/test_security.py test/cluster/test_netpol.py test/cluster/test_config.py \
            test/cluster/test_scaling.py
    took "tests (test/cluster)"
    if keda; then
        pytest_ test/cluster/test_keda.py
        took "tests (KEDA)"
    else
        status=1
        banner "make test-cluster FAILED: KEDA could not be built or installed (above)"
    fi
fi

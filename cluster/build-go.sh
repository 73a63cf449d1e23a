#!/usr/bin/env bash
# Builds the cluster's Go programs into build/cluster/bin from the modules in
# cluster/gomod/ (go.mod and go.sum committed: every version is pinned):
#   cluster   Kubernetes (apiserver, controller-manager, scheduler, kubelet,
#             kube-proxy, kubectl), metrics-server, crictl, kube-router, in
#             one build (cluster/gomod-update.sh says why one module)
#   coredns   a minimal CoreDNS (its own module: it needs client-go 0.35)
#   pause     the pod sandbox process
#   keda      KEDA's operator and metrics apiserver (its own module: KEDA
#             needs client-go 0.36 and Go 1.26), only when asked for: by
#             cluster/keda.sh (make cluster-keda), which installs KEDA, and
#             by make test-cluster, in the background from its start (the
#             build takes 11 minutes of both cores cold)
# Static (CGO_ENABLED=0), under `nice -n 19`; the module cache, build cache
# and GOPATH are under build/cluster/go, so nothing outside is used.
# Cached: a module whose inputs did not change since its last build is skipped.
# Usage: cluster/build-go.sh          the cluster's programs
#        cluster/build-go.sh keda     KEDA only
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

go_env
mkdir -p "$BIN" "$GO_DIR" "$LOGS"
BUILD_DATE=2025-01-01T00:00:00Z   # fixed: the same inputs give the same binaries

# build MODULE "OUTPUTS" LDFLAGS PACKAGE...: go build in cluster/gomod/MODULE,
# skipped when every output exists and the module's inputs are unchanged.
build() {
    local mod=$1 outs=$2 ldflags=$3 dir=$CLUSTER_SRC/gomod/$1 stamp hash o missing=
    shift 3
    stamp=$BIN/.$mod.inputs
    hash=$({ inputs_hash "$dir"/*; go version; echo "$ldflags"; } | sha256sum | cut -c1-16)
    for o in $outs; do [[ -x $BIN/$o ]] || missing=1; done
    if [[ -z $missing && -f $stamp && $(cat "$stamp") == "$hash" ]]; then
        return 0
    fi
    say "go build $mod ($outs)"
    rm -f "$stamp"
    (cd "$dir" && nice -n 19 go build -ldflags "$ldflags" -o "$BIN/" "$@") \
        >"$LOGS/build-$mod.log" 2>&1 || { tail -30 "$LOGS/build-$mod.log" >&2; die "go build $mod failed"; }
    echo "$hash" > "$stamp"
}

# Version strings the binaries print (go build cannot know them from a module).
stamp_k8s() { # PKG VERSION
    local major=${2#v} minor
    major=${major%%.*}
    minor=$(cut -d. -f2 <<<"$2")
    echo "-X $1.gitVersion=$2 -X $1.gitMajor=$major -X $1.gitMinor=$minor -X $1.gitTreeState=clean -X $1.buildDate=$BUILD_DATE"
}

if [[ ${1:-} == keda ]]; then
    build keda "operator adapter" \
        "-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION -X github.com/kedacore/keda/v2/version.GitCommit=$KEDA_VERSION" \
        github.com/kedacore/keda/v2/cmd/operator github.com/kedacore/keda/v2/cmd/adapter
    say "KEDA $KEDA_VERSION ready in $BIN"
    exit 0
fi
[[ $# -eq 0 ]] || die "usage: cluster/build-go.sh [keda]"

LD="-s -w $(stamp_k8s k8s.io/component-base/version "$K8S_VERSION")"
LD="$LD $(stamp_k8s k8s.io/client-go/pkg/version "$K8S_VERSION")"
LD="$LD -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
LD="$LD -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
LD="$LD -X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=$BUILD_DATE"
build cluster "kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl metrics-server crictl kube-router" \
    "$LD" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/metrics-server/cmd/metrics-server \
    sigs.k8s.io/cri-tools/cmd/crictl github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
build coredns coredns "-s -w" .
build pause pause "-s -w" .
say "Go programs ready in $BIN"

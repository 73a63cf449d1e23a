# shellcheck shell=bash disable=SC2034
# Settings every cluster script sources: paths, versions, names, addresses.
#   . cluster/env.sh
# Everything the cluster makes lives under CLUSTER_DIR (build/cluster), except
# the few fixed paths listed in cluster/README.md. Keep the names and
# addresses here in sync with cluster/README.md.

SURGE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_SRC=$SURGE_ROOT/cluster
CLUSTER_DIR=${SURGE_CLUSTER_DIR:-$SURGE_ROOT/build/cluster}
BIN=$CLUSTER_DIR/bin            # binaries built from Go modules
GO_DIR=$CLUSTER_DIR/go          # GOPATH, module cache, build cache
IMAGES=$CLUSTER_DIR/images      # image archives for containerd
STATE=$CLUSTER_DIR/state        # etcd data, containerd root, kubelet root, certificates, volumes
RUN=$CLUSTER_DIR/run            # PID files, sockets, containerd and runc state
LOGS=$CLUSTER_DIR/logs          # one log per component
PKI=$STATE/pki
KCONF=$STATE/kubeconfig         # the components' kubeconfigs
export KUBECONFIG=$CLUSTER_DIR/kubeconfig   # admin, context "surge"

# One small machine-wide record of the running cluster (tmpfs: gone at reboot,
# like everything it describes), so that a later run from any checkout finds
# and removes what an earlier run left behind.
MARKER=/run/surge-cluster

K8S_VERSION=v1.34.3             # kubelet 1.35 refuses cgroup v1
METRICS_SERVER_VERSION=v0.8.0
COREDNS_VERSION=v1.14.7
CRICTL_VERSION=v1.34.0
KUBE_ROUTER_VERSION=v2.1.0
KEDA_VERSION=$(cat "$SURGE_ROOT/test/k8s/keda.version")   # the one the manifests are checked against

NODE_NAME=surge-node
CLUSTER_NAME=surge              # kubeconfig cluster and context
NODE_IF=surge0                  # bridge carrying the node address (the kernel has no dummy links)
NODE_IP=10.251.0.1
POD_IF=surgecni0                # CNI bridge of the pods
POD_CIDR=10.245.0.0/24
POD_GW=10.245.0.1
CLUSTER_CIDR=10.245.0.0/16
SERVICE_CIDR=10.97.0.0/16
API_SVC_IP=10.97.0.1
DNS_IP=10.97.0.10
CNI_NET=surge                   # CNI network name (libcni's cache files start with it)
CGROUP_ROOT=surge               # the pods' cgroups live under /sys/fs/cgroup/<ctrl>/surge

CONTAINERD_SOCK=$RUN/containerd/containerd.sock
IMAGE_PREFIX=localhost/surge-cluster
PAUSE_IMAGE=$IMAGE_PREFIX/pause:1.0
COREDNS_IMAGE=$IMAGE_PREFIX/coredns:$COREDNS_VERSION
METRICS_SERVER_IMAGE=$IMAGE_PREFIX/metrics-server:$METRICS_SERVER_VERSION
KEDA_IMAGE=$IMAGE_PREFIX/keda:$KEDA_VERSION

PATH=$BIN:$PATH

# What a start changes outside CLUSTER_DIR, recorded in MARKER before the
# first change so that cluster/sweep.sh can put it back: the sysctls that
# up.sh (bridge-nf-call-iptables) and the kubelet (the other ones) set, and
# the fixed directories that the components create when missing.
SYSCTLS="net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
FIXED_DIRS="/run/containerd /var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods"

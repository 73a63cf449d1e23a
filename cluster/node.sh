#!/usr/bin/env bash
# Starts the node's host processes, each tracked by its PID file: containerd
# (Debian's, with its root, state, socket and runc state under
# build/cluster), the cluster images imported into it, the kubelet (cgroupfs
# driver, pods' cgroups under /surge), kube-proxy (iptables mode). A component
# already running is left alone; a configuration file is rewritten only when
# its content changes. Usage: cluster/node.sh   (called by cluster/up.sh)
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"
. "$CLUSTER_SRC/images.sh"

CFG=$STATE/cfg
mkdir -p "$CFG" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/containerd" "$RUN/containerd" \
    "$STATE/kubelet" "$STATE/pod-logs"

# ---- containerd + runc + CNI bridge
putfile "$CFG/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  disable_apparmor = true
  # Without CAP_SYS_RESOURCE (this kind of machine) oom_score_adj cannot be
  # lowered, and runc fails to start a sandbox that asks for -998.
  restrict_oom_score_adj = true
  # Network namespaces under our state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
# The pods' bridge gets its gateway address from up.sh, so the bridge plugin
# runs with isGateway false and never turns on forwarding machine-wide. Pods
# get routes to the service range and the node address only: no default
# route, no masquerading, nothing off the machine.
putfile "$STATE/cni/net.d/10-$CNI_NET.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NET",
  "plugins": [
    {"type": "bridge", "bridge": "$POD_IF", "isGateway": false, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
              "routes": [{"dst": "$SERVICE_CIDR"}, {"dst": "$NODE_IP/32"}]}}
  ]
}
EOF
start_daemon containerd containerd --config "$CFG/containerd.toml"
wait_for "containerd answers" 60 ctr -a "$CONTAINERD_SOCK" version
image_import cluster

# ---- kubelet: the pods' cgroups under /surge in every hierarchy, so that
# they are told apart from anything else on the machine and found again.
for h in $(cgroup_roots); do
    mkdir -p "$h/$CGROUP_ROOT"
    if [[ -f $h/cpuset.cpus && ! -f $h/cgroup.controllers ]]; then   # a v1 cpuset starts empty
        [[ -n $(cat "$h/$CGROUP_ROOT/cpuset.cpus") ]] || cat "$h/cpuset.cpus" > "$h/$CGROUP_ROOT/cpuset.cpus"
        [[ -n $(cat "$h/$CGROUP_ROOT/cpuset.mems") ]] || cat "$h/cpuset.mems" > "$h/$CGROUP_ROOT/cpuset.mems"
    fi
    if [[ -f $h/cgroup.subtree_control && $h == /sys/fs/cgroup ]]; then   # v2: hand the controllers down
        read -ra ctrls < "$h/cgroup.subtree_control"
        for c in "${ctrls[@]}"; do
            echo "+$c" > "$h/$CGROUP_ROOT/cgroup.subtree_control" 2>/dev/null || true
        done
    fi
done
putfile "$CFG/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: ""
failSwapOn: false
podLogsDir: $STATE/pod-logs
maxPods: 60
serializeImagePulls: false
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
start_daemon kubelet kubelet --config="$CFG/kubelet.yaml" --kubeconfig="$KCONF/kubelet.conf" \
    --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
wait_for "node Ready" 180 sh -c \
    "kubectl get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"

# ---- kube-proxy: node ports on the node address only; conntrack and
# route_localnet left as they are (no sysctl to change).
putfile "$CFG/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KCONF/kube-proxy.conf}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start_daemon kube-proxy kube-proxy --config="$CFG/kube-proxy.yaml"
wait_for "kube-proxy healthy" 60 curl -sf http://127.0.0.1:10256/healthz

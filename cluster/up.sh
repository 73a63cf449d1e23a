#!/usr/bin/env bash
# Starts the single-node cluster on this machine (make cluster), from the
# outputs of cluster/build.sh: first removes what an earlier cluster left
# (cluster/sweep.sh --if-stale, whichever checkout it came from), records
# this one in the machine-wide marker, then the node's bridges, the
# certificates, the control plane, the node, the add-ons and the
# NetworkPolicy controller. Idempotent: a running cluster is left as it is.
# Usage: cluster/up.sh
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

"$CLUSTER_SRC/preflight.sh"
for b in etcd containerd runc ipset; do
    command -v "$b" >/dev/null || die "$b is missing: run make cluster-build"
done
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kube-router crictl; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run make cluster-build"
done
[[ -f $IMAGES/cluster.tar ]] || die "$IMAGES/cluster.tar is missing: run make cluster-build"
recorded=$(cat "$MARKER/workdir" 2>/dev/null || true)
if other=$(foreign_k8s "$CLUSTER_DIR" ${recorded:+"$recorded"}); then
    die "another Kubernetes runs on this machine: $other; stop it first"
fi

"$CLUSTER_SRC/sweep.sh" --if-stale

if ! all_running; then
    # Ports the components listen on: taken by anything else, say what.
    for port in 2379 2380 2381 6443 10248 10249 10250 10256 10257 10259; do
        user=$(ss -ltnpH "sport = :$port" 2>/dev/null | head -1)
        [[ -z $user ]] || die "port $port is taken: $user"
    done
fi

# ---- the marker, before anything is changed: where this cluster lives,
# the sysctls and which fixed directories existed before its first start
mkdir -p "$MARKER" "$STATE" "$RUN" "$LOGS"
echo "$CLUSTER_DIR" > "$MARKER/workdir"
if [[ ! -f $MARKER/sysctl.before ]]; then
    for d in $FIXED_DIRS; do [[ -e $d ]] || echo "$d"; done > "$MARKER/created"
    record_sysctls "$MARKER/sysctl.before"
fi

"$CLUSTER_SRC/pki.sh"

# ---- the node's addresses, on bridges made here (this kernel has no dummy
# links): the node address on its own bridge, the pods' gateway on theirs.
# Forwarding is turned on for packets from the pods' bridge only, not
# machine-wide: nothing is routed between the machine's own interfaces.
add_bridge() { # NAME ADDRESS
    ip link show "$1" >/dev/null 2>&1 || ip link add "$1" type bridge
    ip addr show dev "$1" | grep -qw "inet $2" || ip addr add "$2" dev "$1"
    ip link set "$1" up
}
add_bridge "$NODE_IF" "$NODE_IP/32"
add_bridge "$POD_IF" "$POD_GW/${POD_CIDR#*/}"
sysctl -qw "net.ipv4.conf.$POD_IF.forwarding=1"
# Pod to pod traffic crosses the bridge: iptables must see it (kube-proxy, kube-router).
sysctl -qw net.bridge.bridge-nf-call-iptables=1

"$CLUSTER_SRC/control-plane.sh"
"$CLUSTER_SRC/node.sh"
"$CLUSTER_SRC/addons.sh"
"$CLUSTER_SRC/netpol.sh"
# The sysctls as this cluster left them: the sweep puts back only those that
# nobody else changed since.
record_sysctls "$MARKER/sysctl.after"

say "cluster up: node $NODE_NAME, Kubernetes $K8S_VERSION, context $CLUSTER_NAME"
cat <<EOF

  export KUBECONFIG=$KUBECONFIG
  export PATH=$BIN:\$PATH     # kubectl $K8S_VERSION (optional: any kubectl 1.33+ works)
  kubectl get nodes
  make cluster-deploy          # surge (k8s/overlays/kind) on it
  make cluster-down            # stop it; PURGE=1 also deletes its state
EOF

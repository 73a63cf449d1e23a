#!/usr/bin/env bash
# Enforces NetworkPolicies: starts kube-router's network-policy controller
# as a host process (firewall only: no routing, no service proxy, no CNI),
# with its own client certificate bound to the read-only ClusterRole
# surge:kube-router, and waits until its rules are in place. Blocked
# connections are REJECTed (the client sees "connection refused"), not
# dropped: kube-router v2.1.0 has no option for that.
# Usage: cluster/netpol.sh   (called by cluster/up.sh)
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

command -v ipset >/dev/null || die "ipset is missing (cluster/deps.sh installs it)"
# --health-port=0: its health server would listen on every address.
start_daemon kube-router kube-router --kubeconfig="$KCONF/kube-router.conf" \
    --hostname-override="$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --enable-ipv4=true --enable-ipv6=false \
    --service-cluster-ip-range="$SERVICE_CIDR" --service-node-port-range=30000-32767 \
    --health-port=0 --metrics-port=0 --iptables-sync-period=1m -v 1
wait_for "kube-router's policy rules in place" 60 sh -c "iptables -S FORWARD | grep -q 'kube-router netpol'"

#!/usr/bin/env bash
# Applies the cluster's own objects: the RBAC of the host components
# (manifests/rbac.yaml), CoreDNS and metrics-server (images built here,
# never pulled), and waits until DNS answers and the metrics API is
# available (the HPA needs it). @NAME@ in a manifest is NAME from env.sh.
# Usage: cluster/addons.sh   (called by cluster/up.sh)
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

render() { # FILE: the manifest with @NAME@ replaced by $NAME
    sed -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" \
        -e "s|@METRICS_SERVER_IMAGE@|$METRICS_SERVER_IMAGE|g" "$1"
}
for m in rbac coredns metrics-server; do
    render "$CLUSTER_SRC/manifests/$m.yaml" | kubectl apply -f - >/dev/null
done
kubectl -n kube-system rollout status deploy/coredns --timeout=180s >/dev/null
say "CoreDNS ready"
kubectl -n kube-system rollout status deploy/metrics-server --timeout=180s >/dev/null
wait_for "metrics API available" 180 sh -c \
    "kubectl get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type==\"Available\")].status}' | grep -qx True"

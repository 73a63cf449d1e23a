#!/usr/bin/env bash
# Starts the control plane as host processes, each tracked by its PID file in
# build/cluster/run (a component already running is left alone): etcd
# (Debian's, TLS with client certificates, loopback), kube-apiserver (on the
# node address only: nothing listens on the machine's own interfaces),
# kube-controller-manager and kube-scheduler (loopback).
# Usage: cluster/control-plane.sh   (called by cluster/up.sh)
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

mkdir -p "$STATE/etcd" "$RUN" "$LOGS"
chmod 700 "$STATE/etcd"

start_daemon etcd etcd --name surge --data-dir "$STATE/etcd" \
    --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster surge=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --client-cert-auth --trusted-ca-file "$PKI/ca.crt" \
    --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key"
wait_for "etcd healthy" 60 sh -c "curl -sf http://127.0.0.1:2381/health | grep -q true"

start_daemon kube-apiserver kube-apiserver \
    --etcd-servers=https://127.0.0.1:2379 --etcd-cafile="$PKI/ca.crt" \
    --etcd-certfile="$PKI/etcd-client.crt" --etcd-keyfile="$PKI/etcd-client.key" \
    --bind-address="$NODE_IP" --secure-port=6443 --advertise-address="$NODE_IP" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --anonymous-auth=false \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-extra-headers-prefix=X-Remote-Extra- --requestheader-group-headers=X-Remote-Group \
    --requestheader-username-headers=X-Remote-User \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true --profiling=false
wait_for "apiserver ready" 120 kubectl get --raw /readyz

# Both on loopback; leader election off: there is one of each.
start_daemon kube-controller-manager kube-controller-manager \
    --kubeconfig="$KCONF/controller-manager.conf" \
    --authentication-kubeconfig="$KCONF/controller-manager.conf" \
    --authorization-kubeconfig="$KCONF/controller-manager.conf" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false \
    --client-ca-file="$PKI/ca.crt" --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$SERVICE_CIDR"
start_daemon kube-scheduler kube-scheduler \
    --kubeconfig="$KCONF/scheduler.conf" \
    --authentication-kubeconfig="$KCONF/scheduler.conf" \
    --authorization-kubeconfig="$KCONF/scheduler.conf" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false

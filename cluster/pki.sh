#!/usr/bin/env bash
# Makes the cluster's certificates and kubeconfigs with openssl, once: a CA,
# a front-proxy CA (aggregation layer, metrics-server), the serving
# certificates of the apiserver and etcd, one client certificate per
# component (each its own identity; kube-router's is bound to a read-only
# ClusterRole, not system:masters), the service-account key pair, and a
# kubeconfig per component plus the admin's build/cluster/kubeconfig
# (cluster and context "surge").
# Kept as they are when they exist (state/pki/.done).
# Usage: cluster/pki.sh
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

if [[ -f $PKI/.done && -f $KUBECONFIG ]]; then exit 0; fi
rm -rf "$PKI" "$KCONF"
mkdir -p "$PKI" "$KCONF"
chmod 700 "$PKI"
cd "$PKI"

ca() { # NAME CN
    openssl genrsa -out "$1.key" 2048 2>/dev/null
    openssl req -x509 -new -nodes -key "$1.key" -subj "/CN=$2" -days 3650 -out "$1.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
}
cert() { # NAME CA SUBJECT client|server [SANS]
    local name=$1 ca=$2 subj=$3 kind=$4 sans=${5:-}
    openssl genrsa -out "$name.key" 2048 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=${kind}Auth"
        [[ -z $sans ]] || echo "subjectAltName=$sans"
    } > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 3650 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

ca ca surge-cluster-ca
ca front-proxy-ca surge-cluster-front-proxy-ca
cert apiserver ca "/CN=kube-apiserver" server \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$NODE_IP,IP:$API_SVC_IP"
# bound to system:kubelet-api-admin by manifests/rbac.yaml, not system:masters
cert apiserver-kubelet-client ca "/CN=kube-apiserver-kubelet-client" client
cert admin ca "/O=system:masters/CN=surge-admin" client
cert controller-manager ca "/CN=system:kube-controller-manager" client
cert scheduler ca "/CN=system:kube-scheduler" client
cert kubelet ca "/O=system:nodes/CN=system:node:$NODE_NAME" client
cert kube-proxy ca "/CN=system:kube-proxy" client
cert kube-router ca "/CN=surge:kube-router" client
cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" client
# etcd speaks TLS and asks for a client certificate: no other local process reads the cluster's data.
cert etcd-server ca "/CN=surge-etcd" server "IP:127.0.0.1"
cert etcd-client ca "/CN=kube-apiserver-etcd-client" client
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
chmod 600 ./*.key

kubeconfig() { # FILE USER CERT
    local f=$1
    kubectl config --kubeconfig="$f" set-cluster "$CLUSTER_NAME" --server="https://$NODE_IP:6443" \
        --certificate-authority="$PKI/ca.crt" --embed-certs >/dev/null
    kubectl config --kubeconfig="$f" set-credentials "$2" \
        --client-certificate="$PKI/$3.crt" --client-key="$PKI/$3.key" --embed-certs >/dev/null
    kubectl config --kubeconfig="$f" set-context "$CLUSTER_NAME" --cluster="$CLUSTER_NAME" --user="$2" >/dev/null
    kubectl config --kubeconfig="$f" use-context "$CLUSTER_NAME" >/dev/null
    chmod 600 "$f"
}
kubeconfig "$KCONF/controller-manager.conf" system:kube-controller-manager controller-manager
kubeconfig "$KCONF/scheduler.conf" system:kube-scheduler scheduler
kubeconfig "$KCONF/kubelet.conf" "system:node:$NODE_NAME" kubelet
kubeconfig "$KCONF/kube-proxy.conf" system:kube-proxy kube-proxy
kubeconfig "$KCONF/kube-router.conf" surge:kube-router kube-router
rm -f "$KUBECONFIG"
kubeconfig "$KUBECONFIG" surge-admin admin
touch .done
say "certificates and kubeconfigs in $PKI, $KCONF; admin: $KUBECONFIG"

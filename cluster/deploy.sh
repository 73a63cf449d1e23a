#!/usr/bin/env bash
# Deploys surge on the running cluster (make cluster-deploy): every image the
# overlay names, built here and imported into containerd (the surge image
# from the project's own `make image`; redis and postgres stand-ins built from
# Debian's packages under the tags the manifests name: no registry is
# reachable), a hostPath PersistentVolume pre-bound to each StatefulSet claim
# (no provisioner here), the Secrets (scripts/k8s-secrets.sh, kept in
# build/cluster/state/secrets with the volumes they were created with), the
# overlay, a wait for every rollout, then a read job through
# `kubectl port-forward` (api -> Redis -> worker -> PostgreSQL).
# Cached: images are rebuilt, saved and imported only when they changed.
#   cluster/deploy.sh [OVERLAY]   default k8s/overlays/kind
#   cluster/deploy.sh --delete    remove surge, its volumes and Secrets
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

SECRETS=$STATE/secrets
PV_DIR=$STATE/pv
running kube-apiserver || die "the cluster is not running: make cluster"

if [[ ${1:-} == --delete ]]; then
    # The workers drain a running burn for minutes: no graceful wait here.
    for ns in surge surge-data; do
        kubectl -n "$ns" delete pods --all --grace-period=0 --force >/dev/null 2>&1 || true
    done
    kubectl delete ns surge surge-data --ignore-not-found --wait=true --timeout=180s >/dev/null
    kubectl delete pv -l app.kubernetes.io/managed-by=surge-cluster --ignore-not-found >/dev/null
    rm -rf "$PV_DIR" "$SECRETS"
    say "surge deleted (namespaces, volumes, Secrets)"
    exit 0
fi

overlay=${1:-k8s/overlays/kind}
[[ $overlay == /* ]] || overlay=$SURGE_ROOT/$overlay
[[ -f $overlay/kustomization.yaml ]] || die "no kustomization.yaml in $overlay"
rendered=$(mktemp)
trap 'rm -f "$rendered" "$rendered.stamped"' EXIT
kubectl kustomize "$overlay" | kubectl create --dry-run=client -o json -f - > "$rendered"
query() { "$CLUSTER_SRC/manifest-query.py" "$1" < "$rendered"; }
images=$(query images)
claims=$(query claims)
workloads=$(query workloads)

# ---- images: each one the overlay names, made here
. "$CLUSTER_SRC/images.sh"
mapfile -t wanted <<<"$images"
tags=()
ids_json=''   # image as the overlay names it -> its ID, as JSON members
for image in "${wanted[@]}"; do
    case $image in
        */*/*) tag=$image ;;
        */*) tag=docker.io/$image ;;
        *) tag=docker.io/library/$image ;;   # as the kubelet resolves a short name
    esac
    case ${tag#docker.io/library/} in
        surge:*)
            if [[ -z ${surge_built:-} ]]; then
                say "make image"
                nice -n 19 make -s -C "$SURGE_ROOT" image >"$LOGS/surge-image.log" 2>&1 \
                    || { tail -30 "$LOGS/surge-image.log" >&2; die "make image failed"; }
                surge_built=1
            fi
            podman_ image exists "$tag" || die "make image did not make $tag, which $overlay names" ;;
        redis:*) image_build "$tag" "$CLUSTER_SRC/images/redis" ;;
        postgres:*) image_build "$tag" "$CLUSTER_SRC/images/postgres" ;;
        *) die "$overlay names $image: no registry is reachable and nothing here builds it" ;;
    esac
    tags+=("$tag")
    ids_json+="${ids_json:+,}\"$image\":\"$(podman_ image inspect --format '{{.Id}}' "$tag")\""
done
image_archive surge "${tags[@]}"
image_import surge

# ---- volumes: one hostPath PV per StatefulSet claim, owned by the pod's
# user (a hostPath volume ignores fsGroup)
while read -r ns claim size uid gid; do
    [[ -n $ns ]] || continue
    dir=$PV_DIR/$ns/$claim
    mkdir -p "$dir"
    chown "$uid:$gid" "$dir"
    chmod 700 "$dir"
    cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: surge-$ns-$claim
  labels: {app.kubernetes.io/managed-by: surge-cluster}
spec:
  capacity: {storage: $size}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: $ns, name: $claim}
  hostPath: {path: $dir, type: Directory}
---
EOF
done <<<"$claims" > "$rendered.pv"
[[ ! -s $rendered.pv ]] || kubectl apply -f "$rendered.pv" >/dev/null
rm -f "$rendered.pv"
say "volumes ready in $PV_DIR"

# ---- Secrets, then the overlay (its namespaces first: the Secrets live there)
"$SURGE_ROOT/scripts/k8s-secrets.sh" "$SECRETS" 2>/dev/null
query namespaces | kubectl apply -f - >/dev/null
kubectl apply -k "$SECRETS" >/dev/null
# Each pod template names the IDs of its images: a rebuilt image rolls its pods.
"$CLUSTER_SRC/manifest-query.py" stamp "{$ids_json}" < "$rendered" > "$rendered.stamped"
kubectl apply -f "$rendered.stamped" >/dev/null
rm -f "$rendered.stamped"
say "applied ${overlay#"$SURGE_ROOT"/} and the Secrets"
# Twice: a later rollout (Redis, say) can leave an earlier one's pods unready a while.
for pass in 1 2; do
    while read -r ns kind name; do
        [[ -n $ns ]] || continue
        kubectl -n "$ns" rollout status "$kind/$name" --timeout=300s >/dev/null \
            || die "$kind $ns/$name did not roll out (pass $pass): kubectl -n $ns describe $kind $name"
    done <<<"$workloads"
done
say "every rollout done"

"$CLUSTER_SRC/smoke.sh"

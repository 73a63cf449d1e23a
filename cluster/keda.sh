#!/usr/bin/env bash
# Installs KEDA on the running cluster (make cluster-keda; make test-cluster
# calls it): the operator and metrics apiserver built here from their Go
# module (cluster/build-go.sh keda, cached), their image (cached), KEDA's
# own manifests of that version with this cluster's changes
# (cluster/manifests/keda/kustomization.yaml), then a wait until both run and
# the external metrics API that KEDA serves to the HPA is available.
# Idempotent: a second run re-applies the same objects.
#   cluster/keda.sh            install (or update) KEDA
#   cluster/keda.sh --delete   remove it (ScaledObjects first, so that KEDA
#                              removes the HPAs it made)
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"
running kube-apiserver || die "the cluster is not running: make cluster"

if [[ ${1:-} == --delete ]]; then
    kubectl delete scaledobjects.keda.sh --all -A --ignore-not-found --wait=true >/dev/null 2>&1 || true
    kubectl delete apiservice v1beta1.external.metrics.k8s.io --ignore-not-found >/dev/null
    kubectl delete ns keda --ignore-not-found --wait=true --timeout=120s >/dev/null
    kubectl get crd -o name | grep '\.keda\.sh$' | xargs -r kubectl delete >/dev/null
    say "KEDA deleted"
    exit 0
fi

# ---- the binaries and the image
"$CLUSTER_SRC/build-go.sh" keda
. "$CLUSTER_SRC/images.sh"
image_build "$KEDA_IMAGE" "$CLUSTER_SRC/images/keda" "$BIN/operator" "$BIN/adapter"
image_archive keda "$KEDA_IMAGE"
image_import keda

# ---- the manifests: KEDA's config/ from its module (where the build put
# it), our kustomization beside it
go_env
src=$GOMODCACHE/github.com/kedacore/keda/v2@$KEDA_VERSION/config
[[ -d $src ]] || die "$src is missing: the KEDA module was not downloaded (cluster/build-go.sh keda)"
work=$CLUSTER_DIR/keda
rm -rf "$work"
mkdir -p "$work/install"
cp -r "$src" "$work/config"
chmod -R u+w "$work/config"
sed -e "s|@KEDA_IMAGE_NAME@|${KEDA_IMAGE%:*}|g" -e "s|@KEDA_VERSION@|$KEDA_VERSION|g" \
    "$CLUSTER_SRC/manifests/keda/kustomization.yaml" > "$work/install/kustomization.yaml"
kubectl kustomize "$work/install" > "$work/keda.yaml"
# Server-side: KEDA's CRDs are larger than the annotation a client-side
# apply keeps.
kubectl apply --server-side --force-conflicts -f "$work/keda.yaml" >"$LOGS/keda-apply.log" 2>&1 \
    || { tail -20 "$LOGS/keda-apply.log" >&2; die "kubectl apply of KEDA failed"; }

# ---- ready: both Deployments, then the APIService (the operator writes the
# certificates the metrics apiserver serves with, and their CA into it)
for d in keda-operator keda-metrics-apiserver; do
    kubectl -n keda rollout status "deploy/$d" --timeout=240s >/dev/null \
        || { kubectl -n keda logs "deploy/$d" --tail=30 >&2 || true; die "$d did not become ready"; }
done
wait_for "external metrics API (KEDA) available" 180 sh -c \
    "kubectl get apiservice v1beta1.external.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type==\"Available\")].status}' | grep -qx True"
say "KEDA $KEDA_VERSION ready (namespace keda)"

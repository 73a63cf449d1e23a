# shellcheck shell=bash disable=SC2034
# Image helpers the cluster scripts share: podman builds skipped when their
# inputs did not change, and images handed to the cluster's containerd.
#   . cluster/images.sh   (after cluster/env.sh and cluster/lib.sh)
# Images are built in the project's podman store (scripts/podman-env.sh), the
# one `make image` uses, so the stand-ins start FROM the same
# debian:bookworm-slim that scripts/base-image.sh made for the surge image.

. "$SURGE_ROOT/scripts/podman-env.sh"
podman_() { nice -n 19 podman "$@"; }

INPUTS_LABEL=surge.cluster.inputs
# --network host: apt-get inside a build reaches the Debian mirror as the host does.
# --squash-all: one layer, so that no file deleted by a later step (see
# images/redis/Containerfile: *.d) is still in a lower layer's snapshot.
BUILD_FLAGS=(--squash-all --network host --pull=never)

# image_build TAG DIR [FILE...]: podman build of DIR/Containerfile with the
# FILEs copied into the context. Skipped when TAG exists and was built from
# the same inputs (DIR, FILEs, build flags and the base image), whatever the
# checkout.
image_build() {
    local tag=$1 dir=$2 from hash ctx
    shift 2
    from=$(awk '/^FROM /{print $2; exit}' "$dir/Containerfile")
    hash=$({ inputs_hash "$dir"/* "$@"
             echo "${BUILD_FLAGS[*]}"
             [[ $from == scratch ]] || podman_ image inspect --format '{{.Id}}' "$from"; } \
           | sha256sum | cut -c1-16)
    if [[ $(podman_ image inspect --format "{{index .Labels \"$INPUTS_LABEL\"}}" "$tag" 2>/dev/null) == "$hash" ]]; then
        return 0
    fi
    say "podman build $tag"
    ctx=$IMAGES/context/$(basename "$dir")
    rm -rf "$ctx"
    mkdir -p "$ctx" "$LOGS"
    cp -a "$dir"/. "$ctx"/
    [[ $# -eq 0 ]] || cp "$@" "$ctx"/
    podman_ build "${BUILD_FLAGS[@]}" --label "$INPUTS_LABEL=$hash" -t "$tag" "$ctx" \
        >"$LOGS/image-$(basename "$dir").log" 2>&1 \
        || { tail -30 "$LOGS/image-$(basename "$dir").log" >&2; die "podman build $tag failed"; }
    rm -rf "$ctx"
}

# image_ids TAG...: the podman image IDs of the TAGs, one line.
image_ids() {
    local t
    for t in "$@"; do podman_ image inspect --format '{{.Id}}' "$t"; done | tr '\n' ' '
}

# image_archive NAME TAG...: IMAGES/NAME.tar (docker-archive) holding the
# TAGs, rewritten only when one of their image IDs changed.
image_archive() {
    local name=$1 ids
    shift
    ids=$(image_ids "$@")
    [[ -f $IMAGES/$name.tar && $(cat "$IMAGES/$name.ids" 2>/dev/null) == "$ids" ]] && return 0
    say "podman save $name ($*)"
    mkdir -p "$IMAGES" "$LOGS"
    rm -f "$IMAGES/$name.tar" "$IMAGES/$name.ids"   # podman save refuses to overwrite
    podman_ save -q -m --format docker-archive -o "$IMAGES/$name.tar" "$@"
    echo "$ids" > "$IMAGES/$name.ids"
}

# image_import NAME: imports IMAGES/NAME.tar into the cluster's containerd,
# unless this archive was the last one imported under NAME.
image_import() {
    local name=$1 stamp=$STATE/containerd-imported/$1
    [[ -f $stamp && $(cat "$stamp") == "$(cat "$IMAGES/$name.ids")" ]] && return 0
    mkdir -p "$(dirname "$stamp")"
    ctr -a "$CONTAINERD_SOCK" -n k8s.io images import --all-platforms "$IMAGES/$name.tar" >/dev/null
    cp "$IMAGES/$name.ids" "$stamp"
    say "imported $name into containerd"
}

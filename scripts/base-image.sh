#!/usr/bin/env bash
# Makes sure podman has docker.io/library/debian:bookworm-slim, the base of
# the Dockerfile. Where the registry can be reached, `podman pull` is enough;
# where it cannot (an offline or registry-less machine), the image is made
# locally once with debootstrap and kept in podman's store, so the very same
# Dockerfile builds everywhere. Usage: scripts/base-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/podman-env.sh

IMAGE=docker.io/library/debian:bookworm-slim
if podman image exists "$IMAGE"; then
    exit 0
fi
if [[ "${SURGE_BASE_PULL:-0}" == 1 ]] && podman pull "$IMAGE"; then
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is missing (scripts/install-deps.sh image)" >&2; exit 1; }

dir=build/base-rootfs
rm -rf "$dir"
mkdir -p "$dir"
echo "base-image: debootstrap --variant=minbase bookworm $dir" >&2
for attempt in 1 2; do   # a second try rides out a passing mirror hiccup
    if debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >build/base-image.log 2>&1; then
        break
    fi
    if [[ $attempt == 2 ]]; then tail -20 build/base-image.log >&2; exit 1; fi
    rm -rf "$dir"; mkdir -p "$dir"
done

# The same apt sources and slimming rules as the official -slim image.
rm -f "$dir/etc/apt/sources.list"
cat > "$dir/etc/apt/sources.list.d/debian.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
cat > "$dir/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat > "$dir/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
       "$dir"/usr/share/doc/*/changelog* "$dir"/usr/share/man/* "$dir"/usr/share/info/*

tar --numeric-owner -C "$dir" -c . | podman import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
rm -rf "$dir"
echo "base-image: imported $IMAGE" >&2

#!/usr/bin/env bash
# Assembles the runtime root filesystem of the image (Dockerfile, build stage):
# the given binaries in /usr/local/bin, every shared library they load (their
# ldd closure, dynamic loader included) at the same paths as on Debian, the
# copyright files of the Debian packages those libraries come from and of
# those whose sources are compiled into the binaries (COMPILED_IN), and
# passwd/group entries for the unprivileged user 10001.
# Usage: scripts/image-rootfs.sh OUT BINARY...
set -euo pipefail
out="$1"; shift
mkdir -p "$out/usr/local/bin" "$out/etc"

# Merged /usr: keep Debian's /lib and /lib64 symlinks so the loader path
# written in the binaries (/lib64/ld-linux-*.so.2) resolves.
for d in lib lib64; do
    if [[ -L "/$d" ]]; then ln -sfn "$(readlink "/$d")" "$out/$d"; fi
done

copy_file() {  # copy_file PATH: the file PATH points to, at PATH's canonical place
    local src="$1" dst
    dst="$(readlink -f "$(dirname "$src")")/$(basename "$src")"
    mkdir -p "$out$(dirname "$dst")"
    cp -L "$src" "$out$dst"
}

libs=()
for bin in "$@"; do
    install -m 0755 "$bin" "$out/usr/local/bin/"
    strip --strip-debug "$out/usr/local/bin/$(basename "$bin")"
    interp="$(readelf -l "$bin" | sed -n 's/.*interpreter: \(.*\)]/\1/p')"
    libs+=("$interp")
    while read -r lib; do libs+=("$lib"); done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)

# Code compiled in has no library for ldd to find; its licence travels too.
# Keep in sync with the Makefile (LLHTTP_SRC) and scripts/install-deps.sh.
COMPILED_IN=(node-llhttp libjsmn-dev)
pkgs=("${COMPILED_IN[@]}")
for lib in "${libs[@]}"; do
    copy_file "$lib"
    owner="$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null || true)"
    [[ -n "$owner" ]] || { echo "image-rootfs: no Debian package owns $lib" >&2; exit 1; }
    pkgs+=("${owner%%:*}")
done
for pkg in $(printf '%s\n' "${pkgs[@]}" | sort -u); do
    mkdir -p "$out/usr/share/doc/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$out/usr/share/doc/$pkg/copyright"
done

cat > "$out/etc/passwd" <<'PW'
root:x:0:0:root:/root:/usr/sbin/nologin
surge:x:10001:10001:surge:/nonexistent:/usr/sbin/nologin
PW
cat > "$out/etc/group" <<'GR'
root:x:0:
surge:x:10001:
GR
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$out/etc/nsswitch.conf"

# Proof that nothing is missing: the loader resolves every library inside OUT.
for bin in "$@"; do
    chroot "$out" "${libs[0]}" --list "/usr/local/bin/$(basename "$bin")" >/dev/null \
        || { echo "image-rootfs: $(basename "$bin") does not resolve its libraries in $out" >&2; exit 1; }
done
echo "image-rootfs: $# binaries, ${#libs[@]} libraries, $(du -sh "$out" | cut -f1)" >&2

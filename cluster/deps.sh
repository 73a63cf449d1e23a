#!/usr/bin/env bash
# Installs the Debian packages the cluster runs on when one is missing:
# etcd, containerd, runc, the CNI plugins, iptables, ipset (kube-router),
# conntrack, podman and debootstrap (images), openssl (certificates).
# As scripts/install-deps.sh does: as root it runs apt-get, otherwise it
# prints the apt-get line and fails. Usage: cluster/deps.sh
set -euo pipefail

PKGS="containerd runc containernetworking-plugins etcd-server iptables ipset conntrack
      iproute2 podman debootstrap uidmap openssl curl ca-certificates"

missing=()
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "cluster: these Debian packages are missing; as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "cluster: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

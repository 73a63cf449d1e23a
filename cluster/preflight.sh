#!/usr/bin/env bash
# Says in one line what this machine lacks to run the cluster, and fails;
# silent when nothing is missing. Checked: root, the capabilities the
# cluster uses (CAP_NET_ADMIN: bridges and iptables; CAP_SYS_ADMIN: mounts,
# network namespaces), and cgroups with the cpu, memory and pids controllers
# (v1 hierarchies or a v2 root) that the kubelet needs.
# Usage: cluster/preflight.sh
set -euo pipefail

missing=()
uid=$(id -u)
[[ $uid -eq 0 ]] || missing+=("not root (uid $uid; the cluster creates bridges, iptables rules and mounts)")

if [[ $uid -eq 0 ]]; then
    caps=$((16#$(awk '/^CapEff:/{print $2}' /proc/self/status)))
    (( caps >> 12 & 1 )) || missing+=("no CAP_NET_ADMIN")
    (( caps >> 21 & 1 )) || missing+=("no CAP_SYS_ADMIN")
fi

cg=/sys/fs/cgroup
have_controller() {
    [[ -f $cg/cgroup.controllers ]] && grep -qw "$1" "$cg/cgroup.controllers" && return 0
    [[ -f $cg/$1/cgroup.procs ]]   # v1: one hierarchy per controller (cpu may be a link to cpu,cpuacct)
}
lacking=()
for c in cpu memory pids; do have_controller "$c" || lacking+=("$c"); done
if [[ ${#lacking[@]} -gt 0 ]]; then
    missing+=("no cgroups: controller(s) ${lacking[*]} not mounted under $cg")
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    msg=$(printf '%s; ' "${missing[@]}")
    echo "cluster: this machine cannot run the cluster: ${msg%; }" >&2
    exit 1
fi

#!/usr/bin/env bash
# Prints what of a cluster of these scripts is still on this machine, from
# this checkout or any other (any .../build/cluster folder, and the one the
# marker names): processes, links, iptables chains and rules, ipsets, mounts,
# cgroups, files in fixed system paths, the marker and the sysctls it
# recorded. Exits 1 when anything is found, 0 (printing "nothing") when the
# machine is clean. After `make cluster-down` it must find nothing.
# Usage: cluster/leftovers.sh
set -uo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

found=0
report() { echo "leftover $1: $2"; found=1; }

dirs=("$CLUSTER_DIR" "*/build/cluster")
recorded=$(cat "$MARKER/workdir" 2>/dev/null || true)
[[ -n $recorded ]] && dirs+=("$recorded")

[[ -e $MARKER ]] && report marker "$MARKER (cluster folder: ${recorded:-?})"

for pid in $(our_pids "${dirs[@]}"); do
    report process "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-150)"
done

for l in "$NODE_IF" "$POD_IF"; do
    ip link show "$l" >/dev/null 2>&1 && report link "$l"
done
for v in $(ip -o link show master "$POD_IF" 2>/dev/null | awk -F': ' '{print $2}'); do
    report link "$v (on $POD_IF)"
done

for ipt in iptables ip6tables iptables-legacy ip6tables-legacy; do
    command -v "$ipt-save" >/dev/null || continue
    for table in filter nat mangle raw; do
        while read -r line; do
            [[ -n $line ]] && report "$ipt $table" "$line"
        done < <(our_chains "$ipt" "$table")
    done
done

for s in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-|^kube-router'); do
    report ipset "$s"
done

while read -r m; do
    report mount "$m"
done < <(awk -v d="$CLUSTER_DIR/" -v r="${recorded:+$recorded/}" \
    'index($2, d) == 1 || (r != "" && index($2, r) == 1) || $2 ~ /\/build\/cluster\// {print $2}' /proc/self/mounts)

for h in $(cgroup_roots); do
    [[ -d $h/$CGROUP_ROOT ]] && report cgroup "$h/$CGROUP_ROOT"
done

if [[ -d /run/containerd/s ]]; then
    listening=$(awk 'NR > 1 && $8 != "" {print $8}' /proc/net/unix)
    for s in /run/containerd/s/*; do
        [[ -S $s ]] && ! grep -qxF "$s" <<<"$listening" && report "shim socket" "$s (nobody listens)"
    done
fi
[[ -S /var/lib/kubelet/device-plugins/kubelet.sock ]] && report file /var/lib/kubelet/device-plugins/kubelet.sock
for f in /var/lib/cni/results/"$CNI_NET"-* \
         $(grep -l K8S_POD_INFRA_CONTAINER_ID /var/lib/cni/results/cni-loopback-* 2>/dev/null); do
    [[ -e $f ]] && report file "$f"
done
for l in /var/log/containers/*; do
    [[ -L $l && $(readlink "$l") == */build/cluster/* ]] && report file "$l"
done

if [[ -f $MARKER/sysctl.before ]]; then
    while IFS='=' read -r key value; do
        grep -qwF -- "$key" <<<"$SYSCTLS" || continue
        now=$(sysctl -n "$key" 2>/dev/null)
        [[ $now == "$value" ]] || report sysctl "$key=$now (was $value)"
    done < "$MARKER/sysctl.before"
fi

[[ $found -eq 0 ]] && echo "leftovers: nothing"
exit "$found"

#!/usr/bin/env bash
# Removes from the machine whatever a cluster of these scripts left on it,
# whichever checkout started it (its folder is read from the machine-wide
# marker /run/surge-cluster) and even when its processes were killed without
# cluster-down: processes (by PID: the cluster's programs, containerd's shims,
# every process in the pods' cgroups), mounts and network namespaces under
# its folder, the bridges and their veths, the iptables chains of kube-proxy,
# the kubelet and kube-router, kube-router's ipsets, the sysctls changed
# (restored to the values recorded before the first start), the pods'
# cgroups, shim sockets and the other files in fixed system paths, then the
# marker itself. The cluster's state (etcd data, certificates, images) is kept.
#   cluster/sweep.sh             everything, now (cluster/down.sh calls it last)
#   cluster/sweep.sh --if-stale  only when something is left over, i.e. unless
#                                this checkout's cluster is complete and running
set -uo pipefail   # no -e: every step cleans what it can, whatever the others did
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

recorded=$(cat "$MARKER/workdir" 2>/dev/null || true)
if [[ ${1:-} == --if-stale ]]; then
    if [[ $recorded == "$CLUSTER_DIR" ]] && all_running; then exit 0; fi
    if [[ -z $recorded ]] && "$CLUSTER_SRC/leftovers.sh" >/dev/null 2>&1; then exit 0; fi
    say "removing what an earlier cluster left${recorded:+ (started from $recorded)}"
fi
dirs=("$CLUSTER_DIR")
[[ -n $recorded && $recorded != "$CLUSTER_DIR" ]] && dirs+=("$recorded")

# ---- processes: SIGKILL (what is left here is stale; cluster/down.sh stops
# the live components gracefully before calling this)
for i in $(seq 1 20); do
    mapfile -t pids < <(our_pids "${dirs[@]}")
    [[ ${#pids[@]} -eq 0 ]] && break
    [[ $i -eq 1 ]] && say "killing ${#pids[@]} processes: $(for p in "${pids[@]}"; do printf '%s(%s) ' "$p" "$(cat /proc/"$p"/comm 2>/dev/null)"; done)"
    kill -9 "${pids[@]}" 2>/dev/null
    sleep 0.5
done
[[ ${#pids[@]} -eq 0 ]] || say "WARNING: processes still alive: ${pids[*]}"

# ---- mounts under the cluster folders (pod volumes, container root
# filesystems, shm, network namespaces), deepest first
for d in "${dirs[@]}"; do
    for pass in 1 2 3; do
        mapfile -t mounts < <(awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
        [[ ${#mounts[@]} -eq 0 ]] && break
        [[ $pass -eq 1 ]] && say "unmounting ${#mounts[@]} mounts under $d"
        for m in "${mounts[@]}"; do
            m=$(printf '%b' "$m")   # /proc/self/mounts escapes blanks as \040
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        done
    done
done

# ---- links: the veths of the pods' bridge (gone with their namespaces,
# normally), then both bridges
for v in $(ip -o link show master "$POD_IF" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null && say "deleted veth $v"
done
for l in "$POD_IF" "$NODE_IF"; do
    ip link show "$l" >/dev/null 2>&1 && ip link del "$l" && say "deleted link $l"
done

# ---- iptables chains and ipsets: only when no other Kubernetes runs here
# (their chain names are the same)
if other=$(foreign_k8s "${dirs[@]}"); then
    say "WARNING: $other runs on this machine: KUBE-* chains and ipsets left alone"
else
    for ipt in iptables ip6tables iptables-legacy ip6tables-legacy; do
        purge_chains "$ipt"
    done
    for s in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-|^kube-router'); do
        ipset destroy "$s" 2>/dev/null && n_sets=$((${n_sets:-0} + 1))
    done
    [[ -z ${n_sets:-} ]] || say "destroyed $n_sets ipsets"
fi
# connection tracking entries of pod and service addresses
for net in "$CLUSTER_CIDR" "$SERVICE_CIDR"; do
    conntrack -D -s "$net" >/dev/null 2>&1
    conntrack -D -d "$net" >/dev/null 2>&1
done

# ---- sysctls: back to the values found before the first start, unless
# something else changed one after this cluster started (then it is theirs)
if [[ -f $MARKER/sysctl.before ]]; then
    while IFS='=' read -r key value; do
        grep -qwF -- "$key" <<<"$SYSCTLS" || continue   # not one this version sets
        now=$(sysctl -n "$key" 2>/dev/null)
        [[ $now == "$value" ]] && continue
        after=$(sed -n "s/^$key=//p" "$MARKER/sysctl.after" 2>/dev/null)
        if [[ -n $after && $now != "$after" ]]; then
            say "left $key=$now: changed by something else since the cluster started (was $value)"
            continue
        fi
        sysctl -qw "$key=$value" && say "restored $key=$value"
    done < "$MARKER/sysctl.before"
fi

# ---- the pods' cgroups (empty now)
for h in $(cgroup_roots); do
    [[ -d $h/$CGROUP_ROOT ]] || continue
    find "$h/$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ -d $h/$CGROUP_ROOT ]] && say "WARNING: $h/$CGROUP_ROOT could not be removed"
done

# ---- files in fixed system paths
# containerd 1.6 puts shim sockets in /run/containerd/s whatever its state
# directory: ours are named in each task's "address" file.
for d in "${dirs[@]}"; do
    for f in "$d"/run/containerd/io.containerd.runtime.v2.task/*/*/address; do
        [[ -f $f ]] || continue
        s=$(sed 's|^unix://||' "$f")
        [[ $s == /run/containerd/s/* && -S $s ]] && rm -f "$s"
    done
done
# Sockets nobody listens on any more, when no other containerd runs.
if [[ -d /run/containerd/s ]] && ! pgrep -x containerd >/dev/null; then
    listening=$(awk 'NR > 1 && $8 != "" {print $8}' /proc/net/unix)
    for s in /run/containerd/s/*; do
        [[ -S $s ]] && ! grep -qxF "$s" <<<"$listening" && rm -f "$s"
    done
fi
[[ -S /var/lib/kubelet/device-plugins/kubelet.sock ]] && ! pgrep -x kubelet >/dev/null \
    && rm -f /var/lib/kubelet/device-plugins/kubelet.sock
# libcni's cache: our network's results, and the loopback results that
# containerd's CRI writes for each pod sandbox (no other CRI runs here)
rm -f /var/lib/cni/results/"$CNI_NET"-*
grep -l K8S_POD_INFRA_CONTAINER_ID /var/lib/cni/results/cni-loopback-* 2>/dev/null | xargs -r rm -f
for l in /var/log/containers/*; do
    [[ -L $l ]] || continue
    for d in "${dirs[@]}"; do [[ $(readlink "$l") == "$d/"* ]] && rm -f "$l"; done
done
# the fixed directories themselves, when the first start made them and they are empty
if [[ -f $MARKER/created ]]; then
    while read -r p; do
        [[ -d $p ]] && find "$p" -depth -type d -empty -delete 2>/dev/null
    done < "$MARKER/created"
fi

# ---- what no pod needs any more: IP reservations, PID files
for d in "${dirs[@]}"; do
    rm -rf "${d:?}/state/cni/ipam/$CNI_NET"
    rm -f "$d"/run/*.pid
done
rm -rf "$MARKER"
say "machine clean"

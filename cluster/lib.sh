# shellcheck shell=bash disable=SC2034
# Shell helpers the cluster scripts share: timed messages, daemons started
# and stopped by PID, files rewritten only when their content changes, waits.
#   . cluster/lib.sh   (after cluster/env.sh)

_t0=$(date +%s)
_tag=$(basename "$0" .sh)
say() { echo "[$_tag +$(( $(date +%s) - _t0 ))s] $*"; }
die() { echo "$_tag: $*" >&2; exit 1; }

# pid_of NAME: the PID recorded for daemon NAME, if that process still runs
# the command it was started with (a recycled PID is never taken for ours).
pid_of() {
    local f=$RUN/$1.pid pid want
    [[ -f $f ]] || return 1
    read -r pid want < "$f" || return 1
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    [[ $(tr '\0' ' ' < "/proc/$pid/cmdline") == "$want"* ]] || return 1
    echo "$pid"
}
running() { pid_of "$1" >/dev/null; }

# start_daemon NAME CMD...: starts CMD in its own session, log in
# $LOGS/NAME.log, "PID CMD" in $RUN/NAME.pid; a running NAME is left alone.
start_daemon() {
    local name=$1; shift
    if running "$name"; then say "$name already running (pid $(pid_of "$name"))"; return 0; fi
    setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo "$! $*" > "$RUN/$name.pid"
    say "started $name (pid $!)"
}

# stop_daemons NAME...: SIGTERM to each recorded process at once, up to 20 s
# for all of them to end, then SIGKILL; their PID files are removed.
stop_daemons() {
    local name pid pids=() names=() i
    for name in "$@"; do
        if pid=$(pid_of "$name"); then
            kill "$pid" 2>/dev/null && { pids+=("$pid"); names+=("$name"); }
        fi
        rm -f "$RUN/$name.pid"
    done
    [[ ${#pids[@]} -gt 0 ]] || return 0
    for i in $(seq 1 100); do
        kill -0 "${pids[@]}" 2>/dev/null || break   # succeeds while any is alive
        sleep 0.2
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    say "stopped ${names[*]}"
}

# putfile PATH < content: writes PATH only when the content differs
# (kube-proxy exits when its configuration file changes under it).
putfile() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat > "$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

# wait_for DESCRIPTION SECONDS CMD...: polls CMD every second until it succeeds.
wait_for() {
    local what=$1 limit=$2 i=0; shift 2
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [[ $i -lt $limit ]] || die "timed out after ${limit}s waiting for $what (logs: $LOGS)"
        sleep 1
    done
    say "$what ($i s)"
}

# inputs_hash FILE...: one hash of the files' names and contents (build caches).
inputs_hash() {
    local f
    for f in "$@"; do echo "${f#"$SURGE_ROOT"/}"; cat "$f"; done | sha256sum | cut -c1-16
}

# go_env: the go command works under build/cluster/go only (GOPATH, module
# cache, build cache), builds static binaries and never changes toolchain.
go_env() {
    command -v go >/dev/null || die "the go command (1.24 or newer) is needed to build the cluster"
    export GOPATH=$GO_DIR GOMODCACHE=$GO_DIR/pkg/mod GOCACHE=$GO_DIR/cache
    export GOFLAGS="-buildvcs=false -modcacherw -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local
}

# record_sysctls FILE: "key=value" for each of SYSCTLS, now.
record_sysctls() {
    local key value
    for key in $SYSCTLS; do
        value=$(sysctl -n "$key" 2>/dev/null) && echo "$key=$value"
    done > "$1.tmp"
    mv "$1.tmp" "$1"
}

# cgroup_roots: the mounted cgroup hierarchies (v1: one per controller, v2: one).
cgroup_roots() {
    awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts
}

# The daemons of a complete cluster, in start order.
DAEMONS="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router"
all_running() {
    local n
    for n in $DAEMONS; do running "$n" || return 1; done
}

# our_pids DIR...: PIDs of the processes of the clusters whose folders are
# DIRs (glob patterns allowed): programs run from DIR/bin, Debian's etcd,
# containerd, its shims and runc started with DIR in their arguments, and
# every process in the pods' cgroups (/surge/...). The caller is never listed.
our_pids() {
    local p pid exe cmd d
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        exe=$(readlink "$p/exe" 2>/dev/null) || continue   # kernel threads have none
        cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)
        for d in "$@"; do
            # shellcheck disable=SC2053 # $d may be a pattern
            if [[ $exe == $d/bin/* ]]; then echo "$pid"; continue 2; fi
            case ${exe##*/} in
                etcd | containerd | containerd-shim-runc-v2 | runc)
                    # shellcheck disable=SC2053
                    if [[ $cmd == *$d/* ]]; then echo "$pid"; continue 2; fi ;;
            esac
        done
        grep -qE "^[0-9]+:[^:]*:/$CGROUP_ROOT(/|\$)" "$p/cgroup" 2>/dev/null && echo "$pid"
    done
}

# foreign_k8s DIR...: succeeds, naming it, when a Kubernetes node component
# that is not one of the clusters in DIRs runs here (its iptables chains have
# the same names as ours).
foreign_k8s() {
    local p exe d mine
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        case ${exe##*/} in kubelet | kube-proxy | kube-router | kube-apiserver) ;; *) continue ;; esac
        mine=
        for d in "$@"; do [[ $exe == "$d/bin/"* ]] && mine=1; done
        [[ -n $mine ]] && continue
        echo "${exe##*/} (pid ${p#/proc/}, $exe)"
        return 0
    done
    return 1
}

# our_chains CMD TABLE: the chains of kube-proxy, the kubelet and kube-router
# (KUBE-*) in TABLE, and the rules of built-in chains that jump to them.
our_chains() {
    local dump
    dump=$("$1-save" -t "$2" 2>/dev/null) || return 0
    grep -E '^:KUBE-' <<<"$dump" | cut -d' ' -f1
    grep -E '^-A ' <<<"$dump" | grep -vE '^-A KUBE-' | grep -E -- '-[jg] KUBE-|kube-router' || true
}

# purge_chains CMD: removes our_chains from every table of CMD (iptables,
# ip6tables, iptables-legacy, ip6tables-legacy) in one restore per table.
purge_chains() {
    local ipt=$1 table lines chains
    command -v "$ipt-restore" >/dev/null || return 0
    for table in filter nat mangle raw; do
        lines=$(our_chains "$ipt" "$table")
        [[ -n $lines ]] || continue
        chains=$(grep '^:' <<<"$lines" | cut -c2-)
        {
            echo "*$table"
            grep '^-A ' <<<"$lines" | sed 's/^-A /-D /'
            for c in $chains; do echo "-F $c"; done
            for c in $chains; do echo "-X $c"; done
            echo COMMIT
        } | "$ipt-restore" --noflush -w 5 && say "removed $(wc -w <<<"$chains") chains from $ipt $table"
    done
}

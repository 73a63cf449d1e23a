# Sourced by the project's scripts before they call podman:
#   . scripts/podman-env.sh
# Writes build/podman/containers.conf and exports CONTAINERS_CONF, so podman
# works the same on a workstation, in a container-in-container sandbox and in
# CI (runc, cgroupfs, file events, explicit ulimits). Nothing under /etc is
# touched.
_surge_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$_surge_root/build/podman"
cat > "$_surge_root/build/podman/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$_surge_root/build/podman/containers.conf"
unset _surge_root

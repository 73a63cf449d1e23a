# surge on a real single-node Kubernetes cluster built and run on this machine
# (cluster/README.md): root and cgroups needed, everything under build/cluster.
#   make cluster-build    build what the cluster needs (cached)
#   make cluster          build if needed, then start it (idempotent)
#   make cluster-down     stop it, leave the machine as found (PURGE=1: state too)
#   make cluster-leftovers  what of a cluster is still on the machine

.PHONY: cluster-build cluster cluster-down cluster-leftovers

cluster-build:
	cluster/build.sh

# The preflight first: a machine that cannot run it says so at once, not
# after a build.
cluster:
	cluster/preflight.sh
	cluster/build.sh
	cluster/up.sh

cluster-down:
	cluster/down.sh $(if $(PURGE),--purge)

cluster-leftovers:
	cluster/leftovers.sh

# surge on a real single-node Kubernetes cluster built and run on this machine
# (cluster/README.md): root and cgroups needed, everything under build/cluster.
#   make cluster-build    build what the cluster needs (cached)
#   make cluster          build if needed, then start it (idempotent)
#   make cluster-deploy   surge's image and stand-ins, then an overlay
#                         (OVERLAY=k8s/overlays/kind) with a smoke read job
#   make cluster-keda     KEDA on it (built here from its module, cached;
#                         cluster/keda.sh), then `make cluster-deploy OVERLAY=keda/kind`
#   make cluster-keda-delete  KEDA removed again
#   make cluster-down     stop it, leave the machine as found (PURGE=1: state too)
#   make cluster-leftovers  what of a cluster is still on the machine

OVERLAY ?= k8s/overlays/kind

.PHONY: cluster-build cluster cluster-deploy cluster-undeploy cluster-keda cluster-keda-delete cluster-down \
        cluster-leftovers

cluster-build:
	cluster/build.sh

# The preflight first: a machine that cannot run it says so at once, not
# after a build.
cluster:
	cluster/preflight.sh
	cluster/build.sh
	cluster/up.sh

cluster-deploy:
	cluster/deploy.sh $(OVERLAY)

cluster-undeploy:
	cluster/deploy.sh --delete

cluster-keda:
	cluster/keda.sh

cluster-keda-delete:
	cluster/keda.sh --delete

cluster-down:
	cluster/down.sh $(if $(PURGE),--purge)

cluster-leftovers:
	cluster/leftovers.sh

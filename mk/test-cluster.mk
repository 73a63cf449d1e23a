# surge on a real cluster, in CI after `make test` (.ci/run):
#   make test-cluster   the cluster of cluster/ started (built the first
#                       time), surge deployed from test/cluster/overlay, the
#                       tests of test/cluster/, then the cluster stopped and
#                       the machine checked clean. Fails, never skips, when
#                       the cluster cannot start.
#     SURGE_SKIP_CLUSTER=1  skip it, loudly (no root, no cgroups)
#     KEEP_CLUSTER=1        leave the cluster up afterwards, for debugging
#     CLUSTER_TESTS=...     pytest arguments instead of the whole suite
# docs/kubernetes.md ("The project's own cluster") says what it proves.

.PHONY: test-cluster
test-cluster: venv
	test/cluster/run.sh

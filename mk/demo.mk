# surge: monitoring and the scaling demonstration (docs/demo.md, docs/monitoring.md).
#   make demo              on the cluster of the current kubectl context: preflight, deploy,
#                          port-forward, a burst of burn jobs, a line every 5 s, then reports/<time>/
#   make demo-preflight    only the checks: what is missing on that cluster
#   make demo-local        the same recorder against `make run` (run that in another terminal)
#   make prometheus-local  Prometheus on 127.0.0.1:9099 with monitoring/prometheus.yml, against `make run`
#   make monitoring-sync   copy monitoring/ sources into k8s/monitoring after editing them
#   make test-monitoring   metrics, rules, dashboard queries, tools and the local demo report
# DEMO_ARGS passes options to tools/surge-demo (e.g. DEMO_ARGS="--jobs 40 --burn-seconds 60");
# DEMO_OVERLAY picks the kustomization (default: from the context and whether KEDA is installed).

DEMO_ARGS    ?=
DEMO_OVERLAY ?=
PROMETHEUS_LOCAL_PORT ?= 9099
# The addresses `make run` uses (scripts/run-local.sh and its SURGE_LOCAL_* variables).
DEMO_LOCAL_API   = 127.0.0.1:$(or $(SURGE_LOCAL_API_PORT),8080)
DEMO_LOCAL_REDIS = redis://127.0.0.1:$(or $(SURGE_LOCAL_REDIS_PORT),6379)/0
DEMO_LOCAL_ADMIN = $(or $(SURGE_LOCAL_ADMIN_PORT),9090)
DEMO_LOCAL_WORKERS = 127.0.0.1:$(shell echo $$(($(DEMO_LOCAL_ADMIN) + 1))),127.0.0.1:$(shell echo $$(($(DEMO_LOCAL_ADMIN) + 2)))

.PHONY: demo demo-preflight demo-local prometheus-local monitoring-sync test-monitoring

demo:
	tools/surge-demo cluster $(if $(DEMO_OVERLAY),--overlay $(DEMO_OVERLAY)) $(DEMO_ARGS)

demo-preflight:
	tools/surge-demo preflight $(if $(DEMO_OVERLAY),--overlay $(DEMO_OVERLAY))

demo-local:
	tools/surge-demo local --api $(DEMO_LOCAL_API) --redis $(DEMO_LOCAL_REDIS) \
	    --worker-metrics $(DEMO_LOCAL_WORKERS) $(DEMO_ARGS)

prometheus-local:
	@command -v prometheus >/dev/null || { echo "prometheus is missing: make deps" >&2; exit 1; }
	@mkdir -p .data/prometheus
	prometheus --config.file=monitoring/prometheus.yml --storage.tsdb.path=.data/prometheus \
	    --web.listen-address=127.0.0.1:$(PROMETHEUS_LOCAL_PORT)

monitoring-sync:
	tools/monitoring-sync

test-monitoring: venv all
	scripts/install-deps.sh test
	$(PYTEST) -q test/monitoring

test-extra:: test-monitoring

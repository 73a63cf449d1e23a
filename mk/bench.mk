# surge: performance against ceilings measured in the same run (docs/performance.md).
#   make bench           Redis + PostgreSQL of its own, the release binaries, wrk,
#                        redis-benchmark, pgbench; prints one table and writes
#                        build/bench/results.json (about 3 minutes)
#   make bench-profile   where the CPU goes: perf (or callgrind where perf has no
#                        counters) on surge-api under POST /jobs and on a worker
#                        draining read jobs; reports in build/bench/profile/
# BENCH_RUNS (3, at least 3) runs of each figure, BENCH_DURATION (5) seconds each.

BENCH_RUNS     ?= 3
BENCH_DURATION ?= 5
BENCH_OUT      ?= build/bench/results.json
# The image whose size is reported (mk/k8s.mk defines IMAGE).
BENCH_IMAGE    ?= $(IMAGE)

.PHONY: bench bench-deps bench-profile

bench-deps:
	scripts/install-deps.sh build run bench

bench: bench-deps
	$(MAKE) BUILD=release all
	python3 bench/bench.py --bin-dir build/release --out $(BENCH_OUT) \
	    --runs $(BENCH_RUNS) --duration $(BENCH_DURATION) --image '$(BENCH_IMAGE)'

bench-profile: bench-deps
	scripts/install-deps.sh test
	$(MAKE) BUILD=release all
	python3 bench/profile.py --bin-dir build/release --out build/bench/profile

# surge: performance against ceilings measured in the same run (docs/performance.md).
#   make bench           Redis + PostgreSQL of its own, the release binaries, wrk,
#                        redis-benchmark, pgbench; prints one table and writes
#                        build/bench/results.json, with the CPU time per POST and
#                        per read job of each party and callgrind instructions
#                        per POST and per read job (about 3 minutes)
#   make bench-profile   where the CPU goes: perf (or callgrind where perf has no
#                        counters) on surge-api under POST /jobs and on a worker
#                        draining read jobs; reports in build/bench/profile/
#   make parse-cost      instructions spent parsing one request (callgrind on
#                        bench/parse_cost.c): a figure no busy machine changes
# BENCH_RUNS (3, at least 3) runs of each figure, BENCH_DURATION (5) seconds each.

BENCH_RUNS     ?= 3
BENCH_DURATION ?= 5
BENCH_OUT      ?= build/bench/results.json
# The image whose size is reported (mk/k8s.mk defines IMAGE).
BENCH_IMAGE    ?= $(IMAGE)

.PHONY: bench bench-deps bench-profile parse-cost

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

PARSE_COST_N ?= 30000

$(OUT)/parse-cost: $(OUT)/bench/parse_cost.o $(COMMON_OBJ)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Three requests parsed PARSE_COST_N times each; only parse_requests() counts.
parse-cost:
	$(MAKE) BUILD=release build/release/parse-cost
	valgrind --tool=callgrind --callgrind-out-file=build/release/parse-cost.callgrind \
	    --toggle-collect=parse_requests build/release/parse-cost $(PARSE_COST_N)
	@awk -v n=$$(( $(PARSE_COST_N) / 10 * 10 * 3 )) '/^(summary|totals):/ {ir = $$2} \
	    END {printf "parse-cost: %d instructions for %d requests: %.0f per request\n", ir, n, ir / n}' \
	    build/release/parse-cost.callgrind

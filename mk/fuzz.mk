# libFuzzer harnesses (test/fuzz) for the HTTP request path and the job JSON
# path. `make fuzz FUZZ_SECONDS=300` runs each for that long; `make test`
# runs a short smoke of each. The committed seed corpus is read, never
# written: new inputs go to build/fuzz/corpus-*.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_FLAGS   := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 -Icommon \
                -isystem /usr/include/postgresql $(LLHTTP_FLAGS) -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all
FUZZ_LIBS    := $(LDLIBS)
FUZZ_SRC     := $(filter-out common/app.c,$(COMMON_SRC)) api/routes.c api/job_view.c api/idempotency.c \
                $(LLHTTP_SRC)
FUZZ_TARGETS := http json

build/fuzz/fuzz_%: test/fuzz/fuzz_%.c $(FUZZ_SRC) $(wildcard common/*.h api/*.h)
	@mkdir -p build/fuzz
	@echo "  FUZZ-CC $@"
	@$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRC) $(FUZZ_LIBS)

.PHONY: fuzz fuzz-build fuzz-smoke
fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

# Runs each harness for $(1) seconds and prints how many inputs it tried.
define run_fuzzer
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  echo "fuzz_$$t: $(1) s"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(1) -print_final_stats=1 -timeout=10 -artifact_prefix=build/fuzz/ \
	    build/fuzz/corpus-$$t test/fuzz/corpus/$$t > build/fuzz/fuzz_$$t.log 2>&1 \
	    || { tail -60 build/fuzz/fuzz_$$t.log; echo "fuzz_$$t FAILED"; exit 1; }; \
	  grep -E "stat::number_of_executed_units" build/fuzz/fuzz_$$t.log | sed "s/^/  fuzz_$$t /"; \
	done
endef

fuzz: fuzz-build
	$(call run_fuzzer,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call run_fuzzer,$(FUZZ_SMOKE_SECONDS))

test-extra:: fuzz-smoke

# surge — build, test and run. `make help` lists the targets.
# Build trees side by side: build/release (-O2), build/san (ASan+UBSan) and
# build/tsan (ThreadSanitizer, for the worker's burn threads).

CC      ?= cc
BUILD   ?= release
OUT     := build/$(BUILD)
PKGS    := libuv hiredis libpq
WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Werror
# llhttp (Debian's node-llhttp) ships C sources, not a library: they are
# compiled into the binaries as third-party code (its own warnings are not
# ours, so -w), in strict mode, with its header as a system header.
LLHTTP_DIR    := /usr/share/llhttp
LLHTTP_INC    := /usr/share/include/llhttp
LLHTTP_SRC    := $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c $(LLHTTP_DIR)/llhttp.c
LLHTTP_FLAGS  := -DLLHTTP_STRICT_MODE=1 -isystem $(LLHTTP_INC)
CFLAGS_COMMON := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g $(WARN) -MMD -MP \
                 -Icommon -isystem /usr/include/postgresql $(LLHTTP_FLAGS) \
                 $(shell pkg-config --cflags-only-other $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -luv -lhiredis -lpq) \
           -lpthread -lm

ifeq ($(BUILD),san)
  CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDFLAGS_MODE := -fsanitize=address,undefined
else ifeq ($(BUILD),tsan)
  CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=thread
  LDFLAGS_MODE := -fsanitize=thread
else
  CFLAGS_MODE := -O2
  LDFLAGS_MODE :=
endif
CFLAGS  += $(CFLAGS_COMMON) $(CFLAGS_MODE)
LDFLAGS += $(LDFLAGS_MODE)

COMMON_SRC := $(wildcard common/*.c)
API_SRC    := $(wildcard api/*.c)
WORKER_SRC := $(wildcard worker/*.c)
UNIT_SRC   := $(wildcard test/unit/*.c)

LLHTTP_OBJ := $(LLHTTP_SRC:$(LLHTTP_DIR)/%.c=$(OUT)/llhttp/%.o)
COMMON_OBJ := $(COMMON_SRC:%.c=$(OUT)/%.o) $(LLHTTP_OBJ)
API_OBJ    := $(API_SRC:%.c=$(OUT)/%.o)
WORKER_OBJ := $(WORKER_SRC:%.c=$(OUT)/%.o)
# Unit tests link the modules they test, minus the binaries' main().
UNIT_OBJ   := $(UNIT_SRC:%.c=$(OUT)/%.o) $(COMMON_OBJ) \
              $(filter-out $(OUT)/api/main.o,$(API_OBJ)) \
              $(filter-out $(OUT)/worker/main.o,$(WORKER_OBJ))

VENV    := .venv
PYTEST  := $(VENV)/bin/pytest

.PHONY: all san tsan deps venv unit test test-unit test-integration test-tsan run clean help
all: $(OUT)/surge-api $(OUT)/surge-worker

help:
	@echo "make            build build/release/surge-api and surge-worker"
	@echo "make san        the same with ASan+UBSan under build/san"
	@echo "make tsan       the same with ThreadSanitizer under build/tsan"
	@echo "make run        local Redis + PostgreSQL in .data/, the api and two workers"
	@echo "make test       install what is missing, then every test (release and san)"
	@echo "make cluster    build (once) and start a single-node Kubernetes here (root)"
	@echo "make cluster-deploy / cluster-down   surge on it / stop it"
	@echo "make cluster-keda   KEDA on it (built here), for OVERLAY=keda/kind"
	@echo "make test-cluster  the cluster, surge on it, the scaling demo with pods killed, KEDA"
	@echo "make clean      remove build/"

$(OUT)/surge-api: $(API_OBJ) $(COMMON_OBJ)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/surge-worker: $(WORKER_OBJ) $(COMMON_OBJ)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/unit-tests: $(UNIT_OBJ)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs check) $(LDLIBS)

$(OUT)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CFLAGS) -c -o $@ $<

$(OUT)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@ (llhttp)"
	@$(CC) -std=c11 -g -w -MMD -MP $(LLHTTP_FLAGS) $(CFLAGS_MODE) -c -o $@ $<

san:
	$(MAKE) BUILD=san all

tsan:
	$(MAKE) BUILD=tsan all

deps:
	scripts/install-deps.sh build run test

$(VENV)/.installed: test/requirements.txt $(wildcard test/*/requirements.txt)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check $(foreach f,$^,-r $(f))
	touch $@
venv: $(VENV)/.installed

test-unit:
	$(MAKE) BUILD=release build/release/unit-tests
	$(MAKE) BUILD=san build/san/unit-tests
	build/release/unit-tests
	build/san/unit-tests

# The release and the sanitizer suites run side by side: they spend their
# time waiting on events (heartbeats, deadlines, restarts), not on the CPU,
# and each starts its own Redis and PostgreSQL on free ports in its own
# folders. Measured on 2 cores: 7:19 and 7:23 side by side, 7:05 alone.
# Each suite's output is printed whole when it ends (--output-sync).
test-integration: venv all san
	$(MAKE) -j2 --output-sync=target test-integration-release test-integration-san

.PHONY: test-integration-release test-integration-san
test-integration-release test-integration-san: test-integration-%:
	SURGE_BIN_DIR=build/$* $(PYTEST) -q test/integration

# The threads of the worker (a burn runs on its own) under ThreadSanitizer:
# the burn unit tests and every integration test of a burn or a SIGTERM.
test-tsan: venv
	$(MAKE) BUILD=tsan all build/tsan/unit-tests
	CK_RUN_SUITE=burn TSAN_OPTIONS=halt_on_error=1 build/tsan/unit-tests
	SURGE_BIN_DIR=build/tsan $(PYTEST) -q test/integration -k "burn or sigterm"

test: deps
	$(MAKE) all san
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-tsan
	$(MAKE) test-extra

# Other test suites (manifests, image, metrics) hook in here from mk/*.mk.
.PHONY: test-extra
test-extra::
	@true

run: deps all
	scripts/run-local.sh

clean:
	rm -rf build

-include mk/*.mk
# Only this build tree's dependency files: build/ also holds the cluster's
# unpacked container images, whose own *.d files are not makefiles.
-include $(shell find $(OUT) -name '*.d' -type f 2>/dev/null)

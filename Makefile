# agent-obs -- one Makefile for the whole tree.
# Start here: `make run` (local stack), `make test` (unit + integration), `make bench`.
# Binaries land in build/; common/ builds into build/libcommon.a that every daemon links.

ifeq ($(origin CC),default)
CC        = gcc
endif
BUILD    ?= build
SANITIZE ?=
PKGS      = libmicrohttpd hiredis libcjson yaml-0.1 libpq libcrypto libcurl

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c17 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -Icommon -MMD -MP
CFLAGS  += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
LDFLAGS += -pthread
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

COMMON_SRC  = $(wildcard common/*.c)
COMMON_OBJ  = $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
DAEMONS     = collector processor streamer alerter
UNIT_SRC    = $(wildcard tests/unit/test_*.c)
UNIT_BIN    = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test unit bench chaos soak run up down status clean format fuzz fuzz-build
all: $(BUILD)/libcommon.a $(DAEMONS:%=$(BUILD)/%)

# Rebuild everything when the compiler flags change (e.g. SANITIZE=...).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@
FORCE:

$(BUILD)/obj/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	ar rcs $@ $^

define daemon_rule
$(1)_OBJ = $$(patsubst %.c,$(BUILD)/obj/%.o,$$(wildcard $(1)/*.c))
$(BUILD)/$(1): $$($(1)_OBJ) $(BUILD)/libcommon.a
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rule,$(d))))

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libcommon.a $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< $(filter %.o,$^) $(BUILD)/libcommon.a $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka)

# streamer: libwebsockets for the daemon only; its filter module is unit-tested.
$(BUILD)/streamer: LDLIBS += $(shell pkg-config --libs libwebsockets 2>/dev/null)
$(BUILD)/obj/streamer/%.o: CFLAGS += $(shell pkg-config --cflags libwebsockets 2>/dev/null)
$(BUILD)/tests/test_filter: $(BUILD)/obj/streamer/filter.o $(BUILD)/obj/streamer/event.o \
                            $(BUILD)/obj/streamer/route.o
$(BUILD)/tests/test_webconf: $(BUILD)/obj/streamer/webconf.o

# The streamer benchmark's load client (tests/bench/stream_bench.py runs it).
$(BUILD)/bench/ws_load: tests/bench/ws_load.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) -lhiredis
# Its peer: bare loopback-TCP fan-out, no streamer code (peer_bench.py runs it).
$(BUILD)/bench/fanout_floor: tests/bench/fanout_floor.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

# History (issue 6): the pure parts of the read API and the price table are unit-tested.
$(BUILD)/tests/test_api: $(BUILD)/obj/collector/api_query.o $(BUILD)/obj/collector/transcript.o
$(BUILD)/tests/test_prices: $(BUILD)/obj/processor/prices.o

# alerter (issue 4): the rule loader and the window/condition logic are unit-tested.
$(BUILD)/tests/test_rules: $(BUILD)/obj/alerter/rules.o
$(BUILD)/tests/test_eval: $(BUILD)/obj/alerter/rules.o $(BUILD)/obj/alerter/eval.o
$(BUILD)/tests/test_seen: $(BUILD)/obj/alerter/seen.o

# agent-hook (issue 5) starts once per hook event, so it loads as few shared
# libraries as it can: libyaml and libm are linked statically, and libcurl
# (for https://) is loaded with dlopen when needed; linking it would add
# ~9 ms of library loading to every start.
HOOK_OBJ    = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard hooks/*.c))
HOOK_LDLIBS = $(shell pkg-config --libs libcjson 2>/dev/null) -Wl,-Bstatic -lyaml -lm -Wl,-Bdynamic -ldl
all: $(BUILD)/agent-hook
$(BUILD)/agent-hook: $(HOOK_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -Wl,--as-needed -o $@ $^ $(HOOK_LDLIBS)

# The dashboard (streamer/web, Vue + Vite): `npm ci` when the lock file changed,
# `vite build` into streamer/web/dist when a source changed. Needs Node >= 20.19.
WEB      = streamer/web
WEB_SRC  = $(shell find $(WEB)/src $(WEB)/public -type f 2>/dev/null) \
           $(wildcard $(WEB)/index.html $(WEB)/*.json $(WEB)/*.ts)
all: $(WEB)/dist/index.html
$(WEB)/dist/index.html: $(WEB_SRC)
	@command -v npm >/dev/null || { echo "npm not found: the dashboard needs Node.js >= 20.19 with npm" >&2; exit 1; }
	@cd $(WEB) && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; }
	cd $(WEB) && npm run --silent build
	@touch $@

unit: $(UNIT_BIN)

# Fuzzing (issue 7): libFuzzer targets built with clang, ASan and UBSan, from
# tests/fuzz/fuzz_<name>.c plus the project code each one drives. They link
# their own copy of common/ (instrumented) in $(BUILD)/fuzz/. `make fuzz` runs
# each for FUZZ_SECONDS on a copy of its seed corpus (tests/fuzz/corpus/<name>)
# and fails on any crash or sanitizer report (the input is kept in
# $(BUILD)/fuzz/crashes/<name>/). `make test` replays the corpus and the
# regression inputs (tests/fuzz/regress/<name>) and fuzzes each briefly.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS   = -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -std=c17 -Wall -Wextra -Werror \
                -D_GNU_SOURCE -pthread -Icommon -MMD -MP $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_NAMES    = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN      = $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
FUZZ_COMMON   = $(COMMON_SRC:%.c=$(BUILD)/fuzz/obj/%.o)

$(BUILD)/fuzz/.flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' | cmp -s - $@ || echo '$(FUZZ_CC) $(FUZZ_CFLAGS)' > $@

$(BUILD)/fuzz/obj/%.o: %.c $(BUILD)/fuzz/.flags
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(BUILD)/fuzz/libcommon.a: $(FUZZ_COMMON)
	ar rcs $@ $^

$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/obj/tests/fuzz/fuzz_%.o $(BUILD)/fuzz/libcommon.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -pthread -o $@ $(filter %.o,$^) \
		$(BUILD)/fuzz/libcommon.a $(LDLIBS)

# The project code each target drives, besides common/.
$(BUILD)/fuzz/fuzz_event: $(BUILD)/fuzz/obj/collector/ingest.o
$(BUILD)/fuzz/fuzz_filter: $(BUILD)/fuzz/obj/streamer/filter.o
$(BUILD)/fuzz/fuzz_rules: $(BUILD)/fuzz/obj/alerter/rules.o
$(BUILD)/fuzz/fuzz_transcript: $(BUILD)/fuzz/obj/collector/transcript.o

.PRECIOUS: $(BUILD)/fuzz/obj/%.o
fuzz-build: $(FUZZ_BIN)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_NAMES)

deps:
	@deploy/local/install-deps.sh

test: deps
	@$(MAKE) --no-print-directory all unit fuzz-build
	@BUILD=$(BUILD) tests/run.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/ws_load $(BUILD)/bench/fanout_floor
	@tests/bench/run.sh

# Faults under load (tests/chaos/chaos.py, ~5 min): kill -9 of every daemon,
# Redis and PostgreSQL restarts, PostgreSQL paused; exits 1 on any loss or repeat.
chaos: deps
	@$(MAKE) --no-print-directory all
	@OBS_BUILD_DIR=$(BUILD) python3 tests/chaos/chaos.py

# Soak (tests/chaos/soak.py): SOAK_MINUTES at SOAK_RATE events/s with 100
# WebSocket clients; RSS flat, no error logs, no sanitizer report. SOAK_BUILD
# (default $(BUILD)) is built here only when it is $(BUILD); for ASan build it
# first: make BUILD=build-asan SANITIZE=address,undefined all
SOAK_BUILD   ?= $(BUILD)
SOAK_MINUTES ?= 30
SOAK_RATE    ?= 1000
soak: deps
	@if [ "$(SOAK_BUILD)" = "$(BUILD)" ]; then $(MAKE) --no-print-directory all; \
	 else test -x $(SOAK_BUILD)/collector || { echo "$(SOAK_BUILD)/collector missing: make BUILD=$(SOAK_BUILD) SANITIZE=address,undefined all" >&2; exit 1; }; fi
	@OBS_BUILD_DIR=$(SOAK_BUILD) SOAK_MINUTES=$(SOAK_MINUTES) SOAK_RATE=$(SOAK_RATE) python3 tests/chaos/soak.py

run: deps
	@$(MAKE) --no-print-directory all
	@deploy/local/stack.sh run

up: deps
	@$(MAKE) --no-print-directory all
	@deploy/local/stack.sh up

down:
	@deploy/local/stack.sh down

status:
	@deploy/local/stack.sh status

format:
	clang-format -i common/*.[ch] collector/*.[ch] processor/*.[ch] streamer/*.[ch] alerter/*.[ch] tests/unit/*.c

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)

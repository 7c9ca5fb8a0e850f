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
DAEMONS     = collector processor
UNIT_SRC    = $(wildcard tests/unit/test_*.c)
UNIT_BIN    = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test unit bench run up down status clean format
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
	$(CC) $(CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< $(BUILD)/libcommon.a $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka)

unit: $(UNIT_BIN)

deps:
	@deploy/local/install-deps.sh

test: deps
	@$(MAKE) --no-print-directory all unit
	@BUILD=$(BUILD) tests/run.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/run.sh

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
	clang-format -i common/*.[ch] collector/*.[ch] processor/*.[ch] tests/unit/*.c

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# edgegate build. `make` builds into build/; see README.md for the targets.
#
# Layout rules that the wildcards below rely on:
#   core/*.c            -> build/libedgecore.a (files *_avx2.c get AVX2 flags,
#                          *_avx512.c AVX-512 F/BW/VL/DQ/VNNI + AVX2 flags)
#   core/tools/NAME.c   -> build/edgegate-NAME (one program per file)
#   fcgi/*.c            -> build/libedgefcgi.a, fcgi/main.c -> build/edgegate-fcgi
#   tests/unit/test_*.c -> build/tests/test_* (cmocka), run by `make test`
#   tests/fuzz/fuzz_*.c -> build/fuzz/fuzz_* (libFuzzer, clang), replayed over
#                          tests/fuzz/corpus/* by `make test`

BUILD   ?= build
ifeq ($(origin CC),default)
CC      := gcc
endif
SAN     ?=
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -pthread -fno-strict-aliasing $(SAN)
CPPFLAGS += -Icore -Ifcgi -MMD -MP
LDFLAGS += -pthread $(SAN)
CORE_LIBS := -lpcre2-8 -ljpeg -lspng -lm
FCGI_LIBS := -lfcgi -lyajl -llmdb -lconfig

ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
SIMD_AVX2 := -mavx2 -mfma -mf16c -mbmi2
SIMD_AVX512_ONLY := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni
SIMD_AVX512 := $(SIMD_AVX2) $(SIMD_AVX512_ONLY)
CORE_SRC := $(wildcard core/*.c)
else
CORE_SRC := $(filter-out %_avx2.c %_avx512.c,$(wildcard core/*.c))
endif
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
TOOLS    := $(patsubst core/tools/%.c,$(BUILD)/edgegate-%,$(wildcard core/tools/*.c))
FCGI_SRC := $(filter-out fcgi/main.c,$(wildcard fcgi/*.c))
FCGI_OBJ := $(FCGI_SRC:%.c=$(BUILD)/%.o)
FCGI_BIN := $(if $(wildcard fcgi/main.c),$(BUILD)/edgegate-fcgi)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

.PHONY: all test unit fuzz fuzz-build fuzz-long integration browser asan bench run stop deps clean
all: $(BUILD)/libedgecore.a $(TOOLS) $(FCGI_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
$(BUILD)/core/%_avx2.o: core/%_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SIMD_AVX2) -c $< -o $@
$(BUILD)/core/%_avx512.o: core/%_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SIMD_AVX512) -c $< -o $@

$(BUILD)/libedgecore.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/libedgefcgi.a: $(FCGI_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/edgegate-%: $(BUILD)/core/tools/%.o $(BUILD)/libedgecore.a
	$(CC) $(LDFLAGS) $^ $(CORE_LIBS) -o $@
$(BUILD)/edgegate-fcgi: $(BUILD)/fcgi/main.o $(BUILD)/libedgefcgi.a $(BUILD)/libedgecore.a
	$(CC) $(LDFLAGS) $^ $(FCGI_LIBS) $(CORE_LIBS) -o $@

# Unit tests link both libraries; unused archive members cost nothing.
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libedgefcgi.a $(BUILD)/libedgecore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -lcmocka $(FCGI_LIBS) $(CORE_LIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(BUILD)/libedgefcgi.a $(BUILD)/libedgecore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(FCGI_LIBS) $(CORE_LIBS) -o $@

# The detector's reference (test_detect): darknet itself, when installed.
DARKNET_REF := $(if $(wildcard /usr/lib/darknet/include/darknet.h),$(BUILD)/ref/darknet_ref)
$(BUILD)/ref/darknet_ref: tests/ref/darknet_ref.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -I/usr/lib/darknet/include $< -o $@ \
	    -L/usr/lib/darknet -Wl,-rpath,/usr/lib/darknet -ldarknet -lm

unit: $(UNIT_BIN) $(TOOLS) $(DARKNET_REF)
	@fail=0; for t in $(UNIT_BIN); do \
	  echo "== $$t"; EDGEGATE_BUILD=$(BUILD) $$t || fail=1; done; exit $$fail

# libFuzzer harnesses are built by clang with their own sanitizers, from
# objects of their own (never shared with the gcc build), compiled once and
# linked into every harness.
FUZZ_CC    ?= clang
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_FLAGS := -std=gnu11 -g -O1 -Icore -Ifcgi $(FUZZ_SAN) $(if $(filter x86_64,$(ARCH)),$(SIMD_AVX2))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_OBJ := $(CORE_SRC:%.c=$(BUILD)/fuzz/obj/%.o) $(FCGI_SRC:%.c=$(BUILD)/fuzz/obj/%.o)
$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(BUILD)/fuzz/obj/core/%_avx512.o: core/%_avx512.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(SIMD_AVX512_ONLY) -fsanitize=fuzzer-no-link -c $< -o $@
$(BUILD)/fuzz/libfuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/fuzz/libfuzz.a
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(BUILD)/fuzz/libfuzz.a $(FCGI_LIBS) $(CORE_LIBS) -o $@
fuzz-build: $(FUZZ_BIN)
# Replays every corpus (the saved crashers included) and fuzzes each harness
# briefly; `make fuzz-long FUZZ_SECONDS=600` for a real session.
FUZZ_SECONDS ?= 10
fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	  echo "== $$n corpus"; \
	  mkdir -p $(BUILD)/fuzz/work/$$n; \
	  $$f -runs=0 tests/fuzz/corpus/$${n#fuzz_} > $(BUILD)/fuzz/$$n.replay.log 2>&1 \
	      || { tail -n 40 $(BUILD)/fuzz/$$n.replay.log; exit 1; }; \
	  tail -n 1 $(BUILD)/fuzz/$$n.replay.log; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $(BUILD)/fuzz/work/$$n \
	      tests/fuzz/corpus/$${n#fuzz_} > $(BUILD)/fuzz/$$n.log 2>&1 \
	      || { tail -n 40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
	done
fuzz-long: FUZZ_SECONDS = 600
fuzz-long: fuzz

integration: all
	@if [ -d tests/integration ] && ls tests/integration/test_*.py >/dev/null 2>&1; then \
	  EDGEGATE_BUILD=$(BUILD) /usr/bin/python3 -m pytest -q tests/integration; fi

# The web console in Debian's chromium (playwright-core from npm, pinned in
# tests/browser/package-lock.json and installed by `npm ci` when missing);
# says SKIP when chromium or node is absent. Screenshots: $(BUILD)/screenshots/.
browser: all
	@EDGEGATE_BUILD=$(BUILD) tests/browser/run

test: all unit fuzz integration browser

# Same tests under ASan+UBSan, in a separate build tree.
asan:
	$(MAKE) BUILD=build/asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" unit integration

bench: all $(BENCH_BIN) $(DARKNET_REF)
	scripts/bench

deps:
	scripts/deps

run: deps all
	scripts/run-demo

stop:
	scripts/down --dir $(BUILD)/run

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

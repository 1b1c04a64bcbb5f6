# MT5 bridge (issue #3): the Windows DLL cross-built with MinGW-w64 and tested under Wine, the bounded
# fuzz run of the command decoder, the bridge benchmark and the MQL5/header drift check.
# See docs/bridge.md.
APT_PACKAGES += mingw-w64 g++-mingw-w64-x86-64-posix wine wine64 clang libclang-rt-14-dev dpkg-dev

BRIDGE_WIN_BUILD := $(BUILD)/cpp-win64
BRIDGE_FUZZ_BUILD := $(BUILD)/cpp-fuzz
BRIDGE_TSAN_BUILD := $(BUILD)/cpp-tsan
NANOPB_SRC := $(BUILD)/nanopb-src
# Wine: a private prefix under build/, no desktop, no debug noise.
BRIDGE_WINE_ENV := WINEPREFIX=$(BUILD)/wine-prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=

TEST_TARGETS += test-bridge-wine test-bridge-fuzz bridge-tsan
BENCH_TARGETS += bench-bridge

# nanopb 0.4.7 C runtime sources for the Windows build, from Debian's source package. A private
# deb-src list is derived from this machine's apt sources, so nothing in the system apt state changes.
$(NANOPB_SRC)/.stamp:
	@rm -rf $(BUILD)/apt-src $(NANOPB_SRC) && mkdir -p $(BUILD)/apt-src/parts $(BUILD)/apt-src/lists/partial \
	  $(BUILD)/apt-src/cache/archives/partial $(BUILD)/apt-src/dl
	@for f in /etc/apt/sources.list.d/*.sources; do [ -f "$$f" ] && \
	  sed 's/^Types: *deb$$/Types: deb-src/' "$$f" > $(BUILD)/apt-src/parts/$$(basename "$$f"); done; \
	if [ -f /etc/apt/sources.list ]; then grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
	  > $(BUILD)/apt-src/parts/system.list || true; fi
	apto="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$(BUILD)/apt-src/parts \
	  -o Dir::State::Lists=$(BUILD)/apt-src/lists -o Dir::Cache=$(BUILD)/apt-src/cache"; \
	apt-get $$apto update -qq && cd $(BUILD)/apt-src/dl && apt-get $$apto source --download-only -qq nanopb=0.4.7-2
	cd $(BUILD)/apt-src/dl && dpkg-source -x nanopb_0.4.7-2.dsc $(NANOPB_SRC) >/dev/null
	@touch $@

.PHONY: bridge-dll
bridge-dll: $(STAMP)/apt $(NANOPB_SRC)/.stamp ## Cross-build kairos_bridge.dll and the Wine loader (MinGW-w64, fully static)
	cmake -S cpp/mt5_bridge -B $(BRIDGE_WIN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_TOOLCHAIN_FILE=$(ROOT)/cpp/mt5_bridge/cmake/mingw-w64-x86_64.cmake -DNANOPB_SRC_DIR=$(NANOPB_SRC) >/dev/null
	cmake --build $(BRIDGE_WIN_BUILD)

.PHONY: test-bridge-wine
test-bridge-wine: setup bridge-dll ## The DLL under Wine: imports check, loader vs a real TCP peer, Strategy Tester lockstep vs the real stack (bounded; wineserver -k after)
	@rc=0; KAIROS_BRIDGE_WIN_DIR=$(BRIDGE_WIN_BUILD) $(BRIDGE_WINE_ENV) timeout 1500 \
	  $(PY) -m pytest -p no:cacheprovider -q -s python/tests/bridge/wine_dll_check.py python/tests/bridge/wine_tester_check.py || rc=$$?; \
	$(BRIDGE_WINE_ENV) wineserver -k 2>/dev/null || true; exit $$rc

.PHONY: test-bridge-fuzz
test-bridge-fuzz: setup $(NANOPB_SRC)/.stamp ## Fuzz the command decoder for 25 s (libFuzzer, ASan+UBSan)
	cmake -S cpp/mt5_bridge/fuzz -B $(BRIDGE_FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNANOPB_SRC_DIR=$(NANOPB_SRC) \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
	cmake --build $(BRIDGE_FUZZ_BUILD)
	@# Seeds: the golden Frame vectors, length-prefixed as they travel on the wire.
	@mkdir -p $(BRIDGE_FUZZ_BUILD)/corpus && $(PY) -c 'import sys, pathlib; \
	  from google.protobuf.internal.encoder import _VarintBytes as v; \
	  [pathlib.Path(sys.argv[1], p.name).write_bytes(v(len(b := p.read_bytes())) + b) \
	   for p in pathlib.Path("proto/testdata/golden").glob("frame_*.binpb")]' $(BRIDGE_FUZZ_BUILD)/corpus
	timeout 120 $(BRIDGE_FUZZ_BUILD)/command_decoder_fuzz -max_total_time=25 -max_len=4096 -rss_limit_mb=1024 -artifact_prefix=$(BRIDGE_FUZZ_BUILD)/ \
	  -print_final_stats=1 $(BRIDGE_FUZZ_BUILD)/corpus 2>&1 | tail -n 12

.PHONY: bridge-tsan
bridge-tsan: setup ## The bridge's GoogleTest suite under ThreadSanitizer (terminal/network/resolver threads, close and wake races)
	cmake -S cpp/mt5_bridge -B $(BRIDGE_TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKAIROS_TSAN=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
	cmake --build $(BRIDGE_TSAN_BUILD) --target bridge_test
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" timeout 300 $(BRIDGE_TSAN_BUILD)/bridge_test --gtest_brief=1

.PHONY: bench-bridge
bench-bridge: cpp-build ## Bridge benchmark: push cost per tick and per call, sustained ticks/s to a TCP sink
	$(CPP_BUILD)/bridge_bench --out bench/results/bridge.json

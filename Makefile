# The two commands a new user runs: `make demo` and `make test`.
# Both fetch ONNX Runtime from PyPI into .cache/ on first use (scripts/fetch-onnxruntime.sh).

CARGO ?= cargo
OUT ?= out/demo
ORT_LIB := .cache/onnxruntime/libonnxruntime.so

.PHONY: demo test ort gaussian bench build clean-cache example-rust

$(ORT_LIB):
	scripts/fetch-onnxruntime.sh

## ort: fetch the pinned ONNX Runtime (CPU) from PyPI into .cache/onnxruntime
ort: $(ORT_LIB)

build:
	$(CARGO) build --release --locked --bin steer

## demo: train NP-BTL, BTL and DPL on the synthetic 1-D task, export bundles, evaluate them through ONNX Runtime
demo: $(ORT_LIB) build
	./target/release/steer train --task synthetic1d --out $(OUT)

## test: the whole test suite (release profile, shared with demo's build)
test: $(ORT_LIB)
	$(CARGO) test --release --locked --workspace

## gaussian: the Gaussian-rho identifiability run whose figures are in the README
gaussian: $(ORT_LIB) build
	./target/release/steer identifiability --out out/gaussian

## bench: runtime latency vs bare ort calls
bench: $(ORT_LIB)
	$(CARGO) bench --locked -p steer-trainer --bench runtime_latency

clean-cache:
	rm -rf .cache

## example-rust: the Rust quick start on the demo's NP-BTL bundle (run `make demo` first)
example-rust: $(ORT_LIB)
	$(CARGO) run --release --locked -p steer-runtime --example quickstart -- $(OUT)/bundles/np-btl

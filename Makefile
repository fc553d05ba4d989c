# ausweep: `make demo` and `make test` install what they need (idempotent).
CARGO ?= cargo
BIN := target/release/ausweep
DEMO := target/demo

.PHONY: setup build demo test bench fmt lint clean-demo

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --bin ausweep

# Until the cluster demo lands: the paper's two stages on the synthetic DISFA, one fold.
demo: build
	@rm -rf $(DEMO)
	$(BIN) train experiments/jobs/demo-stage1.yaml --out $(DEMO)/stage1 --summary > $(DEMO).stage1.jsonl
	$(BIN) train experiments/jobs/demo-stage2.yaml --out $(DEMO)/stage2 --summary \
		--init-checkpoint $(DEMO)/stage1/final.safetensors > $(DEMO).stage2.jsonl
	@echo "progress logs: $(DEMO).stage1.jsonl $(DEMO).stage2.jsonl; results: $(DEMO)/stage*/result.json"

test: setup
	$(CARGO) test --workspace --no-fail-fast

bench: build
	$(BIN) bench train
	$(BIN) bench loader
	$(CARGO) bench -p ausweep-coordinator

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

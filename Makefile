# ausweep: `make demo` and `make test` install what they need (idempotent).
CARGO ?= cargo
BIN := target/release/ausweep
DEMO := target/demo

.PHONY: setup build demo test soak bench fmt lint

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --bin ausweep

# The embedded default: a coordinator and a local CPU worker run experiments/demo.yaml on the
# synthetic DISFA, then the report and chart land in target/demo/report.
demo: build
	$(BIN) demo --out $(DEMO)

test: setup
	$(CARGO) test --workspace --no-fail-fast

# Chaos repeated: every run kills coordinators and workers and cuts a network at random points.
SOAK_RUNS ?= 20
soak: setup
	AUSWEEP_CHAOS_RUNS=$(SOAK_RUNS) AUSWEEP_CHAOS_SEED=$${AUSWEEP_CHAOS_SEED:-100} \
		$(CARGO) test --release --test chaos -- --nocapture

bench: build
	$(BIN) bench train
	$(BIN) bench loader
	$(CARGO) bench -p ausweep-coordinator

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

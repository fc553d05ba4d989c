# ausweep: `make demo` and `make test` install what they need (idempotent).
CARGO ?= cargo
BIN := target/release/ausweep
DEMO := target/demo

.PHONY: setup build demo demo-intensity test soak bench fmt lint

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --bin ausweep

# The embedded default: a coordinator and a local CPU worker run experiments/demo.yaml on the
# synthetic DISFA, then the report and chart land in target/demo/report.
demo: build
	$(BIN) demo --out $(DEMO)

# AU intensity on the same machinery: experiments/demo-intensity.yaml (MobileNet-v2, 3 folds x 2
# stages), the report's "AU intensity" table in target/demo-intensity/report.
demo-intensity: build
	$(BIN) demo --manifest experiments/demo-intensity.yaml --out target/demo-intensity

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
	$(BIN) bench predict
	$(CARGO) bench -p ausweep-coordinator

# The real coordinator binary (the control-plane release build a head node runs, no libtorch)
# under 1,000 simulated workers over 100,000 jobs: saturation, the load-latency curve,
# heartbeats, restart, RSS, disk (docs/stress.md). Scale down with AUSWEEP_LOAD_WORKERS=100
# AUSWEEP_LOAD_JOBS=10000.
.PHONY: bench-load
bench-load: light
	AUSWEEP_BIN=$${AUSWEEP_BIN:-$(CURDIR)/target/light/release/ausweep} \
		$(CARGO) bench -p ausweep-coordinator --features load-bench --bench cluster_load

# cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP), each target for FUZZ_SECONDS. New
# inputs go to FUZZ_WORK; the committed seeds in fuzz/corpus are only read. Crashes land in
# fuzz/artifacts/<target>/; copy a fixed one into fuzz/regressions/ (tests/parser_fuzz.rs replays it).
FUZZ_SECONDS ?= 60
FUZZ_SANITIZER ?= none
FUZZ_WORK ?= $(CURDIR)/target/fuzz-corpus
.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && for t in manifest job_file; do \
		mkdir -p $(FUZZ_WORK)/$$t && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s $(FUZZ_SANITIZER) --fuzz-dir . $$t $(FUZZ_WORK)/$$t corpus/$$t \
			-- -max_total_time=$(FUZZ_SECONDS) -dict=yaml.dict -max_len=65536 -timeout=10 -rss_limit_mb=2048 || exit 1; \
	done

# A relocatable release: target/dist/ausweep-<version>-linux-x86_64.tar.gz with the binary
# (rpath $ORIGIN/../lib), the libtorch libraries it needs, the converted weights and INSTALL.md
# (docs/install-release.md). tests/dist.rs unpacks one elsewhere and runs it without the venv.
.PHONY: dist
dist: build
	bash scripts/dist.sh $(BIN) target/dist

# The release binary, its man pages and shell completions under PREFIX (default /usr/local).
PREFIX ?= /usr/local
.PHONY: install
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ausweep
	$(BIN) man --out-dir $(DESTDIR)$(PREFIX)/share/man/man1
	$(BIN) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ausweep
	$(BIN) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_ausweep
	$(BIN) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/ausweep.fish

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml

# The control plane and the ONNX predictor without libtorch (coordinator, admin verbs, report,
# plan, predict --model X.onnx), in target/light:
# no venv needed where it runs. `make light-check` proves it (scripts/light-check.sh).
LIGHT_PROFILE ?= release
.PHONY: light light-check
light:
	CARGO_TARGET_DIR=$(CURDIR)/target/light $(CARGO) build --profile $(LIGHT_PROFILE) --no-default-features --bin ausweep
light-check:
	CARGO_TARGET_DIR=$(CURDIR)/target/light $(CARGO) build --no-default-features --bin ausweep
	CARGO_TARGET_DIR=$(CURDIR)/target/light $(CARGO) clippy -p ausweep --no-default-features --bins -- -D warnings
	bash scripts/light-check.sh target/light/debug/ausweep
	AUSWEEP_LIGHT_BIN=$(CURDIR)/target/light/debug/ausweep $(CARGO) test --test export_onnx -- \
		--ignored the_light_build_predicts_as_the_full_build --nocapture
	# Fault injection (AUSWEEP_FAULT_AT, proto/src/fault.rs) exists only in builds made for tests.
	CARGO_TARGET_DIR=$(CURDIR)/target/light $(CARGO) build --profile $(LIGHT_PROFILE) --no-default-features --bin ausweep
	@for b in target/light/debug/ausweep target/light/$(LIGHT_PROFILE:dev=debug)/ausweep; do \
		[ -x $$b ] || { echo "light-check: FAILED: $$b missing" >&2; exit 1; }; \
		if grep -qaF AUSWEEP_FAULT_AT $$b; then \
			echo "light-check: FAILED: $$b contains AUSWEEP_FAULT_AT (fault injection outside a test build)" >&2; exit 1; \
		fi; \
	done; echo "light-check: ok: no fault injection (AUSWEEP_FAULT_AT) in the light binaries"

# Formatting of every workspace (the main one and fuzz/), without changing anything.
.PHONY: fmt-check
fmt-check:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

# Compiles what `make test` does not: every bench (cluster_load's feature included; not run)
# and the fuzz targets (their own workspace, type-checked with their libFuzzer runtime built).
.PHONY: build-extras
build-extras: setup
	$(CARGO) test -p ausweep-coordinator --benches --no-run --features load-bench
	CARGO_TARGET_DIR=$(CURDIR)/target/fuzz $(CARGO) check --manifest-path fuzz/Cargo.toml --bins

lint: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash scripts/layers.sh

# The GPU proof (scripts/gpu-check.sh): stops at the first failure, writes target/gpu-check/
# gpu-check.json. `make gpu-check-cpu` runs every CPU-checkable step at small sizes with the
# dev binary (CI does, so the script itself cannot rot on machines without a GPU).
GPU_CHECK_DEVICE ?= cuda:0
.PHONY: gpu-check gpu-check-cpu
gpu-check: build
	DEVICE=$(GPU_CHECK_DEVICE) bash scripts/gpu-check.sh $(BIN) $${AUSWEEP_WEIGHTS:-$$HOME/.cache/ausweep/weights} target/gpu-check
gpu-check-cpu: setup
	$(CARGO) build --bin ausweep
	DEVICE=cpu AUSWEEP_PYTHON=$${AUSWEEP_PYTHON:-$(CURDIR)/.venv/bin/python} \
		bash scripts/gpu-check.sh target/debug/ausweep $${AUSWEEP_WEIGHTS:-$$HOME/.cache/ausweep/weights} target/gpu-check-cpu

# imgate developer commands. `make test` is the README's test command and what CI runs.
.PHONY: run test test-deps lint fmt bench bench-full bench-smoke soak fuzz fuzz-smoke fuzz-deps

run:
	cargo run -p imgate

test-deps:
	bash scripts/test-deps.sh

test: test-deps
	cargo test --workspace --no-fail-fast
	bash tests/browser/run.sh
	IMGATE_TEST_PROVIDER=matrix bash tests/browser/run.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Benchmarks against release builds, next to a plain WebSocket server and a Socket.IO server;
# each run appends its figures to docs/benchmarks.md. Not part of CI. `bench` takes about
# 10 minutes, `bench-full` holds 100 000 connections, `bench-smoke` checks the tool in seconds.
bench:
	bash scripts/bench.sh

bench-full:
	BENCH_SIZE=full bash scripts/bench.sh

bench-smoke:
	BENCH_SIZE=smoke BENCH_REPORT= bash scripts/bench.sh

# Fuzzing (docs/reliability.md). cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the
# stable toolchain accept them. The workspace forbids unsafe code, so the targets hunt panics,
# overflows (debug assertions are on), hangs and memory blow-ups, and run without a sanitizer
# unless FUZZ_SANITIZER says otherwise. One process per target: libFuzzer's default.
FUZZ_TARGETS := signalr_records messagepack_records ddp_frames rest_bodies backplane_wire
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SANITIZER ?= none
FUZZ := RUSTC_BOOTSTRAP=1 cargo fuzz

fuzz-deps:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Each target for FUZZ_SECONDS; new inputs go to fuzz/work/<target> (not committed), the seeds
# in fuzz/corpus/<target> stay as they are. A crash stops the run with its input in
# fuzz/artifacts/<target>/.
fuzz: fuzz-deps
	$(FUZZ) build -s $(FUZZ_SANITIZER)
	@set -e; for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$target; \
		echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
		$(FUZZ) run -s $(FUZZ_SANITIZER) $$target fuzz/work/$$target fuzz/corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)

# Ten minutes of steady load with churn against release builds; writes docs/reliability.md.
# Not part of CI. SOAK_SECONDS shortens it, SOAK_REPORT= (empty) writes no report.
soak:
	bash scripts/soak.sh

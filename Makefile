# imgate developer commands. `make test` is the README's test command and what CI runs.
.PHONY: run test test-deps lint fmt bench soak

run:
	cargo run -p imgate

test-deps:
	bash scripts/test-deps.sh

test: test-deps
	cargo test --workspace --no-fail-fast
	bash tests/browser/run.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench:
	@echo "no benchmarks yet"

# Ten minutes of steady load with churn against release builds; writes docs/reliability.md.
# Not part of CI. SOAK_SECONDS shortens it, SOAK_REPORT= (empty) writes no report.
soak:
	bash scripts/soak.sh

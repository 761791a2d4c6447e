#!/usr/bin/env bash
# THE test command: formatting, lints, the template (as written and transformed), then every unit and
# integration test against moto holding the stack created from template.yaml. Idempotent; exits non-zero when
# anything fails. Stops the moto it started (set KEEP_MOTO=1 to keep it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started=$SECONDS
step() { echo "==> [$((SECONDS - started)) s] $*" >&2; }

step "bootstrap the local AWS stack (.venv) and the headless browser"
infra/local/bootstrap.sh --browser

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --bins (the functions' real binaries, for the startup test)"
# One workspace compile in the debug profile and the shared target dir; the startup test (tests/it/startup.rs)
# starts each function's binary from target/debug (or $CARGO_TARGET_DIR/debug) under a local Runtime API.
cargo build --workspace --bins

step "template.yaml is what infra/template.src.yaml makes for Channel::ALL"
cargo run -q -p manifold-cli -- template --check

step "README.md's capability matrix is the channel registry's"
cargo run -q -p manifold-cli -- channels --check

step "template lint"
infra/local/lint.sh

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${MOTO_PORT:-4566}}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export MANIFOLD_STACK="${MANIFOLD_STACK:-manifold-test}"

step "start moto"
if [[ "${KEEP_MOTO:-0}" != 1 ]]; then trap 'infra/local/moto.sh stop' EXIT; fi
infra/local/moto.sh start

step "create stack $MANIFOLD_STACK from template.yaml"
.venv/bin/python infra/local/stack.py create "$MANIFOLD_STACK"
# shellcheck source=/dev/null
source .local/stack.env

step "cargo test --workspace (unit + integration against moto)"
# --no-fail-fast: one failing crate must not hide the results (or the integration run) of the others.
cargo test --workspace --no-fail-fast

step "all green in $((SECONDS - started)) s"

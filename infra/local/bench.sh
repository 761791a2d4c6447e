#!/usr/bin/env bash
# The benchmark: the functions' RELEASE binaries under the local Lambda runtime, on moto with the stack created
# from template.yaml, driven by `manifold bench` (shared/cli/src/bench): the oversell window, work and cost per
# order, cold starts beside a hello-world Lambda, normalization, AWS calls per hot path and the hot-SKU figures,
# printed and written to .local/bench/latest.json. Arguments go to `manifold bench` (e.g. --orders 100).
# MANIFOLD_PROFILE=debug measures the debug binaries instead (quicker to build, slower to run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
infra/local/bootstrap.sh

profile="${MANIFOLD_PROFILE:-release}"
if [[ "$profile" == release ]]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
bin_dir="${CARGO_TARGET_DIR:-target}/$profile"

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${MOTO_PORT:-4566}}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export MANIFOLD_STACK="${MANIFOLD_STACK:-manifold-bench}"

if [[ "${KEEP_MOTO:-0}" != 1 ]]; then trap 'infra/local/moto.sh stop' EXIT; fi
infra/local/moto.sh start
curl -fsS -X POST "$AWS_ENDPOINT_URL/moto-api/reset" >/dev/null
.venv/bin/python infra/local/stack.py create "$MANIFOLD_STACK" >.local/stack.log
# shellcheck source=/dev/null
source .local/stack.env

"$bin_dir/manifold" bench --bin-dir "$bin_dir" "$@"

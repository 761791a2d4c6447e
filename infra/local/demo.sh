#!/usr/bin/env bash
# THE main job: moto with the stack created from template.yaml, then every function of the template run as its
# own built binary under the local Lambda runtime (`manifold demo`, shared/localrt): the HTTP API on
# 127.0.0.1:${MANIFOLD_API_PORT:-9000}, the SQS event source mappings, the schedules (60x faster), and the
# scenario played over HTTP and SQS against them, then each function's cold start, peak memory and binary
# size beside a hello-world Lambda's. `--keep-running` leaves it all up (Ctrl-C stops).
# Stops moto on exit unless KEEP_MOTO=1 (then `source .local/stack.env` gives a shell the same stack).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
infra/local/bootstrap.sh

# The functions' real binaries and the CLI: one workspace compile, the shared target dir; the debug profile
# unless MANIFOLD_PROFILE=release (what the cold start and memory figures are measured with).
profile="${MANIFOLD_PROFILE:-debug}"
if [[ "$profile" == release ]]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
bin_dir="${CARGO_TARGET_DIR:-target}/$profile"

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${MOTO_PORT:-4566}}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export MANIFOLD_STACK="${MANIFOLD_STACK:-manifold-local}"

if [[ "${KEEP_MOTO:-0}" != 1 ]]; then trap 'infra/local/moto.sh stop' EXIT; fi
infra/local/moto.sh start
# Every demo starts from an empty emulator, so it shows first deliveries rather than duplicates.
curl -fsS -X POST "$AWS_ENDPOINT_URL/moto-api/reset" >/dev/null
# What the local stack leaves out of template.yaml (alarms, HTTP API...) is listed in .local/stack.log.
.venv/bin/python infra/local/stack.py create "$MANIFOLD_STACK" >.local/stack.log
tail -n 2 .local/stack.log
# shellcheck source=/dev/null
source .local/stack.env

"$bin_dir/manifold" demo --bin-dir "$bin_dir" "$@"

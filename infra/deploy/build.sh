#!/usr/bin/env bash
# Builds every function of template.yaml for arm64 (Graviton, provided.al2023) as a deploy would, with ONE
# workspace compile of the release profile (LTO, one codegen unit, strip), then checks each artifact:
#   - target/lambda/<binary>/bootstrap exists and is an aarch64 ELF executable;
#   - its size (goal: under 4 MB each);
#   - `sam validate --lint` and the offline SAM transform accept a copy of the template whose CodeUri
#     points at those artifacts.
# Too slow for CI on 2 cores (a release build with LTO of every function): run it before a deploy.
#
#   infra/deploy/build.sh            # build + check, prints a table and writes .local/deploy-build.json
#   SKIP_BUILD=1 infra/deploy/build.sh   # only check what target/lambda holds
#
# Needs what a developer machine has: rustup (it adds the aarch64-unknown-linux-gnu standard library),
# Python 3. cargo-lambda (which brings zig as its cross-linker) and the SAM CLI are installed from PyPI into
# .venv-deploy, apart from the test venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
venv="$root/.venv-deploy"
started=$SECONDS
step() { echo "==> [$((SECONDS - started)) s] $*" >&2; }

infra/local/bootstrap.sh
if [[ ! -x "$venv/bin/cargo-lambda" || ! -x "$venv/bin/sam" ]]; then
  step "install cargo-lambda (with zig) and the SAM CLI into .venv-deploy"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check cargo-lambda==1.9.2 aws-sam-cli==1.170.0
fi
export PATH="$venv/bin:$PATH" SAM_CLI_TELEMETRY=0

# The function binaries, from the template's build metadata (the push binary serves every channel).
mapfile -t binaries < <(.venv/bin/python - <<'EOF'
from samtranslator.yaml_helper import yaml_parse
t = yaml_parse(open("template.yaml").read())
bins = {r["Metadata"]["BuildProperties"]["Binary"] for r in t["Resources"].values()
        if r.get("Type") == "AWS::Serverless::Function"}
print("\n".join(sorted(bins)))
EOF
)

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  step "rustup target add aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
  packages=()
  for b in "${binaries[@]}"; do packages+=(-p "$b"); done
  step "cargo lambda build --release --arm64 ${packages[*]} (one workspace compile)"
  build_started=$SECONDS
  cargo lambda build --release --arm64 "${packages[@]}"
  echo "build_seconds=$((SECONDS - build_started))" > .local/deploy-build.seconds
fi

step "check the artifacts and the template that points at them"
.venv/bin/python infra/deploy/check.py "${binaries[@]}"
step "sam validate --lint"
AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" sam validate --lint --template .local/template.artifacts.yaml
step "done in $((SECONDS - started)) s"

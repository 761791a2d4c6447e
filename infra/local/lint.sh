#!/usr/bin/env bash
# Lints the SAM template twice: as written, then transformed to plain CloudFormation (offline), because only
# the transformed template shows what SAM expands (policy templates, event sources, roles): a bad !Ref inside
# a policy template passes the first check and fails the second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
"$root/infra/local/bootstrap.sh"
echo "lint: cfn-lint template.yaml" >&2
.venv/bin/cfn-lint template.yaml
.venv/bin/python infra/local/stack.py transform
echo "lint: cfn-lint .local/template.json" >&2
.venv/bin/cfn-lint .local/template.json
echo "lint: template OK" >&2

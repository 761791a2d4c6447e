#!/usr/bin/env bash
# Creates the project-local virtualenv (.venv) with moto, the SAM translator and cfn-lint, and installs
# (with --browser) Debian's chromium + chromium-driver for the console's browser test (tests/it/console.rs).
# Idempotent: reinstalls only what is missing or changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The headless browser, with --browser (test.sh passes it). Only the tests need it (the demo and the console
# itself do not), so a machine without apt-get only warns here and the browser test then says what is missing;
# CI must have it.
if [[ "${1:-}" == --browser && ! -x "${CHROMEDRIVER:-/usr/bin/chromedriver}" ]]; then
  if command -v apt-get > /dev/null; then
    echo "bootstrap: installing Debian's chromium and chromium-driver (the console's browser test)" >&2
    sudo_=""
    if [[ "$(id -u)" != 0 ]]; then sudo_="sudo"; fi
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends chromium chromium-driver > /dev/null
  elif [[ "${CI:-}" == true ]]; then
    echo "bootstrap: chromedriver is missing and there is no apt-get to install it" >&2
    exit 1
  else
    echo "bootstrap: warning: no chromedriver and no apt-get; the console's browser test will fail" >&2
  fi
fi

venv="$root/.venv"
req="$root/infra/local/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: installing the local AWS stack into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"

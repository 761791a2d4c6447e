#!/usr/bin/env bash
# Starts or stops moto's server (infra/local/moto_server.py) on 127.0.0.1 (port MOTO_PORT, default 4566), tracked by a PID file.
#   infra/local/moto.sh start   # idempotent; waits until the server answers
#   infra/local/moto.sh stop
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
port="${MOTO_PORT:-4566}"
state="$root/.local"
pidfile="$state/moto-$port.pid"
mkdir -p "$state"
up() { curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; }
case "${1:-}" in
  start)
    "$root/infra/local/bootstrap.sh"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && up; then exit 0; fi
    # moto's server with DynamoDB item operations isolated as DynamoDB isolates them (see moto_server.py).
    "$root/.venv/bin/python" "$root/infra/local/moto_server.py" -H 127.0.0.1 -p "$port" >"$state/moto-$port.log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do up && exit 0; sleep 0.1; done
    echo "moto did not start on port $port; see $state/moto-$port.log" >&2
    exit 1
    ;;
  stop)
    if [[ -f "$pidfile" ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

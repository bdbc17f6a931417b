#!/usr/bin/env bash
# The API contract: schemathesis (`--checks all`) over the whole OpenAPI document the server
# serves, once open (no keys) and once with an API key, against the real `facegate serve`.
# Usage: tools/api/schemathesis.sh [FACEGATE_BINARY] (default target/debug/facegate).
# Exits non-zero on any failure. Installs schemathesis (pinned) in target/st-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/facegate}
examples=${ST_MAX_EXAMPLES:-40}

if [ ! -x target/st-venv/bin/schemathesis ]; then
  python3 -m venv target/st-venv
  target/st-venv/bin/pip install -q -r tools/api/requirements.txt
fi

dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

key=schemathesis-key-0123456789
hash=$("$bin" hash-key "$key")
printf '[server]\nbind = "127.0.0.1:18731"\n' > "$dir/open.toml"
printf '[server]\nbind = "127.0.0.1:18731"\n[[server.clients]]\nid = "st"\nkey_sha256 = "%s"\n' "$hash" > "$dir/keys.toml"

status=0
for mode in open keys; do
  "$bin" serve --config "$dir/$mode.toml" --device cpu > "$dir/$mode.log" 2>&1 &
  pid=$!
  ready=
  for _ in $(seq 1 600); do
    python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:18731/healthz", timeout=1)' 2>/dev/null && { ready=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  [ -n "$ready" ] || { echo "facegate serve ($mode) did not start:" >&2; cat "$dir/$mode.log" >&2; exit 1; }
  auth=()
  [ "$mode" = keys ] && auth=(-H "X-API-Key: $key")
  echo "== schemathesis, $mode"
  target/st-venv/bin/schemathesis run http://127.0.0.1:18731/openapi.json --checks all \
    --max-examples "$examples" --generation-deterministic "${auth[@]}" || status=1
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
exit $status

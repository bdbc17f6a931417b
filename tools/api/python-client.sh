#!/usr/bin/env bash
# The OpenAPI document generates a working Python client: openapi-python-client (pinned) turns
# the /openapi.json that `facegate serve` serves into a package, and python_client_check.py uses
# only that package for GET /info and POST /v1/verify, once multipart and once JSON (base64).
# Usage: tools/api/python-client.sh [FACEGATE_BINARY] (default target/debug/facegate).
# Exits non-zero on any failure. Installs the generator (pinned) in target/opc-venv.
set -euo pipefail
start=$(date +%s.%N)
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/facegate}
port=18732  # schemathesis.sh has 18731: the two can run side by side

if [ ! -x target/opc-venv/bin/openapi-python-client ]; then
  python3 -m venv target/opc-venv
  target/opc-venv/bin/pip install -q -r tools/api/python-client-requirements.txt
fi
# The generator runs ruff on its output from PATH (it warns and skips it otherwise).
export PATH="$PWD/target/opc-venv/bin:$PATH"

dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

key=python-client-key-0123456789
printf '[server]\nbind = "127.0.0.1:%s"\n[[server.clients]]\nid = "pyclient"\nkey_sha256 = "%s"\n' \
  "$port" "$("$bin" hash-key "$key")" > "$dir/keys.toml"
"$bin" serve --config "$dir/keys.toml" --device cpu > "$dir/serve.log" 2>&1 &
pid=$!
ready=
for _ in $(seq 1 600); do  # 5 minutes at most
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null && { ready=1; break; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
[ -n "$ready" ] || { echo "facegate serve did not start:" >&2; cat "$dir/serve.log" >&2; exit 1; }

python3 -c "import urllib.request; open('$dir/openapi.json', 'wb').write(urllib.request.urlopen('http://127.0.0.1:$port/openapi.json').read())"
# --fail-on-warning: a schema the generator skips is a failure here, not a missing model.
openapi-python-client generate --path "$dir/openapi.json" --meta none \
  --output-path "$dir/client/facegate_client" --fail-on-warning
# openapi-python-client 0.29.1 bug (upstream issue #1451, open): an operation with a required
# requestBody of two content types (POST /v1/verify) gets `body: ... | Unset = UNSET` without
# importing Unset, so importing api/default/verify.py raises NameError. Add the import.
sed -i 's/^from \.\.\.types import UNSET, Response$/from ...types import UNSET, Response, Unset/' \
  "$dir/client/facegate_client/api/default/verify.py"

target/opc-venv/bin/python tools/api/python_client_check.py "$dir/client" "http://127.0.0.1:$port" \
  "$key" data/face-a.png data/face-b.png
echo "python client: ok in $(python3 -c "import time; print(f'{time.time() - $start:.1f}')") s"

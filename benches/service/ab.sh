#!/usr/bin/env bash
# Two service builds or configurations side by side in one run (benches/README.md, "Service"):
# each variant is started, warmed up (16 requests), and driven closed loop (8 clients, 80
# requests), alternating A, B, A, B… so the machine's drift hits both alike.
#   benches/service/ab.sh [--rounds 2] BIN_A[:CONFIG_A] BIN_B[:CONFIG_B]
# e.g. a binary built from an older commit against today's, or one binary with two configs.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=2
[ "${1:-}" = --rounds ] && { ROUNDS=$2; shift 2; }
[ $# -eq 2 ] || { echo "usage: $0 [--rounds N] BIN_A[:CONFIG_A] BIN_B[:CONFIG_B]" >&2; exit 2; }
. benches/service/server.sh
for _ in $(seq "$ROUNDS"); do
  for variant in "$1" "$2"; do
    BIN=${variant%%:*}; CONFIG=()
    [ "$variant" != "$BIN" ] && CONFIG=(--config "${variant#*:}")
    launch "${CONFIG[@]}" --device cpu
    "$BIN" loadgen --url "$ADDR" --concurrency 8 --requests 16 --json >/dev/null
    echo "{\"variant\":\"$variant\",\"report\":$("$BIN" loadgen --url "$ADDR" --concurrency 8 --requests 80 --json)}"
    kill -TERM "$PID"; wait "$PID" || true
  done
done

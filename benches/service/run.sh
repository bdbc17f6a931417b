#!/usr/bin/env bash
# Service load measurements (benches/README.md, "Service"): dynamic batching against
# max_batch = 1 at the same concurrency, then latency as the offered rate rises.
#   benches/service/run.sh [--device cpu|gpu] [--requests N] [--concurrency C] [--rates "2 4 8"]
#                          [--batches "1 8"] [--config FILE]   (FILE: an engine config, e.g. another pipeline)
# Needs target/release/facegate (cargo build --release -p facegate). Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${FACEGATE_BIN:-target/release/facegate}
DEVICE=cpu; REQUESTS=160; CONCURRENCY=16; RATES="1 2 3 4 6"; BATCHES="1 8"; CONFIG=()
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2;;
    --requests) REQUESTS=$2; shift 2;;
    --concurrency) CONCURRENCY=$2; shift 2;;
    --rates) RATES=$2; shift 2;;
    --batches) BATCHES=$2; shift 2;;
    --config) CONFIG=(--config "$2"); shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done

. benches/service/server.sh
start_server() { # max_batch → sets ADDR and PID
  launch "${CONFIG[@]}" --device "$DEVICE" --max-batch "$1"
  # Warm up (first batches allocate and, on a GPU, compile kernels).
  "$BIN" loadgen --url "$ADDR" --concurrency 8 --requests 16 --json >/dev/null
}

stop_server() { kill -TERM "$PID"; wait "$PID" || true; }

for mb in $BATCHES; do
  start_server "$mb"
  echo "{\"run\":\"closed\",\"max_batch\":$mb,\"device\":\"$DEVICE\",\"report\":$("$BIN" loadgen --url "$ADDR" --concurrency "$CONCURRENCY" --requests "$REQUESTS" --json)}"
  stop_server
done
start_server 0 # the device's default
for rate in $RATES; do
  n=$(python3 -c "print(max(20, int($rate * 20)))")
  echo "{\"run\":\"open\",\"max_batch\":\"default\",\"device\":\"$DEVICE\",\"rate\":$rate,\"report\":$("$BIN" loadgen --url "$ADDR" --concurrency 64 --rate "$rate" --requests "$n" --json)}"
done
stop_server

#!/usr/bin/env bash
# Service soak (benches/README.md, "Service soak"): the service's default limits under 10× its
# measured capacity for 60 s, one request in four carrying a large (6000 px, 36 MP) probe,
# with 500 idle sockets held open throughout. Reports accepted / 429 / 504 counts, p99 of the
# accepted requests, the server's peak resident size, and how long after the overload a new
# request is answered as fast as before it.
#   benches/service/soak.sh [--device cpu|gpu] [--factor 10] [--seconds 60] [--idle 500]
# Needs target/release/facegate (FACEGATE_BIN to override). Prints one JSON object.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${FACEGATE_BIN:-target/release/facegate}
DEVICE=cpu; FACTOR=10; SECONDS_=60; IDLE=500; LARGE_EVERY=4
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2;;
    --factor) FACTOR=$2; shift 2;;
    --seconds) SECONDS_=$2; shift 2;;
    --idle) IDLE=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
ulimit -n 8192 2>/dev/null || true
out=$(mktemp -d)
. benches/service/server.sh
launch --device "$DEVICE"
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$out"' EXIT
kib() { awk -v f="$1:" '$1 == f { print $2 }' /proc/$PID/status; }
lg() { "$BIN" loadgen --url "$ADDR" --json "$@"; }
field() { python3 -c "import json,sys; r=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

lg --concurrency 4 --requests 16 --large-every "$LARGE_EVERY" >/dev/null # warm up
idle_ms=$(lg --concurrency 1 --requests 10 | field 'r["latency_ms"]["p50"]')
capacity=$(lg --concurrency 4 --requests 40 --large-every "$LARGE_EVERY" | field 'r["throughput"]')
rss_before=$(kib VmRSS)
rate=$(python3 -c "print(round($capacity * $FACTOR, 2))")
n=$(python3 -c "print(int($rate * $SECONDS_) + 1)")

# The overload, in the background; meanwhile sample the server's memory.
lg --concurrency 2000 --rate "$rate" --requests "$n" --duration "$SECONDS_" \
  --large-every "$LARGE_EVERY" --idle-sockets "$IDLE" >"$out/overload.json" &
LOAD=$!
sleep "$SECONDS_"
# Recovery: from the end of the overload until a single request is answered within twice the
# idle latency.
t0=$(date +%s.%N)
recovered=
while [ -z "$recovered" ]; do
  r=$(lg --concurrency 1 --requests 1)
  if [ "$(echo "$r" | field 'r["status"].get("200", 0)')" = 1 ] &&
     python3 -c "import sys; sys.exit(0 if $(echo "$r" | field 'r["latency_ms"]["p50"]') <= 2 * $idle_ms else 1)"; then
    recovered=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
  fi
  [ -n "$recovered" ] || sleep 0.25
done
wait $LOAD
python3 - "$out/overload.json" <<PY
import json, sys
r = json.load(open(sys.argv[1]))
s = r["status"]
print(json.dumps({
    "device": "$DEVICE",
    "capacity_per_s": $capacity,
    "offered_per_s": $rate,
    "seconds": $SECONDS_,
    "sent": r["requests"],
    "large_sent": r["large_requests"],
    "accepted_200": s.get("200", 0),
    "refused_429": s.get("429", 0),
    "timed_out_504": s.get("504", 0),
    "other": {k: v for k, v in s.items() if k not in ("200", "429", "504")},
    "large_status": r["large_status"],
    "p99_accepted_ms": r["latency_ms"]["p99"],
    "p50_accepted_ms": r["latency_ms"]["p50"],
    "idle_latency_ms": $idle_ms,
    "rss_before_mb": round($rss_before / 1024),
    "peak_rss_mb": round($(kib VmHWM) / 1024),
    "idle_sockets": r["idle_sockets"],
    "idle_closed_by_server": r["idle_closed_by_server"],
    "recovery_s": $recovered,
}))
PY

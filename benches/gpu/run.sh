#!/usr/bin/env bash
# The GPU table (benches/README.md, "GPU"), in one call on a machine with a GPU (e.g. the
# `device` tool's H200; no Rust there, so build here and carry the binaries):
#   1. the matcher kernels: copy bandwidth (PyTorch), the pairs kernel and the M = 1 scan as
#      a fraction of it, M = 64 / 1024 scans against torch.matmul + topk on the same data;
#   2. each network alone and whole verifications from JPEG (LFW-size and a 2000×2000 selfie)
#      at batch 1/8/32/128, crops cut on the device and on the host, with the stage split
#      (`facegate bench-nets --device gpu`);
#   3. the service: capacity (closed loop) over a grid of max_batch × device_workers (how the
#      GPU defaults are to be chosen), then p50/p99 latency under open-loop load at 50/80/100 %
#      of the best.
# Prints JSON lines and markdown tables. `--quick` runs steps 2 and 3 small (batch 1,
# MobileFaceNet only, a 1000 px selfie, a few requests), to check the script end to end on
# lavapipe (no GPU; under 8 min here, 2026-12-03): `benches/gpu/run.sh --quick --bin-dir target/debug`.
#
# Build here, then carry (64 MiB in all; the Vulkan loader from .gl/*.deb as in
# /work/.library/device/README.md):
#   CARGO_TARGET_DIR=target/rel cargo build --release --locked -p facegate \
#     -p facegate-kernels --bin facegate --bin facegate-matcher-bench
#   mkdir -p .gl/bin && for b in facegate facegate-matcher-bench; do
#     strip -o .gl/bin/$b target/rel/release/$b; done
#   # on the GPU machine:
#   benches/gpu/run.sh --bin-dir .gl/bin
# PyTorch eager running our networks beside burn is not in this script yet (see
# benches/README.md, "GPU").
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN_DIR=target/release; QUICK=0
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN_DIR=$2; shift 2;;
    --quick) QUICK=1; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
BIN=$BIN_DIR/facegate
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
if [ "$QUICK" = 1 ]; then
  BUDGET=0.1; BATCHES=1; SELFIE=1000; NETS=(--only mobilefacenet); REQUESTS=8; WARM=2; MIN_N=3
  LOAD_SECONDS=6; GRID="0:0"
else
  BUDGET=3; BATCHES=1,8,32,128; SELFIE=2000; NETS=(--only frn --only mobilefacenet); REQUESTS=4000
  WARM=16; MIN_N=10; LOAD_SECONDS=20; GRID="8:1 8:2 32:1 32:2 128:2"
fi
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
date -u +"date: %Y-%m-%dT%H:%MZ"

# 1. The matcher kernels (and PyTorch on the same data, where PyTorch is installed).
if [ "$QUICK" = 0 ]; then
  DATA="$OUT/data"; mkdir -p "$DATA"
  "$BIN_DIR/facegate-matcher-bench" --dump "$DATA" | tee "$OUT/kernels.jsonl"
  if python3 -c "import torch" 2>/dev/null; then
    python3 benches/gpu/torch_reference.py "$DATA" | tee "$OUT/torch.jsonl"
  fi
  rm -rf "$DATA"
fi

# 2. Networks and whole verifications.
"$BIN" bench-nets --device gpu --budget "$BUDGET" --batches "$BATCHES" --verify-batches "$BATCHES" \
  --selfie-side "$SELFIE" "${NETS[@]}" --only verify --json | tee "$OUT/pipeline.json"

# 3. The service: capacity (closed loop) for each (max_batch, device_workers) of the grid, to
#    choose the GPU defaults by measurement; then, on the best, latency at 50/80/100 % of it.
BIN=$BIN . benches/service/server.sh
serve() { # max_batch device_workers → sets ADDR and PID
  printf '[scheduler]\nmax_batch = %s\ndevice_workers = %s\n' "$1" "$2" >"$OUT/serve.toml"
  launch --device gpu --config "$OUT/serve.toml"
  "$BIN" loadgen --url "$ADDR" --concurrency 8 --requests "$WARM" --json >/dev/null # warm-up
}
best=; best_rate=0
for g in $GRID; do
  serve "${g%:*}" "${g#*:}"
  "$BIN" loadgen --url "$ADDR" --concurrency 128 --requests "$REQUESTS" --duration "$LOAD_SECONDS" --json \
    >"$OUT/capacity-$g.json"
  kill -TERM "$PID"; wait "$PID" || true
  rate=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput'])" "$OUT/capacity-$g.json")
  echo "{\"max_batch:device_workers\":\"$g\",\"capacity\":$rate}"
  if python3 -c "import sys; sys.exit(not $rate > $best_rate)"; then best=$g; best_rate=$rate; fi
done
echo "$best" >"$OUT/best"
serve "${best%:*}" "${best#*:}"
for share in 50 80 100; do
  rate=$(python3 -c "print(round($best_rate * $share / 100, 2))")
  n=$(python3 -c "print(max($MIN_N, int($rate * $LOAD_SECONDS)))")
  echo "{\"share\":$share,\"report\":$("$BIN" loadgen --url "$ADDR" --concurrency 1024 --rate "$rate" \
    --requests "$n" --duration "$((LOAD_SECONDS * 2))" --json)}" | tee -a "$OUT/load.jsonl"
done
kill -TERM "$PID"; wait "$PID" || true

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def lines(name):
    p = os.path.join(out, name)
    return [json.loads(l) for l in open(p) if l.startswith("{")] if os.path.exists(p) else []
rows = lines("kernels.jsonl") + lines("torch.jsonl")
if rows:
    copy = next((r["gb_per_s"] for r in rows if r["kernel"] == "copy"), None)
    torch = {(r["storage"], r["shape"]): r["seconds"] for r in rows if r["kernel"] == "torch_matmul_topk"}
    if copy:
        print(f"\ncopy bandwidth (read + write): {copy:.0f} GB/s\n")
    print("| kernel | storage | shape | time | throughput | GB/s read | % of copy bandwidth | vs torch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kernel"] in ("copy", "torch_matmul_topk"):
            continue
        t = torch.get((r["storage"], r["shape"]))
        vs = f"{r['seconds'] / t:.2f}x torch time" if t else "-"
        share = f"{100 * r['gb_per_s'] / copy:.0f} %" if copy else "-"
        print(f"| {r['kernel']} | {r['storage']} | {r['shape']} | {r['seconds'] * 1e3:.3f} ms | "
              f"{r['elements_per_s']:.3g}/s | {r['gb_per_s']:.0f} | {share} | {vs} |")
    for (s, shape), t in torch.items():
        print(f"| torch matmul+topk | {s} | {shape} | {t * 1e3:.3f} ms | | | | reference |")
p = json.load(open(os.path.join(out, "pipeline.json")))
print(f"\n{p['runtime']}\n")
print("| case | input | median ms a call | per item (ms) | items/s | ms decode / detect / landmarks / crops + embed |")
print("|---|---|---:|---:|---:|---|")
for c in p["cases"]:
    s = c.get("stages")
    split = " / ".join(f"{s[k]:.1f}" for k in ("decode_ms", "detect_ms", "landmarks_ms", "embed_ms")) if s else ""
    print(f"| {c['model']} | {c['input']} | {c['median_ms']:.2f} | {c['median_ms_per_item']:.3f} | "
          f"{1e3 / c['median_ms_per_item']:.1f} | {split} |")
print("\n| max_batch : device_workers (0: the default) | capacity /s (128 clients, closed loop) | mean batch | p50 ms | p99 ms |")
print("|---|---:|---:|---:|---:|")
for name in sorted(f for f in os.listdir(out) if f.startswith("capacity-")):
    c = json.load(open(os.path.join(out, name)))
    print(f"| {name[9:-5]} | {c['throughput']:.1f} | {c['mean_batch']:.1f} | {c['latency_ms']['p50']:.0f} | "
          f"{c['latency_ms']['p99']:.0f} |")
best = open(os.path.join(out, "best")).read().strip()
print(f"\nopen loop on the best ({best}):\n")
print("| offered load | rate /s | served /s | p50 ms | p99 ms | statuses |")
print("|---|---:|---:|---:|---:|---|")
for l in lines("load.jsonl"):
    r = l["report"]
    print(f"| {l['share']} % | {r['offered_rate']:.1f} | {r['throughput']:.1f} | {r['latency_ms']['p50']:.0f} | "
          f"{r['latency_ms']['p99']:.0f} | {', '.join(f'{k}: {v}' for k, v in sorted(r['status'].items()))} |")
PY

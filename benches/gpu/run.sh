#!/usr/bin/env bash
# One call on a machine with an NVIDIA GPU and PyTorch (e.g. the `device` tool's H100):
# the card's copy bandwidth (PyTorch), the pairs kernel and the M = 1 scan as a fraction of it,
# and M = 64 / 1024 scans against torch.matmul + topk on the same data. Prints JSON lines and a
# markdown table for benches/README.md.
#
# Build here (the GPU machine has no Rust), then carry the binary:
#   cargo build --release -p facegate-kernels --bin facegate-matcher-bench
#   mkdir -p .gl/bin && strip -o .gl/bin/facegate-matcher-bench target/release/facegate-matcher-bench
#   # on the GPU machine (Vulkan loader from .gl/*.deb as in /work/.library/device/README.md):
#   benches/gpu/run.sh .gl/bin/facegate-matcher-bench [.gl/bin/resident]
# The optional second binary is the in-place scoring bench (benches/resident.rs: burn and the
# matcher on one device), built with `cargo bench -p facegate-pipeline --bench resident --no-run`
# (it prints the executable's path) and stripped the same way.
set -euo pipefail
BIN=${1:-target/release/facegate-matcher-bench}
RESIDENT=${2:-}
OUT=${OUT:-$(mktemp -d)}
DATA="$OUT/data"
mkdir -p "$DATA"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
date -u +"date: %Y-%m-%dT%H:%MZ"
"$BIN" --dump "$DATA" | tee "$OUT/facegate.jsonl"
python3 "$(dirname "$0")/torch_reference.py" "$DATA" | tee "$OUT/torch.jsonl"
rm -rf "$DATA"
if [ -n "$RESIDENT" ]; then
    "$RESIDENT" --bench --noplot 2>&1 | grep -E "^verify_scoring|time:" | tee "$OUT/resident.txt"
fi
python3 - "$OUT/facegate.jsonl" "$OUT/torch.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
copy = next(r["gb_per_s"] for r in rows if r["kernel"] == "copy")
torch = {(r["storage"], r["shape"]): r["seconds"] for r in rows if r["kernel"] == "torch_matmul_topk"}
print(f"\ncopy bandwidth (read + write): {copy:.0f} GB/s\n")
print("| kernel | storage | shape | time | throughput | GB/s read | % of copy bandwidth | vs torch |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["kernel"] in ("copy", "torch_matmul_topk"):
        continue
    t = torch.get((r["storage"], r["shape"]))
    vs = f"{r['seconds'] / t:.2f}x torch time" if t else "-"
    print(f"| {r['kernel']} | {r['storage']} | {r['shape']} | {r['seconds'] * 1e3:.3f} ms | "
          f"{r['elements_per_s']:.3g}/s | {r['gb_per_s']:.0f} | {100 * r['gb_per_s'] / copy:.0f} % | {vs} |")
for (s, shape), t in torch.items():
    print(f"| torch matmul+topk | {s} | {shape} | {t * 1e3:.3f} ms | | | | reference |")
PY

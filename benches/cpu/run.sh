#!/usr/bin/env bash
# CPU table (benches/README.md, "CPU: facegate beside onnxruntime"): each network alone on
# facegate's CPU path (`facegate bench-nets`: facegate-conv's kernels, burn flex for the rest)
# and on onnxruntime (tools/bench/ort_bench.py, the same
# shapes, ONNX graphs exported from the same weights), with the same thread count, one after
# the other in one run; then whole verifications on facegate. Prints a markdown table.
#   benches/cpu/run.sh [--threads 2] [--budget 1.5] [--quick]
# Needs target/release/facegate (FACEGATE_BIN to override) and a venv with onnxruntime
# (tools/onnx/requirements.txt; ONNX_VENV, default target/onnx-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${FACEGATE_BIN:-target/release/facegate}
VENV=${ONNX_VENV:-target/onnx-venv}
THREADS=2; BUDGET=1.5
while [ $# -gt 0 ]; do
  case $1 in
    --threads) THREADS=$2; shift 2;;
    --budget) BUDGET=$2; shift 2;;
    --quick) BUDGET=0.2; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tools/onnx/requirements.txt
fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
RAYON_NUM_THREADS=$THREADS "$BIN" bench-nets --budget "$BUDGET" --json >"$out/flex.json"
"$VENV/bin/python" tools/bench/ort_bench.py --threads "$THREADS" --budget "$BUDGET" --json >"$out/ort.json"
"$VENV/bin/python" - "$out/flex.json" "$out/ort.json" "$THREADS" <<'PY'
import json, sys, datetime
flex = json.load(open(sys.argv[1]))
ort = json.load(open(sys.argv[2]))
ort_cases = {(c["model"], "x".join(map(str, c["input"]))): c for c in ort["cases"]}
print(f"{datetime.date.today()}, {sys.argv[3]} threads, median ms per batch (ms per item)\n")
print("| network | input | facegate | onnxruntime | facegate / ort |")
print("|---|---|---:|---:|---:|")
for c in flex["cases"]:
    o = ort_cases.get((c["model"], c["input"]))
    cell = lambda x: f"{x['median_ms']:.2f} ({x['median_ms_per_item']:.2f})"
    if o:
        print(f"| {c['model']} | {c['input']} | {cell(c)} | {cell(o)} | {c['median_ms'] / o['median_ms']:.1f}× |")
    else:
        print(f"| {c['model']} | {c['input']} | {cell(c)} | | |")
pyramid = lambda cases: sum(c["median_ms"] for c in cases if c["model"] == "pnet")
if pyramid(flex["cases"]) and pyramid(ort["cases"]):
    f, o = pyramid(flex["cases"]), pyramid(ort["cases"])
    print(f"| pnet, whole pyramid of a 250×250 photo | sum | {f:.2f} | {o:.2f} | {f / o:.1f}× |")
PY

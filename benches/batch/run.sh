#!/usr/bin/env bash
# `facegate batch` throughput (pairs/s) and peak memory, for benches/README.md "Batch jobs".
#
#   cargo build --release -p facegate && cargo build --release -p facegate-batch --example bench_input
#   benches/batch/run.sh [--device cpu|gpu] [--real N] [--rows N]
#
# Run 1: N real LFW DevTest pairs (paths): throughput and peak RSS.
# Run 2: the same N real pairs followed by error rows up to --rows (files that do not exist: no
#        decoding, no network), so the streaming reader and writer see a 100,000-row job in
#        minutes. Its peak RSS beside run 1's shows whether memory grows with the input.
# Prints one JSON line per run. FACEGATE_BIN / BENCH_INPUT_BIN override the binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
device=cpu real=1000 rows=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --real) real=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=${FACEGATE_BIN:-target/release/facegate}
input_bin=${BENCH_INPUT_BIN:-target/release/examples/bench_input}
pairs=${PAIRS:-../shared/data/lfw-view1/pairsDevTest.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Peak RSS of a child process, from getrusage (no GNU time needed).
measure() {
  python3 - "$@" <<'PY'
import json, resource, subprocess, sys, time
t = time.time()
r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
summary = json.loads(r.stdout.decode().strip().splitlines()[-1]) if r.returncode == 0 else {}
print(json.dumps({"rc": r.returncode, "wall_s": round(time.time() - t, 2),
                  "peak_rss_mib": round(u.ru_maxrss / 1024, 1), "summary": summary}))
PY
}

for run in "real $real $real" "mixed $rows $real"; do
  set -- $run
  "$input_bin" "$pairs" "$work/$1.parquet" "$2" "$3"
  # Paths are relative to the pair list's folder, and read only below --images.
  result=$(measure "$bin" batch --input "$work/$1.parquet" --output "$work/$1-out.parquet" \
    --images "$(dirname "$pairs")" --device "$device" --json)
  printf '{"run":"%s","rows":%s,"real_pairs":%s,"device":"%s","result":%s}\n' "$1" "$2" "$3" "$device" "$result"
done

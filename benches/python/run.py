#!/usr/bin/env python3
"""`Engine.verify_batch` beside `facegate batch` on the same pairs, same machine, same run
(benches/README.md, "Python").

    python benches/python/run.py [--pairs N] [--device cpu|gpu] [--repeat R]

N LFW DevTest pairs (paths under ../shared/data/lfw-view1) are written to one Parquet file by
the batch bench's writer (crates/facegate-batch/examples/bench_input.rs).
Then, alternating R times: `facegate batch --input that --json` (wall time of the process,
models loaded included), and in this process `facegate.Engine(...)` + `verify_batch` on the
same table read back from that Parquet file (wall time, models loaded included). Both use the
scheduler at bulk priority with default settings. Prints one JSON line per run and a summary.
FACEGATE_BIN and BENCH_INPUT_BIN name the binaries (default target/release/..., then
target/debug/...): build them from the same tree and profile as the installed package.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

import facegate

REPO = Path(__file__).resolve().parents[2]
LFW = REPO.parent / "shared" / "data" / "lfw-view1"


def built(env: str, name: str) -> str:
    """A binary of this tree: $env, else target/release/NAME, else target/debug/NAME."""
    if env in os.environ:
        return os.environ[env]
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / name
        if p.is_file():
            return str(p)
    sys.exit(f"no {name}: build it (benches/batch/run.sh says how), or set {env}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    runs = {"cli": [], "python": []}
    with tempfile.TemporaryDirectory() as work:
        src = Path(work) / "pairs.parquet"
        # The batch bench's input writer: paths relative to LFW's folder.
        subprocess.run(
            [built("BENCH_INPUT_BIN", "examples/bench_input"), LFW / "pairsDevTest.txt", src,
             str(args.pairs), str(args.pairs)],
            check=True,
        )
        for r in range(args.repeat):
            out = Path(work) / f"out-{r}.parquet"
            t = time.perf_counter()
            subprocess.run(
                [built("FACEGATE_BIN", "facegate"), "batch", "--input", src, "--output", out, "--images", LFW,
                 "--device", args.device, "--json"],
                check=True, stdout=subprocess.DEVNULL,
            )
            cli_s = time.perf_counter() - t
            cli = pq.read_table(out)

            t = time.perf_counter()
            engine = facegate.Engine(device=args.device)
            got = engine.verify_batch(pq.read_table(src), images_root=LFW)
            py_s = time.perf_counter() - t
            del engine

            same = got.select(["id", "decision"]).equals(cli.select(["id", "decision"]))
            for name, s in (("cli", cli_s), ("python", py_s)):
                runs[name].append(s)
                print(json.dumps({"run": r, "path": name, "pairs": args.pairs, "wall_s": round(s, 2),
                                  "pairs_per_s": round(args.pairs / s, 2), "same_decisions": same}))
    cli, py = statistics.median(runs["cli"]), statistics.median(runs["python"])
    print(json.dumps({"summary": True, "device": args.device, "pairs": args.pairs,
                      "cli_median_s": round(cli, 2), "python_median_s": round(py, 2),
                      "python_vs_cli": round(py / cli - 1, 4)}))


if __name__ == "__main__":
    main()

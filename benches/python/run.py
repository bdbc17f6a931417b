#!/usr/bin/env python3
"""`Engine.verify_batch` beside `facegate batch` on the same pairs, same machine, same run
(benches/README.md, "Python").

    python benches/python/run.py [--pairs N] [--device cpu|gpu] [--repeat R]

N LFW DevTest pairs (paths under ../shared/data/lfw-view1) are written to one Parquet file.
Then, alternating R times: `facegate batch --input that --json` (wall time of the process,
models loaded included), and in this process `facegate.Engine(...)` + `verify_batch` on the
same table read back from that Parquet file (wall time, models loaded included). Both use the
scheduler at bulk priority with default settings. Prints one JSON line per run and a summary.
FACEGATE_BIN names the binary (default target/release/facegate, then target/debug/facegate):
it must be built from the same tree and profile as the installed package.
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

import pyarrow as pa
import pyarrow.parquet as pq

import facegate

REPO = Path(__file__).resolve().parents[2]
LFW = REPO.parent / "shared" / "data" / "lfw-view1"


def lfw_pairs(n: int) -> pa.Table:
    """The first n pairs of pairsDevTest.txt as (id, probe, reference) paths under LFW."""
    rows = []
    with open(LFW / "pairsDevTest.txt") as f:
        next(f)
        for line in f:
            p = line.split()
            if len(p) == 3:
                a, b = (p[0], int(p[1])), (p[0], int(p[2]))
            else:
                a, b = (p[0], int(p[1])), (p[2], int(p[3]))
            path = lambda who: f"lfw-deepfunneled/{who[0]}/{who[0]}_{who[1]:04d}.jpg"  # noqa: E731
            rows.append((f"pair-{len(rows):05d}", path(a), path(b)))
    # Cycle the list when more pairs are asked for than it has.
    rows = [(f"pair-{i:05d}", *rows[i % len(rows)][1:]) for i in range(n)]
    return pa.table({k: [r[i] for r in rows] for i, k in enumerate(["id", "probe", "reference"])})


def facegate_bin() -> str:
    if "FACEGATE_BIN" in os.environ:
        return os.environ["FACEGATE_BIN"]
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "facegate"
        if p.is_file():
            return str(p)
    sys.exit("no facegate binary: cargo build --release -p facegate, or set FACEGATE_BIN")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    table = lfw_pairs(args.pairs)
    runs = {"cli": [], "python": []}
    with tempfile.TemporaryDirectory() as work:
        src = Path(work) / "pairs.parquet"
        pq.write_table(table, src)
        for r in range(args.repeat):
            out = Path(work) / f"out-{r}.parquet"
            t = time.perf_counter()
            subprocess.run(
                [facegate_bin(), "batch", "--input", src, "--output", out, "--images", LFW,
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

#!/usr/bin/env python3
"""The driver memory of facegate.ray's commit step: N staged rows shaped like a real job's
(ids, the default model's id, a refusal in one row of ten), one run of staged files, then the
commit. Prints the peak RSS of the process above what it held before staging was read, per row.

    target/py-venv/bin/python benches/ray/commit_memory.py --rows 1000000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import facegate.ray as fray

MODEL = "mtcnn-facenet-pytorch-2.6.0/arcface-112/faceplugin-mobilefacenet-512@87aacdfe5751"


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=100)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="facegate-commit-"))
    staging = work / "out.staging"
    run = staging / "runs" / "1"
    run.mkdir(parents=True)
    per = -(-a.rows // a.files)
    for f in range(a.files):
        lo, hi = f * per, min(a.rows, (f + 1) * per)
        n = hi - lo
        refused = [i % 10 == 0 for i in range(lo, hi)]
        pq.write_table(pa.table({
            "id": [f"subscriber-{i:010}" for i in range(lo, hi)],
            "decision": ["rejected" if r else "match" for r in refused],
            "score": [None if r else 0.8 for r in refused],
            "threshold": [0.35] * n,
            "reasons": [["probe_no_face"] if r else [] for r in refused],
            "model": [MODEL] * n,
            "elapsed_ms": [150.0] * n,
        }, schema=fray.OUTPUT_SCHEMA), run / f"part-{f:05}.parquet")
    ids = pa.array([f"subscriber-{i:010}" for i in range(a.rows)])
    before = peak_kib()
    t0 = time.monotonic()
    staged = fray._staged(staging)
    s = fray._commit(work / "out", staging, "f", ids, staged,
                     {"verified_rows": a.rows, "resumed_rows": 0, "actors": 1, "wall_s": 1.0, "pairs_per_s": 0.0})
    took = time.monotonic() - t0
    grew = (peak_kib() - before) * 1024
    assert s.rows == a.rows
    print(f"{a.rows} rows: commit {took:.1f} s, peak RSS +{grew / 2**20:.0f} MiB "
          f"({grew / a.rows:.0f} bytes a row; the ids alone held before: {ids.nbytes / a.rows:.0f} bytes a row)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""facegate.ray with 1, 2 and 3 actors on a loopback Ray cluster (a head for reading and
writing, one worker node per actor), each run checked for rows lost and rows duplicated, beside
`facegate batch` on the same input in the same run. Prints a Markdown table.

    target/py-venv/bin/python benches/ray/run.py --rows 480 --facegate target/debug/facegate

Needs the package with its `ray` extra (`pip install "./crates/facegate-py[ray]"`). The input is
built from the shippable faces in data/ at 160x160 (pairs of six photos, repeated).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only (see test_ray.py)

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import facegate.ray as fray  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FACES = ["face-a.png", "face-b.png", "face-c.png", "face-d.png", "face-e.png", "exif-rotated.jpg"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=480)
    ap.add_argument("--actors", default="1,2,3")
    ap.add_argument("--batch-rows", type=int, default=16)
    ap.add_argument("--facegate", default=str(REPO / "target" / "release" / "facegate"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="facegate-ray-bench-"))
    photos = work / "photos"
    photos.mkdir()
    names = []
    for name in FACES:
        img = ImageOps.exif_transpose(Image.open(REPO / "data" / name)).convert("RGB")
        names.append(Path(name).stem + ".png")
        img.resize((160, 160), Image.LANCZOS).save(photos / names[-1])
    combos = itertools.cycle(itertools.product(names, names))
    rows = [(f"pair-{i:06}", *next(combos)) for i in range(a.rows)]
    src = work / "pairs.parquet"
    cols = list(zip(*rows))
    pq.write_table(pa.table({"id": cols[0], "probe": cols[1], "reference": cols[2]}), src)

    t0 = time.monotonic()
    subprocess.run([a.facegate, "batch", "--device", "cpu", "--input", str(src), "--output",
                    str(work / "cli.parquet"), "--images", str(photos)], check=True, capture_output=True)
    cli_s = time.monotonic() - t0
    want = pq.read_table(work / "cli.parquet").select(["id", "decision", "score", "reasons"])

    counts = [int(x) for x in a.actors.split(",")]
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    for _ in range(max(counts)):
        cluster.add_node(num_cpus=1, resources={"facegate": 1}, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)
    table = [f"| `facegate batch` (one process, 2 device workers) | 1 | - | {cli_s:.1f} | "
             f"{a.rows / cli_s:.2f} | 0 | 0 | (the reference) |"]
    try:
        for n in counts:
            out = work / f"out-{n}"
            t = time.monotonic()
            fray.verify_parquet(src, out, images_root=photos, device="cpu", actors=n,
                                    actor_resources={"facegate": 1}, batch_rows=a.batch_rows, verbose=False)
            wall = time.monotonic() - t
            got = pq.read_table(out)
            ids = got.column("id").to_pylist()
            lost = len(set(r[0] for r in rows) - set(ids))
            duplicated = len(ids) - len(set(ids))
            same = got.select(["id", "decision", "score", "reasons"]).equals(want)
            table.append(f"| `facegate.ray` | {n + 1} (head + {n}) | {n} | {wall:.1f} | "
                         f"{a.rows / wall:.2f} | {lost} | {duplicated} | {'same' if same else 'DIFFERENT'} |")
            print(table[-1], file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"\n{a.rows} rows, batch_rows {a.batch_rows}, {os.cpu_count()} CPU cores; wall time from the "
          "call to the committed output (cluster already up)\n")
    print("| run | nodes | actors | wall (s) | pairs/s | rows lost | rows duplicated | rows vs `facegate batch` |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

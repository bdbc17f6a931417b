"""The Spark example (`examples/spark_verify.py`: `mapInArrow` on `local[2]`, two partitions)
gives the rows of `facegate batch` on the same input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import BATCH_ROWS as ROWS, DATA, cli_batch, same_rows

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "spark_verify.py"



def test_spark_map_in_arrow_gives_the_rows_of_facegate_batch(tmp_path):
    table = pa.table({k: [r[i] for r in ROWS] for i, k in enumerate(["id", "probe", "reference"])})
    want = cli_batch(table, tmp_path)
    src, out = tmp_path / "spark-in.parquet", tmp_path / "spark-out"
    pq.write_table(table, src)
    # A process of its own with a hard limit: a JVM that hangs must not hang the suite.
    run = subprocess.run(
        [sys.executable, EXAMPLE, "--input", src, "--output", out, "--images", DATA,
         "--partitions", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=420,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    got = pq.read_table(out)
    # Spark writes one file per partition; compare in id order.
    order = lambda t: t.take(pa.compute.sort_indices(t, [("id", "ascending")]))  # noqa: E731
    got, want = order(got), order(want)
    assert got.num_rows == len(ROWS)
    same_rows(got.cast(want.schema), want)

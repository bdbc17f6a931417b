"""Batch-job inputs as users write them: pyarrow's Parquet codecs and compressed Arrow IPC.

Writes data/batch/pairs.<codec>.parquet and pairs.<codec>.arrow: three rows of image paths
(relative to data/) that `crates/facegate/tests/batch.rs` runs through `facegate batch`.
pyarrow's default Parquet codec is snappy, as are pandas', Spark's and DuckDB's.

    python -m venv /tmp/venv && /tmp/venv/bin/pip install pyarrow==18.1.0
    /tmp/venv/bin/python tools/batch/make_inputs.py
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parents[2] / "data" / "batch"

ROWS = {
    "id": ["same", "other", "missing"],
    "probe": ["face-a.png", "face-a.png", "face-b.png"],
    "reference": ["exif-rotated.jpg", "face-c.png", "missing.png"],
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    table = pa.table(ROWS)
    for codec in ["snappy", "zstd", "gzip", "lz4", "brotli"]:
        pq.write_table(table, OUT / f"pairs.{codec}.parquet", compression=codec)
    for codec in ["lz4", "zstd"]:
        options = ipc.IpcWriteOptions(compression=codec)
        with ipc.new_file(OUT / f"pairs.{codec}.arrow", table.schema, options=options) as w:
            w.write_table(table)
    print("pyarrow", pa.__version__, "->", OUT)


if __name__ == "__main__":
    main()

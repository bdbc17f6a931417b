"""Shared fixtures: the repository's data/ photos, the `facegate` command (the reference the
package must agree with), and one engine for the session."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, List

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import facegate

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "data"


def facegate_bin() -> Path:
    """The command built from the same tree (`cargo test --workspace` builds target/debug)."""
    if "FACEGATE_BIN" in os.environ:
        return Path(os.environ["FACEGATE_BIN"])
    for profile in ("debug", "release"):
        p = REPO / "target" / profile / "facegate"
        if p.is_file():
            return p
    raise FileNotFoundError(
        "no facegate binary: build it (cargo build -p facegate) or set FACEGATE_BIN"
    )


def run_cli(*args: Any) -> str:
    out = subprocess.run(
        [str(facegate_bin()), *map(str, args)], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, f"facegate {args}: {out.stderr}"
    return out.stdout


def cli_json_lines(*args: Any) -> List[Any]:
    return [json.loads(line) for line in run_cli(*args).splitlines() if line.strip()]


# (id, probe, reference) under data/: a match, an impostor, a truncated file, no face, a group
# photo as a selfie, a missing file, a path out of the folder, another impostor.
BATCH_ROWS = [
    ("same", "face-a.png", "exif-rotated.jpg"),
    ("other", "face-a.png", "face-c.png"),
    ("truncated", "truncated.jpg", "face-a.png"),
    ("no-face", "no-face.png", "face-a.png"),
    ("group", "face-d.png", "group-5.png"),
    ("missing", "face-b.png", "missing.png"),
    ("outside", "face-b.png", "../Cargo.toml"),
    ("e-b", "face-e.png", "face-b.png"),
]

COMPARED = ["id", "decision", "score", "threshold", "reasons", "model"]


def cli_batch(table: pa.Table, tmp_path: Path) -> pa.Table:
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(table, src)
    run_cli("batch", "--device", "cpu", "--input", src, "--output", out, "--images", DATA)
    return pq.read_table(out)


def same_rows(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema, (got.schema, want.schema)
    g, w = got.select(COMPARED).to_pylist(), want.select(COMPARED).to_pylist()
    assert [r["id"] for r in g] == [r["id"] for r in w]
    for a, b in zip(g, w):
        sa, sb = a.pop("score"), b.pop("score")
        assert a == b
        assert (sa is None and sb is None) or abs(sa - sb) <= 1e-6, (a["id"], sa, sb)


@pytest.fixture(scope="session")
def engine() -> facegate.Engine:
    return facegate.Engine(device="cpu")


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA

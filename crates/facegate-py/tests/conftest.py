"""Shared fixtures: the repository's data/ photos, the `facegate` command (the reference the
package must agree with), and one engine for the session."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, List

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


@pytest.fixture(scope="session")
def engine() -> facegate.Engine:
    return facegate.Engine(device="cpu")


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA

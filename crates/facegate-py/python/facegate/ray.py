"""facegate on Ray Data: verify a Parquet table of pairs on a cluster, exactly once.

    import facegate.ray
    summary = facegate.ray.verify_parquet("pairs/", "decisions/", images_root="/srv/photos",
                                          actors=8, gpus_per_actor=0.5)

or ``python -m facegate.ray --input pairs/ --output decisions/ --address auto``.

The job is ``read_parquet`` → ``map_batches`` (a pool of actors, one ``Engine`` each) →
``write_parquet``. Ray runs a batch at least once: when a node dies, the batches it held run
again elsewhere, and their rows are written a second time. So results are not written to the
output but to a staging folder beside it (``<output>.staging``), one sub-folder per run, and a
commit step publishes them:

1. every row is keyed by the input ``id`` (ids must be unique);
2. the commit keeps one row per id (the first staged; a batch that ran twice gave the same rows),
   checks that every input id has exactly one, and puts them in input order;
3. it writes them into a new folder and renames that to ``output`` (atomic on one filesystem),
   with ``_facegate_commit.json`` (the job's fingerprint and summary) inside.

A rerun of the same job (same input files, sizes and times, same engine arguments) after a
commit returns the committed summary without running; after a crash (a killed driver, a lost
cluster) it verifies only the ids no staged file holds, then commits. Files a killed writer left
half-written are unreadable Parquet and are ignored. On a cluster of several machines, ``output``
(hence the staging folder) and ``images_root`` must be on storage every node mounts.

The commit holds the result table in the driver's memory, with copies: measured at 562 bytes
a row at peak for a million rows (benches/ray/commit_memory.py), ~32 GB for 57 million.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

try:
    import ray
    import ray.data
except ImportError as e:  # an optional dependency: say how to get it
    raise ImportError('facegate.ray needs Ray Data: pip install "facegate[ray]"') from e

from . import ConfigError, Engine, InputError, _native

__all__ = ["Summary", "verify_parquet", "main"]

PathLike = Union[str, "os.PathLike[str]"]

COMMIT_FILE = "_facegate_commit.json"
# A committed output's rows per Parquet file.
ROWS_PER_FILE = 1_000_000
# The output schema of `facegate batch` (and Engine.verify_batch), from the Rust side.
OUTPUT_SCHEMA: pa.Schema = _native.BATCH_SCHEMA


@dataclasses.dataclass
class Summary:
    """What a job did. ``rows``: input rows, each in the output once. ``decisions``: rows by
    decision (match, no_match, rejected, error). ``refusals``: reason codes of rejected rows;
    ``errors``: reason codes of error rows (unreadable photos, paths outside the root).
    ``verified_rows``: rows this run verified (the rest were staged by an earlier run);
    ``recomputed_rows``: staged rows that were verified twice (batches Ray ran again) and kept
    once. ``pairs_per_s``: ``verified_rows`` over the run's wall time."""

    output: str
    rows: int
    decisions: Dict[str, int]
    refusals: Dict[str, int]
    errors: Dict[str, int]
    verified_rows: int
    resumed_rows: int
    recomputed_rows: int
    actors: int
    wall_s: float
    pairs_per_s: float
    already_committed: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        d = self.decisions
        lines = [
            f"{self.rows} rows -> {self.output}"
            + (" (already committed; nothing run)" if self.already_committed else ""),
            "  " + ", ".join(f"{k} {d.get(k, 0)}" for k in ("match", "no_match", "rejected", "error")),
        ]
        if self.refusals:
            lines.append("  refusals: " + ", ".join(f"{k} {v}" for k, v in sorted(self.refusals.items())))
        if self.errors:
            lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())))
        lines.append(
            f"  verified {self.verified_rows} rows with {self.actors} actors in {self.wall_s:.1f} s "
            f"({self.pairs_per_s:.1f} pairs/s); resumed {self.resumed_rows}, "
            f"verified twice and kept once {self.recomputed_rows}"
        )
        return "\n".join(lines)


class _Verifier:
    """The map_batches UDF: one engine per actor, loaded once. Rows whose id an earlier run
    staged are skipped."""

    def __init__(self, engine: Dict[str, Any], columns: Dict[str, str], images_root: Optional[str],
                 done: List[Any]) -> None:
        self.engine = Engine(**engine)
        self.columns = columns
        self.images_root = images_root
        # The staged ids travel once through the object store, fetched here once per actor
        # (inside a list: Ray resolves only top-level references in arguments).
        self.done = ray.get(done[0]) if done else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.done is not None and len(self.done):
            batch = batch.filter(pc.invert(pc.is_in(batch[self.columns["id"]], value_set=self.done)))
        if batch.num_rows == 0:
            return OUTPUT_SCHEMA.empty_table()
        return self.engine.verify_batch(batch, images_root=self.images_root, **self.columns)


def _input_files(paths: List[Path]) -> List[str]:
    files: List[str] = []
    for p in paths:
        if p.is_dir():
            files += sorted(str(f) for f in p.rglob("*.parquet") if f.is_file())
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"no such input: {p}")
    if not files:
        raise InputError("bad_input", f"no Parquet files in {paths}")
    return files


def _sha256_file(path: Optional[PathLike]) -> Optional[str]:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fingerprint(files: List[str], engine: Dict[str, Any], columns: Dict[str, str],
                 images_root: Optional[str]) -> str:
    """What makes two runs the same job: the input files as they are now, and everything that
    decides a row's result."""
    described = {
        "files": [(os.path.abspath(f), st.st_size, st.st_mtime_ns) for f, st in ((f, os.stat(f)) for f in files)],
        "engine": {k: v for k, v in engine.items() if k not in ("config", "calibration")},
        "config": engine.get("config") if isinstance(engine.get("config"), dict)
        else _sha256_file(engine.get("config")),
        "calibration": _sha256_file(engine.get("calibration")),
        "columns": columns,
        "images_root": images_root,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _input_ids(files: List[str], id_column: str) -> pa.Array:
    ids = pq.ParquetDataset(files).read(columns=[id_column]).column(id_column).combine_chunks()
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        raise InputError("bad_input", f"column {id_column!r} must be strings, not {ids.type}")
    ids = ids.cast(pa.string())
    if ids.null_count:
        raise InputError("bad_input", f"{ids.null_count} rows have no {id_column!r}")
    distinct = pc.count_distinct(ids).as_py()
    if distinct != len(ids):
        raise InputError(
            "bad_input",
            f"{len(ids) - distinct} duplicate ids in {id_column!r}: each row needs its own id, "
            "which keys its result exactly once",
        )
    return ids


def _staged_run(run: Path) -> List[pa.Table]:
    """A run's readable staged files; one a killed writer left half-written does not parse and
    is skipped (its rows are verified again)."""
    tables = []
    for f in sorted(run.glob("*.parquet")):
        try:
            t = pq.read_table(f)
        except (pa.ArrowInvalid, OSError):
            continue
        tables.append(t.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA))
    return tables


def _staged(staging: Path) -> List[pa.Table]:
    """Every earlier run's readable staged files, oldest run first."""
    runs = sorted((d for d in (staging / "runs").glob("*") if d.is_dir()), key=lambda d: d.name)
    return [t for run in runs for t in _staged_run(run)]


def _reason_counts(rows: pa.Table, decision: str) -> Dict[str, int]:
    reasons = rows.filter(pc.equal(rows["decision"], decision)).column("reasons")
    counts = pc.value_counts(pc.list_flatten(reasons.combine_chunks()))
    return {c["values"]: c["counts"] for c in counts.to_pylist()}


def _committed(output: Path, fingerprint: str) -> Optional[Summary]:
    marker = output / COMMIT_FILE
    if not output.exists():
        return None
    if not marker.is_file():
        raise InputError("bad_input", f"{output} exists and is not a facegate job's output; "
                         "choose another output or remove it")
    committed = json.loads(marker.read_text())
    if committed["fingerprint"] != fingerprint:
        raise InputError("bad_input", f"{output} holds another job's output (other input files "
                         "or engine arguments); choose another output or remove it")
    summary = Summary(**committed["summary"])
    summary.already_committed = True
    return summary


def _commit(output: Path, staging: Path, fingerprint: str, ids: pa.Array,
            staged: List[pa.Table], summary: Dict[str, Any]) -> Summary:
    rows = pa.concat_tables(staged) if staged else OUTPUT_SCHEMA.empty_table()
    # One row per id, the first staged: a batch Ray ran twice gave the same rows twice.
    rows = rows.append_column("_n", pa.array(range(rows.num_rows), pa.int64()))
    first = rows.group_by("id", use_threads=False).aggregate([("_n", "min")]).column("_n_min")
    recomputed = rows.num_rows - len(first)
    rows = rows.take(first).drop_columns(["_n"])
    # Exactly once: every input id has one row, and no row has an id the input lacks.
    missing = pc.sum(pc.invert(pc.is_in(ids, value_set=rows.column("id")))).as_py() or 0
    if missing or rows.num_rows != len(ids):
        raise RuntimeError(f"commit refused: {missing} input ids have no result and "
                           f"{rows.num_rows - (len(ids) - missing)} results are not for an input id")
    rows = rows.take(pc.index_in(ids, value_set=rows.column("id")))  # input order

    # Counted in Arrow, not row by row in Python: a national job has tens of millions.
    decisions = {c["values"]: c["counts"] for c in pc.value_counts(rows.column("decision").combine_chunks()).to_pylist()}
    done = Summary(output=str(output), rows=rows.num_rows, decisions=decisions,
                   refusals=_reason_counts(rows, "rejected"), errors=_reason_counts(rows, "error"),
                   recomputed_rows=recomputed, **summary)

    tmp = output.with_name(f".{output.name}.commit-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    for i, start in enumerate(range(0, max(rows.num_rows, 1), ROWS_PER_FILE)):
        pq.write_table(rows.slice(start, ROWS_PER_FILE), tmp / f"part-{i:05}.parquet")
    (tmp / COMMIT_FILE).write_text(json.dumps({"fingerprint": fingerprint, "summary": done.to_dict()}, indent=1))
    try:
        os.rename(tmp, output)  # the publication: all rows, or (before it) none
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return done


def verify_parquet(
    input: Union[PathLike, Sequence[PathLike]],
    output: PathLike,
    *,
    images_root: Optional[PathLike] = None,
    model: Optional[str] = None,
    detector: Optional[str] = None,
    device: str = "auto",
    config: Union[None, PathLike, Dict[str, Any]] = None,
    calibration: Optional[PathLike] = None,
    operating_point: Optional[str] = None,
    actors: Optional[int] = None,
    gpus_per_actor: float = 0,
    cpus_per_actor: float = 1,
    actor_resources: Optional[Dict[str, float]] = None,
    batch_rows: int = 256,
    id: str = "id",
    probe: str = "probe",
    reference: str = "reference",
    address: Optional[str] = None,
    verbose: bool = True,
) -> Summary:
    """Verify every row of ``input`` (Parquet files, or folders of them: columns ``id``,
    ``probe``, ``reference`` as for ``facegate batch``) into the folder ``output``, exactly
    once (see the module's notes), and return the job's summary (printed too when
    ``verbose``).

    ``actors``: the engines working at once (default: one per GPU when ``gpus_per_actor``, else
    the cluster's CPUs over ``cpus_per_actor``). Each actor reserves ``gpus_per_actor`` GPUs
    (a fraction shares one), ``cpus_per_actor`` CPUs, and ``actor_resources`` (custom
    resources, to place the actors on chosen nodes). ``batch_rows``: rows per call of an
    actor's engine. ``address``: the Ray cluster, when Ray is not yet initialised
    (``"auto"`` finds a running one; None starts a local one)."""
    t0 = time.monotonic()
    if batch_rows < 1:
        raise InputError("bad_input", "batch_rows must be at least 1")
    output = Path(output).absolute()
    staging = output.with_name(output.name + ".staging")
    inputs = [Path(input)] if isinstance(input, (str, os.PathLike)) else [Path(i) for i in input]
    files = _input_files(inputs)
    schema = pq.read_schema(files[0])
    for c in (id, probe, reference):
        if c not in schema.names:
            raise InputError("bad_input", f"the input has no column {c!r} (it has {schema.names})")
    paths = any(pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)
                for c in (probe, reference))
    # As `facegate batch`: paths are relative to the input's folder unless told otherwise.
    if images_root is None and paths:
        images_root = inputs[0] if inputs[0].is_dir() else inputs[0].parent
    root = None if images_root is None else os.path.abspath(images_root)
    engine: Dict[str, Any] = {
        "model": model,
        "detector": detector,
        "device": device,
        "config": config if config is None or isinstance(config, dict) else os.fspath(config),
        "calibration": None if calibration is None else os.fspath(calibration),
        "operating_point": operating_point,
    }
    columns = {"id": id, "probe": probe, "reference": reference}
    fingerprint = _fingerprint(files, engine, columns, root)
    committed = _committed(output, fingerprint)
    if committed is not None:
        shutil.rmtree(staging, ignore_errors=True)  # a crash between publication and cleanup
        if verbose:
            print(committed)
        return committed
    ids = _input_ids(files, id)

    job = staging / "job.json"
    if job.is_file() and json.loads(job.read_text())["fingerprint"] != fingerprint:
        raise InputError("bad_input", f"{staging} holds another job's staged rows; remove it "
                         "or choose another output")
    staging.mkdir(parents=True, exist_ok=True)
    job.write_text(json.dumps({"fingerprint": fingerprint, "input": files}))

    staged = _staged(staging)
    done = pc.unique(pa.concat_arrays([t.column("id").combine_chunks() for t in staged])) \
        if staged else pa.array([], pa.string())
    done = done.filter(pc.is_in(done, value_set=ids))
    remaining = len(ids) - len(done)

    if not ray.is_initialized():
        ray.init(address=address)
    # The read and write tasks need a CPU the actors do not hold: with every CPU reserved by
    # an actor, Ray waits for one forever.
    resources = ray.cluster_resources()
    cpus = resources.get("CPU", 0)
    if actors is None:
        if gpus_per_actor:
            actors = max(1, int(resources.get("GPU", 0) / gpus_per_actor))
        else:
            actors = max(1, int((cpus - 1) / max(cpus_per_actor, 1e-3)))
    if actors < 1:
        raise ConfigError("bad_config", "actors must be at least 1")
    if actors * cpus_per_actor > cpus - 1:
        raise ConfigError(
            "bad_config",
            f"{actors} actors of {cpus_per_actor} CPUs would hold the cluster's {cpus:g} CPUs: "
            "Ray Data's read and write tasks need one more; use fewer actors or cpus_per_actor",
        )
    verified = 0
    if remaining:
        run = staging / "runs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        ds = (
            ray.data.read_parquet(files)
            # The reader may put many small files into one block (one actor would do all the
            # work): blocks of batch_rows, split as they stream, spread it over the pool.
            .repartition(target_num_rows_per_block=batch_rows)
            .map_batches(
                _Verifier,
                fn_constructor_kwargs={
                    "engine": engine,
                    "columns": columns,
                    "images_root": root,
                    "done": [ray.put(done)] if len(done) else [],
                },
                batch_size=batch_rows,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cpus_per_actor,
                num_gpus=gpus_per_actor or None,
                resources=actor_resources,
            )
        )
        ds.write_parquet(str(run))
        verified = remaining
        staged += _staged_run(run)
    wall = time.monotonic() - t0
    summary = _commit(
        output, staging, fingerprint, ids, staged,
        {"verified_rows": verified, "resumed_rows": len(done), "actors": actors, "wall_s": wall,
         "pairs_per_s": verified / wall if wall > 0 else 0.0},
    )
    if verbose:
        print(summary)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m facegate.ray",
        description="Verify a Parquet table of pairs on a Ray cluster, exactly once.",
    )
    p.add_argument("--input", required=True, nargs="+", help="Parquet files or folders (id, probe, reference)")
    p.add_argument("--output", required=True, help="output folder (published atomically)")
    p.add_argument("--images", help="folder that path columns are relative to")
    p.add_argument("--address", help='Ray cluster address ("auto": a running cluster; default: start one here)')
    p.add_argument("--node-ip-address", help="this driver's address in the cluster (e.g. 127.0.0.1 for a cluster on loopback)")
    p.add_argument("--actors", type=int, help="engines working at once")
    p.add_argument("--gpus-per-actor", type=float, default=0)
    p.add_argument("--cpus-per-actor", type=float, default=1)
    p.add_argument("--resource", action="append", default=[], metavar="NAME=AMOUNT",
                   help="a custom resource each actor reserves (repeatable)")
    p.add_argument("--batch-rows", type=int, default=256)
    p.add_argument("--model")
    p.add_argument("--detector")
    p.add_argument("--device", default="auto")
    p.add_argument("--config")
    p.add_argument("--calibration")
    p.add_argument("--operating-point")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args(argv)
    resources = {}
    for r in a.resource:
        name, _, amount = r.partition("=")
        resources[name] = float(amount or 1)
    if a.node_ip_address:
        ray.init(address=a.address, _node_ip_address=a.node_ip_address)
    summary = verify_parquet(
        a.input, a.output, images_root=a.images, model=a.model, detector=a.detector,
        device=a.device, config=a.config, calibration=a.calibration,
        operating_point=a.operating_point, actors=a.actors, gpus_per_actor=a.gpus_per_actor,
        cpus_per_actor=a.cpus_per_actor, actor_resources=resources or None,
        batch_rows=a.batch_rows, address=a.address, verbose=not a.json,
    )
    if a.json:
        json.dump(summary.to_dict(), sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    # Run as the package's module, not as __main__: Ray's workers import the UDF class by name.
    from facegate.ray import main as _main

    sys.exit(_main())

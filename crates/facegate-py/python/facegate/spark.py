"""facegate on Spark: verify a DataFrame of pairs with ``mapInArrow``, one engine per Python
worker, the rows of ``facegate batch`` out.

    from facegate.spark import OUTPUT_SCHEMA, verify_arrow

    pairs = spark.read.parquet("pairs.parquet")            # id, probe, reference
    out = pairs.mapInArrow(verify_arrow(images_root="/srv/photos"), OUTPUT_SCHEMA)
    out.write.parquet("decisions.parquet")

Spark hands each Python worker Arrow record batches; they cross into the engine through the
Arrow C stream interface as in ``Engine.verify_batch``. The function Spark ships to its workers
holds only the engine's arguments; each worker process loads the models once and keeps them
for every partition it runs (Spark reuses Python workers by default).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple, Union

import pyarrow as pa
from pyspark.sql.pandas.types import from_arrow_schema

from . import Engine, _native

# `facegate batch`'s output schema as Spark's StructType, from the one Arrow definition (Rust).
OUTPUT_SCHEMA = from_arrow_schema(_native.BATCH_SCHEMA)

_engines: Dict[Tuple[Any, ...], Engine] = {}
_lock = threading.Lock()


def _engine(key: Tuple[Any, ...]) -> Engine:
    """This worker process's engine for these arguments, loaded on first use."""
    with _lock:
        if key not in _engines:
            model, detector, device, config = key
            _engines[key] = Engine(model=model, detector=detector, device=device, config=config)
        return _engines[key]


def verify_arrow(
    *,
    images_root: Union[None, str, "os.PathLike[str]"] = None,
    probe: str = "probe",
    reference: str = "reference",
    id: str = "id",
    model: Optional[str] = None,
    detector: Optional[str] = None,
    device: str = "auto",
    config: Union[None, str, "os.PathLike[str]"] = None,
) -> Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function for ``DataFrame.mapInArrow(fn, OUTPUT_SCHEMA)``: each record batch of
    pairs becomes a record batch of results, in order. ``images_root`` must be a folder every
    executor can read (paths in the table are confined below it); binary columns need none."""
    root = None if images_root is None else os.fspath(images_root)
    key = (model, detector, device, None if config is None else os.fspath(config))

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        engine = _engine(key)
        for batch in batches:
            table = engine.verify_batch(batch, probe=probe, reference=reference, id=id, images_root=root)
            yield from table.to_batches()

    return run

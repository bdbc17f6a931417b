"""facegate: 1:1 face verification (a live selfie against an ID portrait), from Python.

The same engine, models, decisions and no-retention promise as the ``facegate`` command and
its HTTP service::

    import facegate

    engine = facegate.Engine()                      # the default models, GPU if present
    v = engine.verify("selfie.jpg", "id-card.jpg")  # bytes, a path, or an H×W×3 uint8 array
    print(v.decision, v.score, v.reasons)

``Engine.verify_batch`` takes a pyarrow Table (or a Polars frame, or anything with
``__arrow_c_stream__``) and gives the rows of ``facegate batch``; ``evaluate`` gives the report
of ``facegate eval --json``. Every call releases the GIL; one engine may be shared by threads,
and their calls are batched together as the service batches requests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from . import _native
from ._errors import ConfigError, FacegateError, ImageRejected, InputError, ModelError

__version__: str = _native.__version__

__all__ = [
    "ConfigError",
    "DetectedFace",
    "Embeddings",
    "Engine",
    "FaceBox",
    "FacegateError",
    "ImageLike",
    "ImageRejected",
    "InputError",
    "ModelError",
    "Reason",
    "Refusal",
    "Verification",
    "evaluate",
]

ImageLike = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", np.ndarray]
"""A photo: its encoded bytes (JPEG, PNG or WebP), a path to such a file, or the decoded
pixels as a NumPy ``uint8`` array of shape (height, width, 3), RGB."""


@dataclass(frozen=True)
class FaceBox:
    """A face's box in the photo's pixels, and the detector's confidence."""

    x: float
    y: float
    width: float
    height: float
    score: float

    @classmethod
    def _from(cls, d: Optional[Dict[str, Any]]) -> Optional["FaceBox"]:
        if d is None:
            return None
        return cls(d["x"], d["y"], d["width"], d["height"], d["score"])


@dataclass(frozen=True)
class Reason:
    """Why one photo of a pair was refused: ``role`` ("probe" or "reference"), a stable
    ``code`` (e.g. ``no_face``, ``face_too_small``), a message a person can act on, and the
    measured values in ``detail``."""

    role: str
    code: str
    message: str
    detail: Dict[str, Any]


@dataclass(frozen=True)
class Verification:
    """One verification, as ``facegate verify --json`` and the service give it.

    ``decision`` is ``"match"``, ``"no_match"`` or ``"rejected"`` (then ``reasons`` says why
    and ``score`` is None); ``faces`` has the ``"probe"`` and ``"reference"`` face boxes;
    ``timings`` the milliseconds of each stage; ``model`` the pipeline's model id (scores and
    thresholds belong to it)."""

    decision: str
    score: Optional[float]
    threshold: float
    reasons: List[Reason]
    faces: Dict[str, Optional[FaceBox]]
    timings: Dict[str, float]
    model: str
    device: str
    _raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from_json(cls, text: str) -> "Verification":
        d = json.loads(text)
        return cls(
            decision=d["decision"],
            score=d.get("score"),
            threshold=d["threshold"],
            reasons=[Reason(r["role"], r["code"], r["message"], r["detail"]) for r in d.get("reasons", [])],
            faces={
                "probe": FaceBox._from(d.get("probe_face")),
                "reference": FaceBox._from(d.get("reference_face")),
            },
            timings=d["timings"],
            model=d["model"],
            device=d["device"],
            _raw=d,
        )

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of ``facegate verify --json``, as a dict."""
        return json.loads(json.dumps(self._raw))


@dataclass(frozen=True)
class Refusal:
    """Why a photo gave no descriptor: a stable ``code``, a message, the measured values."""

    code: str
    message: str
    detail: Dict[str, Any]


class Embeddings(NamedTuple):
    """``Engine.embed``'s answer. ``descriptors`` is float32 (N, D), one row per photo in
    order, NaN where the photo gave no face; ``refusals[i]`` says why (None where it did);
    ``faces[i]`` is the face's box, five landmarks, sharpness, yaw and rotation."""

    descriptors: np.ndarray
    refusals: List[Optional[Refusal]]
    faces: List[Optional[Dict[str, Any]]]


@dataclass(frozen=True)
class DetectedFace:
    """A face the detector found: its box and score, and its five landmarks (left eye, right
    eye, nose tip, left and right mouth corner; None for detectors without them), in the
    photo's pixels."""

    box: FaceBox
    landmarks: Optional[List[Tuple[float, float]]]


def _image(value: Any) -> Tuple[Any, Optional[bytearray]]:
    """The native module's form of a photo, and a scratch buffer to wipe after the call."""
    if isinstance(value, bytes):
        return value, None
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value), None
    if isinstance(value, (str, os.PathLike)):
        return os.fsdecode(os.fspath(value)), None
    if isinstance(value, np.ndarray):
        if value.dtype != np.uint8:
            raise ImageRejected("bad_array", f"an image array must be uint8 RGB, not {value.dtype}")
        if value.ndim != 3 or value.shape[2] != 3 or value.shape[0] == 0 or value.shape[1] == 0:
            raise ImageRejected(
                "bad_array", f"an image array must be (height, width, 3) RGB, not shape {value.shape}"
            )
        # One copy, into a buffer we own and wipe after the call.
        scratch = bytearray(value.nbytes)
        np.frombuffer(scratch, dtype=np.uint8).reshape(value.shape)[...] = value
        return (int(value.shape[0]), int(value.shape[1]), scratch), scratch
    raise TypeError(f"an image is bytes, a path or a NumPy uint8 array, not {type(value).__name__}")


def _wipe(scratch: Iterable[Optional[bytearray]]) -> None:
    for s in scratch:
        if s is not None:
            s[:] = bytes(len(s))


def _config_args(config: Union[None, str, "os.PathLike[str]", Dict[str, Any]]) -> Dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, dict):
        return {"config_json": json.dumps(config)}
    if isinstance(config, (str, os.PathLike)):
        return {"config_path": os.fspath(config)}
    raise TypeError("config is a path to a TOML or JSON file, or a dict of the same keys")


def _arrow_stream(data: Any) -> Any:
    """Something the native side reads through the Arrow C stream interface."""
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "__arrow_c_stream__"):  # pyarrow Tables and readers, Polars, ...
        return data
    try:
        import pandas as pd  # optional

        if isinstance(data, pd.DataFrame):
            return pa.Table.from_pandas(data, preserve_index=False)
    except ImportError:
        pass
    if hasattr(data, "to_arrow"):
        return data.to_arrow()
    raise InputError(
        "bad_input",
        f"data must be a pyarrow Table or RecordBatch, or have __arrow_c_stream__ (not {type(data).__name__})",
    )


class Engine:
    """The verification engine: models loaded once, calls from many threads batched together.

    ``model``: an embedder's registry name (``facegate models list``), or two to four joined by
    ``+`` for score fusion; None for the default. ``detector``: ``"mtcnn"`` (default) or
    ``"tiny_face_detector"``. ``device``: ``"auto"`` (a real GPU if present, else the CPU),
    ``"cpu"`` or ``"gpu"``. ``config``: a TOML/JSON file or a dict of its keys.
    ``calibration``: a file from ``facegate eval --write-calibration``, deciding at its
    ``operating_point`` (default: the file's). ``models_dir``: user models
    (``facegate models add``)."""

    def __init__(
        self,
        model: Optional[str] = None,
        detector: Optional[str] = None,
        device: str = "auto",
        config: Union[None, str, "os.PathLike[str]", Dict[str, Any]] = None,
        calibration: Union[None, str, "os.PathLike[str]"] = None,
        operating_point: Optional[str] = None,
        models_dir: Union[None, str, "os.PathLike[str]"] = None,
    ) -> None:
        self._native: Optional[_native.Engine] = _native.Engine(
            model=model,
            detector=detector,
            device=device,
            calibration=None if calibration is None else os.fspath(calibration),
            operating_point=operating_point,
            models_dir=None if models_dir is None else os.fspath(models_dir),
            **_config_args(config),
        )

    def _live(self) -> Any:
        native = self._native
        if native is None:
            raise FacegateError("closed", "this engine was closed; make a new one")
        return native

    def close(self) -> None:
        """Release the models, the device and the engine's threads now, rather than when the
        engine is garbage-collected. Calls already running finish first; later calls raise
        ``FacegateError`` with code ``closed``. ``with facegate.Engine() as engine:`` closes
        at the end of the block."""
        self._native = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def info(self) -> Dict[str, Any]:
        """The facts ``/info`` gives: ``model`` (id), ``models`` (name, sha256, package,
        licence), ``device``, ``scorer``, ``threshold``, ``operating_point``, ``calibrated``,
        ``version``, ``embedding_dim``."""
        return json.loads(self._live().info())

    def verify(self, probe: ImageLike, reference: ImageLike) -> Verification:
        """Compare a live selfie (``probe``: exactly one face) with an ID portrait or a photo
        of the card (``reference``: its main portrait). A photo without a usable face gives
        ``decision == "rejected"`` with its reasons; one that is not an image raises
        ``ImageRejected``."""
        p, ps = _image(probe)
        r, rs = _image(reference)
        try:
            return Verification._from_json(self._live().verify(p, r))
        finally:
            _wipe((ps, rs))

    def verify_batch(
        self,
        data: Any,
        probe: str = "probe",
        reference: str = "reference",
        id: str = "id",
        images_root: Union[None, str, "os.PathLike[str]"] = None,
    ) -> pa.Table:
        """Verify every row of ``data`` (a pyarrow Table or RecordBatch, a Polars or pandas
        DataFrame, anything with ``__arrow_c_stream__``): ``id`` a string column, ``probe`` and
        ``reference`` binary (image bytes) or string columns (paths under ``images_root``;
        a path that leaves it is an error row, never opened). Returns the rows of
        ``facegate batch``, in input order: id, decision (match, no_match, rejected or error),
        score, threshold, reasons, model, elapsed_ms."""
        root = None if images_root is None else os.fspath(images_root)
        return self._live().verify_batch(_arrow_stream(data), probe, reference, id, root)

    def embed(self, images: Sequence[ImageLike]) -> Embeddings:
        """The descriptor of each photo's face (the largest, when it clearly dominates), as
        ``facegate embed --json`` gives them. Descriptors are biometric data: keep them only as
        long as you need them."""
        args = [_image(i) for i in images]
        try:
            raw, dim, rows = self._live().embed([a for a, _ in args])
        finally:
            _wipe(s for _, s in args)
        descriptors = np.frombuffer(raw, dtype="<f4").reshape(len(args), dim)
        refusals: List[Optional[Refusal]] = []
        faces: List[Optional[Dict[str, Any]]] = []
        for row in json.loads(rows):
            error = row.pop("error")
            if error is None:
                refusals.append(None)
                faces.append(row)
            else:
                refusals.append(Refusal(error["rejection"]["code"], error["message"], error["rejection"]))
                faces.append(None)
        return Embeddings(descriptors, refusals, faces)

    def detect(self, image: ImageLike) -> List[DetectedFace]:
        """Every face the detector finds, largest first, in the photo's pixels."""
        arg, scratch = _image(image)
        try:
            found = json.loads(self._live().detect(arg))
        finally:
            _wipe((scratch,))
        return [
            DetectedFace(
                FaceBox._from(f),  # type: ignore[arg-type]
                None if f.get("points") is None else [tuple(p) for p in f["points"]],
            )
            for f in found
        ]

    def align(self, image: ImageLike, role: str = "probe") -> np.ndarray:
        """The (first) embedder's input chip of the photo's face, (size, size, 3) uint8 RGB,
        aligned as the network was trained (ArcFace's five-point template for the default).
        The face is chosen as for ``role``: ``"probe"`` needs exactly one face,
        ``"reference"`` takes the dominant one. No usable face raises ``ImageRejected``."""
        arg, scratch = _image(image)
        try:
            size, pixels = self._live().align(arg, role)
        finally:
            _wipe((scratch,))
        return np.frombuffer(pixels, dtype=np.uint8).reshape(size, size, 3)


def evaluate(
    pairs: Union[str, "os.PathLike[str]"],
    images: Union[None, str, "os.PathLike[str]"] = None,
    model: Optional[str] = None,
    target_fmr: Sequence[float] = (1e-3, 1e-4),
    *,
    detector: Optional[str] = None,
    device: str = "auto",
    config: Union[None, str, "os.PathLike[str]", Dict[str, Any]] = None,
    models_dir: Union[None, str, "os.PathLike[str]"] = None,
    all_pairs: bool = False,
    cross_roles: bool = False,
    policy: str = "dominant",
) -> Dict[str, Any]:
    """Measure a model on a pair list (LFW's pairs.txt, or a TSV of probe, reference, same):
    the report of ``facegate eval --json`` as a dict: ``pairs`` (accuracy, best accuracy),
    ``eer``, ``operating_points`` (threshold, FMR, FNMR at each target), ``det`` (the DET
    curve's points), ``failure_to_detect_rate``, ``buckets`` (by quality) and more.
    ``all_pairs`` takes impostors from every pair of photos of different people (needed for
    rates of 1e-4 on small lists); ``cross_roles`` keeps only probe-reference pairs among them."""
    report = _native.evaluate(
        os.fspath(pairs),
        images=None if images is None else os.fspath(images),
        model=model,
        detector=detector,
        device=device,
        models_dir=None if models_dir is None else os.fspath(models_dir),
        target_fmr=[float(r) for r in target_fmr],
        all_pairs=all_pairs,
        cross_roles=cross_roles,
        policy=policy,
        **_config_args(config),
    )
    return json.loads(report)

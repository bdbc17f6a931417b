"""Type stubs of the extension module (src/lib.rs). Use the ``facegate`` package, which checks
arguments and turns these JSON strings and buffers into objects."""

from typing import Any, List, Optional, Tuple, Union

import pyarrow

__version__: str
# `facegate batch`'s output schema.
BATCH_SCHEMA: pyarrow.Schema

# bytes (encoded photo), str (a path), or (height, width, RGB pixels).
_Image = Union[bytes, str, Tuple[int, int, bytearray]]

class Engine:
    def __init__(
        self,
        model: Optional[str] = None,
        detector: Optional[str] = None,
        device: str = "auto",
        config_path: Optional[str] = None,
        config_json: Optional[str] = None,
        calibration: Optional[str] = None,
        operating_point: Optional[str] = None,
        models_dir: Optional[str] = None,
    ) -> None: ...
    def info(self) -> str: ...
    def verify(self, probe: _Image, reference: _Image) -> str: ...
    def verify_batch(
        self, data: Any, probe: str, reference: str, id: str, images_root: Optional[str] = None
    ) -> Any: ...
    def embed(self, images: List[_Image]) -> Tuple[bytearray, int, str]: ...
    def detect(self, image: _Image) -> str: ...
    def align(self, image: _Image, role: str) -> Tuple[int, bytearray]: ...

def evaluate(
    pairs: str,
    images: Optional[str] = None,
    model: Optional[str] = None,
    detector: Optional[str] = None,
    device: str = "auto",
    config_path: Optional[str] = None,
    config_json: Optional[str] = None,
    models_dir: Optional[str] = None,
    target_fmr: List[float] = ...,
    all_pairs: bool = False,
    cross_roles: bool = False,
    policy: str = "dominant",
) -> str: ...

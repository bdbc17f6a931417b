"""The exceptions facegate raises. Each has a stable ``code`` (the same codes as the HTTP
service and ``facegate batch``), a ``message`` a person can act on, and ``detail`` (a dict,
where there is more to say)."""

from __future__ import annotations

import json
from typing import Any, Optional


class FacegateError(Exception):
    """The base of every facegate exception."""

    code: str
    message: str
    detail: Optional[dict[str, Any]]

    def __init__(self, code: str, message: str, detail: Optional[str | dict[str, Any]] = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.detail = json.loads(detail) if isinstance(detail, str) else detail


class ImageRejected(FacegateError, ValueError):
    """A photo that cannot be used: not an image (``corrupt_image``, ``image_too_large``, ...),
    a NumPy array of the wrong shape or dtype (``bad_array``), or, where one face is needed
    (``align``), no usable face (``no_face``, ``multiple_faces``, ``face_too_small``, ...).
    ``role`` says which photo of a pair it was (``"probe"``, ``"reference"``, or None)."""

    @property
    def role(self) -> Optional[str]:
        return (self.detail or {}).get("role")


class InputError(FacegateError, ValueError):
    """An argument facegate cannot use: a missing or wrongly typed column, an unknown role."""


class ConfigError(FacegateError, ValueError):
    """A configuration, device, detector or calibration that is not valid."""


class ModelError(FacegateError):
    """A model that cannot be found or loaded."""

"""Object storage for uploads and renditions: a local directory or an S3 bucket behind one async API.

Web-free on purpose: the API (uploads, download links) and the render workers (sources, outputs) share it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    ALLOWED_SUFFIXES,
    MIN_PART_SIZE,
    InvalidKey,
    ObjectNotFound,
    ObjectWriter,
    Store,
    StoreError,
    StoreSettings,
    content_disposition,
    new_key,
    sanitize_filename,
    validate_key,
    validate_prefix,
)
from .local import LocalStore

if TYPE_CHECKING:
    from .s3 import S3Store

__all__ = [
    "ALLOWED_SUFFIXES",
    "MIN_PART_SIZE",
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "ObjectWriter",
    "S3Store",
    "Store",
    "StoreError",
    "StoreSettings",
    "content_disposition",
    "new_key",
    "open_store",
    "sanitize_filename",
    "validate_key",
    "validate_prefix",
]


def open_store(settings: StoreSettings) -> Store:
    """The store `settings.backend` names; S3 connects lazily, so this never does I/O."""
    if settings.backend == "s3":
        from .s3 import S3Store

        return S3Store(settings)
    return LocalStore(settings)


def __getattr__(name: str) -> Any:
    """`S3Store` is imported on first use: aioboto3 costs about 1.4 s of imports, which every
    `vexport` command and worker start paid through the settings even with a local store."""
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

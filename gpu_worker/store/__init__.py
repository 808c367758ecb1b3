"""Object storage for uploads and renditions: a local directory or an S3 bucket behind one async API.

Web-free on purpose: the API (uploads, download links) and the render workers (sources, outputs) share it.
"""

from __future__ import annotations

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
        return S3Store(settings)
    return LocalStore(settings)

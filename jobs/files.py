"""Stored files as local paths: the core reads data sets with numpy, which needs a file on this host.

On the filesystem storage (the embedded default) a stored file is its own path. On object storage (S3) a
host keeps a copy under MASKSEL_FILE_CACHE, fetched on first use: written to a temporary name and renamed,
so a reader never sees half a file, and reused after, since a stored name is never written twice
(`AWS_S3_FILE_OVERWRITE` is off). The cache may be lost at any time: the next use fetches again.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.db.models.fields.files import FieldFile

CHUNK_BYTES = 1024**2


def local_path(file: FieldFile) -> Path:
    """A path on this host holding the stored file's bytes."""
    try:
        return Path(file.path)
    except NotImplementedError:  # object storage: no path of its own
        pass
    target = Path(settings.MASKSEL_FILE_CACHE) / file.name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out, file.storage.open(file.name, "rb") as source:
            shutil.copyfileobj(source, out, CHUNK_BYTES)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def forget(name: str) -> None:
    """Drop this host's copy of a stored file (after the file is deleted)."""
    (Path(settings.MASKSEL_FILE_CACHE) / name).unlink(missing_ok=True)

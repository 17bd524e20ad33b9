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
from django.core.files.storage import Storage
from django.db.models.fields.files import FieldFile

from masksel_core import StoreError

CHUNK_BYTES = 1024**2


def local_path(file: FieldFile) -> Path:
    """A path on this host holding the stored file's bytes."""
    try:
        return Path(file.path)
    except NotImplementedError:  # object storage: no path of its own
        pass
    target = Path(settings.MASKSEL_FILE_CACHE) / file.name
    if not target.is_file():
        download(file.storage, file.name, target)
    return target


def download(storage: Storage, name: str, target: Path) -> None:
    """Copy a stored file to `target` on this host, through a temporary name renamed into place: a reader never
    sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out, storage.open(name, "rb") as source:
            shutil.copyfileobj(source, out, CHUNK_BYTES)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


class StorageUnreachable(Exception):
    """The configured storage cannot be used: the message says which bucket, where, and why."""


def check_storage() -> None:
    """Raise StorageUnreachable unless the storage answers: on S3, the bucket exists and these credentials may
    list it. The filesystem storage always answers."""
    if settings.MASKSEL_STORAGE != "s3":
        return
    from botocore.exceptions import BotoCoreError, ClientError
    from django.core.files.storage import default_storage

    where = f"bucket {settings.AWS_STORAGE_BUCKET_NAME!r} at {settings.AWS_S3_ENDPOINT_URL or 'AWS S3'}"
    try:
        default_storage.connection.meta.client.head_bucket(Bucket=settings.AWS_STORAGE_BUCKET_NAME)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = {"404": "it does not exist", "403": "these credentials may not use it"}.get(code, str(exc))
        raise StorageUnreachable(f"storage: {where}: {reason}") from None
    except BotoCoreError as exc:
        raise StorageUnreachable(f"storage: {where} cannot be reached: {exc}") from None


def storage_fault(exc: BaseException) -> str | None:
    """Why `exc` is the object storage failing (unreachable, timing out, refusing), not the run: a reason to
    record, or None. Anything raised by boto3 or botocore counts, the cause of another error too (a save that
    failed in an upload thread). A data set's zarr store that cannot be read mid-run (`StoreError`: its bucket or
    disk gone) counts too, whatever the service's own storage is."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    store = next((e for e in chain if isinstance(e, StoreError)), None)
    if store is not None:
        return f"data set store unreachable: {store}"
    boto = next((e for e in chain if type(e).__module__.split(".")[0] in ("botocore", "boto3")), None)
    if settings.MASKSEL_STORAGE != "s3" or boto is None:
        return None
    where = f"bucket {settings.AWS_STORAGE_BUCKET_NAME!r} at {settings.AWS_S3_ENDPOINT_URL or 'AWS S3'}"
    return f"storage unreachable ({where}): {boto}"


def forget(name: str) -> None:
    """Drop this host's copy of a stored file (after the file is deleted)."""
    (Path(settings.MASKSEL_FILE_CACHE) / name).unlink(missing_ok=True)

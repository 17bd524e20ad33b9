"""A run's files in storage, under `runs/<id>/`: what the core wrote, the copy of a starting network, and the
checkpoint a run resumes from.

A worker writes into a local directory (`work_dir`) and publishes from there. On the filesystem storage (the
embedded default) that directory is the stored one, so publishing costs nothing; on object storage it is this
host's cache, and `publish` uploads each file. A run's results are published before its row says succeeded
(`worker_services.run_finish`), and each epoch's checkpoint after the epoch, so that a run whose worker died resumes
on any host from the bucket (`fetch`).
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from .files import download

CHECKPOINT = "checkpoint"


def key(run_id: int, name: str) -> str:
    return f"runs/{run_id}/{name}"


def stored_locally() -> bool:
    """Whether the storage is this host's filesystem (then a run's work directory is its stored directory)."""
    try:
        default_storage.path("runs")
    except NotImplementedError:
        return False
    return True


def work_dir(run_id: int) -> Path:
    """Where this host writes and reads a run's files."""
    if stored_locally():
        return Path(default_storage.path(key(run_id, ""))).resolve()
    return Path(settings.MASKSEL_FILE_CACHE) / "runs" / str(run_id)


def _local_files(directory: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):  # not a file being written
            yield path.relative_to(directory).as_posix(), path


def publish(run_id: int, names: list[str] | None = None) -> None:
    """Upload the work directory's files (or only `names`, relative paths) to storage, replacing what is
    there; a no-op on the filesystem storage."""
    if stored_locally():
        return
    directory = work_dir(run_id)
    for name, path in _local_files(directory):
        if names is None or name in names or any(name.startswith(prefix + "/") for prefix in names):
            if default_storage.exists(key(run_id, name)):
                default_storage.delete(key(run_id, name))
            with path.open("rb") as handle:
                default_storage.save(key(run_id, name), File(handle))


def exists(run_id: int, name: str) -> bool:
    return default_storage.exists(key(run_id, name))


def size(run_id: int, name: str) -> int:
    return default_storage.size(key(run_id, name)) if exists(run_id, name) else 0


def read_bytes(run_id: int, name: str) -> bytes | None:
    if not exists(run_id, name):
        return None
    with default_storage.open(key(run_id, name), "rb") as handle:
        return handle.read()


def open_stored(run_id: int, name: str) -> IO[bytes]:
    """A stored file for streaming (a download): nothing is read into memory first."""
    return default_storage.open(key(run_id, name), "rb")


def presigned_url(run_id: int, name: str, filename: str, content_type: str = "application/octet-stream") -> str | None:
    """A time-limited URL that downloads a stored file from the bucket itself as `filename` of `content_type`;
    None when downloads stream through the web server (the filesystem storage, or MASKSEL_PRESIGNED_DOWNLOADS off)."""
    if stored_locally() or not settings.MASKSEL_PRESIGNED_DOWNLOADS:
        return None
    return default_storage.url(key(run_id, name), expire=settings.MASKSEL_PRESIGNED_SECONDS, parameters={
        "ResponseContentDisposition": f'attachment; filename="{filename}"', "ResponseContentType": content_type})


def copy(source_run: int, name: str, target_run: int, target_name: str) -> int:
    """Copy one stored file to another run (a starting network); returns its size."""
    with default_storage.open(key(source_run, name), "rb") as handle:
        default_storage.save(key(target_run, target_name), File(handle))
    return size(target_run, target_name)


def fetch(run_id: int, name: str) -> Path | None:
    """The stored file in this host's work directory (downloaded when the storage is remote); None if absent."""
    target = work_dir(run_id) / name
    if stored_locally():
        return target if target.is_file() else None
    if not exists(run_id, name):
        return None
    download(default_storage, key(run_id, name), target)
    return target


def delete(run_id: int, name: str) -> None:
    """Remove a stored file or directory (`name` ending in nothing: every file of the run) and this host's copy."""
    local = work_dir(run_id) / name if name else work_dir(run_id)
    if not stored_locally():
        for stored in _stored_names(key(run_id, name).rstrip("/")):
            default_storage.delete(stored)
    if local.is_dir():
        shutil.rmtree(local, ignore_errors=True)
    else:
        local.unlink(missing_ok=True)


def _stored_names(prefix: str) -> Iterator[str]:
    """Every stored file under a prefix (a directory) or the file itself."""
    if default_storage.exists(prefix):
        yield prefix
        return
    directories, files = default_storage.listdir(prefix)
    for name in files:
        yield f"{prefix}/{name}"
    for directory in directories:
        yield from _stored_names(f"{prefix}/{directory}")

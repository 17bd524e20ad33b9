"""Writes of data sets: the built-ins' rows, uploads, stores registered where they lie, previews, deletes.

A store is registered by URI only inside the roots the operator allows (`MASKSEL_DATA_ROOTS`): the rule is
checked on the URI's text (and, for a local path, on where its links lead) before anything there is read.
"""
from __future__ import annotations

import base64
import json
import os
import posixpath
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

import masksel_core
from masksel_core import DataError, StoreDataset, builtin_summary, is_store_uri, load_store

from . import files
from .errors import ServiceError, public_text
from .models import Dataset, Run, Study
from .selectors import dataset_preview_cached, datasets_visible_to, preview_name, storage_used


def check_storage(owner: Any, *, extra: int, what: str = "this upload") -> None:
    limit = settings.MASKSEL_MAX_STORAGE_BYTES
    used = storage_used(owner)
    if used >= limit or used + extra > limit:
        raise ServiceError(f"storage limit reached: {used} of {limit} bytes used"
                           + (f", and {what} adds {extra}" if extra else "")
                           + "; delete datasets or runs to make room")


def dataset_seed_builtins() -> list[Dataset]:
    """Create the rows of the built-in data sets once (idempotent)."""
    rows = []
    for name in masksel_core.BUILTINS:
        row = Dataset.objects.filter(builtin=name).first()
        if row is None:
            info = builtin_summary(name)
            row = Dataset.objects.create(
                name=name, builtin=name, input_shape=info["input_shape"], num_classes=info["num_classes"],
                num_train=info["num_train"], num_test=info["num_test"], channel_names=info["channel_names"],
            )
        rows.append(row)
    return rows


PREVIEW_CHANNELS = 8  # at most this many channels per sample on the data set's page


def grey_channels(x: np.ndarray, low: float, high: float) -> list[str]:
    """Each channel of `x` (C, H, W) as 8-bit grey from `low` (0) to `high` (255), base64: how pages draw inputs."""
    scaled = ((x - low) / (high - low) * 255 if high > low else x * 0).astype(np.uint8)
    return [base64.b64encode(channel.tobytes()).decode("ascii") for channel in scaled]


def dataset_preview(dataset: Dataset) -> dict[str, Any]:
    """The first training sample of every class, each channel as 8-bit grey (base64), for the page.

    Computed once per data set and kept in storage beside its file: loading a data set can take a second.
    """
    cached = dataset_preview_cached(dataset)
    if cached is not None:
        return cached
    try:
        # A store is never read whole for its preview: only the chunks of the samples shown.
        data = load_store(dataset.uri) if dataset.uri else masksel_core.load_dataset(dataset.source)
        shown = _first_of_each_class(data)
    except (DataError, OSError) as exc:
        raise ServiceError(f"data set {dataset.name!r} cannot be read: {public_text(str(exc))}") from None
    samples = [{"label": label, "channels": grey_channels(x, float(x.min()), float(x.max()))} for label, x in shown]
    preview = {"height": data.input_shape[1], "width": data.input_shape[2],
               "channel_names": data.channel_names[:PREVIEW_CHANNELS], "channels_total": data.input_shape[0],
               "samples": samples}
    name = preview_name(dataset)
    if not default_storage.exists(name):  # two first views at once: the second finds the first's preview
        default_storage.save(name, ContentFile(json.dumps(preview).encode()))
    return preview


def _first_of_each_class(data: masksel_core.TensorDataset | StoreDataset) -> list[tuple[int, np.ndarray]]:
    """(label, its first training sample's first PREVIEW_CHANNELS channels (C, H, W)); a store reads only those
    samples' chunks."""
    labels = data.y_train.numpy() if isinstance(data, masksel_core.TensorDataset) else data.y_train
    firsts = [(label, int(np.flatnonzero(labels == label)[0])) for label in range(data.num_classes)
              if (labels == label).any()]
    channels = np.arange(min(PREVIEW_CHANNELS, data.input_shape[0]))
    if isinstance(data, masksel_core.TensorDataset):
        return [(label, data.x_train[row][:PREVIEW_CHANNELS].numpy()) for label, row in firsts]
    read = data.read_rows("x_train", data.train_rows[[row for _, row in firsts]], channels=channels)
    return [(label, read[i, :PREVIEW_CHANNELS]) for i, (label, _) in enumerate(firsts)]


def _free_name(owner: Any, name: str | None, default: str) -> str:
    """The name, trimmed (blank: `default`'s), if no data set the user sees has it (in any case)."""
    name = (name or "").strip() or default.strip()
    if not name:
        raise ServiceError("name is required: the data set's name is blank")
    if len(name) > 200:
        raise ServiceError("name is longer than 200 characters")
    taken = datasets_visible_to(owner).filter(name__iexact=name).first()
    if taken is not None:
        kind = "a built-in data set" if taken.builtin else "one of your data sets"
        raise ServiceError(f"{kind} is already named {taken.name!r}: choose another name")
    return name


def check_data_root(uri: str) -> str:
    """The URI in its normal form if it lies inside one of MASKSEL_DATA_ROOTS, else a ServiceError naming the rule.
    Decided on the text first (no `..`, no other bucket), then, for a local path, on where its links lead: no
    path outside the roots is ever opened."""
    roots = [root for root in settings.MASKSEL_DATA_ROOTS if root]
    rule = (f"a store's uri must lie inside one of the allowed data roots ({', '.join(roots) or 'none configured'};"
            " the operator sets MASKSEL_DATA_ROOTS)")
    uri = (uri or "").strip()
    if any(mark in uri for mark in ("::", "?", "#")):
        raise ServiceError(f"uri must be a plain path or s3:// URI (no '::' chains, queries or fragments); {rule}")
    if not is_store_uri(uri):
        raise ServiceError(f"uri must name a zarr store: a path ending in .zarr or an s3://bucket/prefix URI, "
                           f"got {uri!r}")
    if uri.startswith("s3://"):
        bucket_path = posixpath.normpath(uri[len("s3://"):])
        if ".." in bucket_path.split("/") or bucket_path.startswith("/"):
            raise ServiceError(rule)
        normal = f"s3://{bucket_path}"
        if not any((normal + "/").startswith(root.rstrip("/") + "/") for root in roots if root.startswith("s3://")):
            raise ServiceError(rule)
        return normal
    if not os.path.isabs(uri):
        raise ServiceError(f"a local store's uri must be an absolute path; {rule}")
    normal = os.path.normpath(uri)
    local_roots = [Path(os.path.normpath(root)) for root in roots if not root.startswith("s3://")]
    if not any(Path(normal).is_relative_to(root) for root in local_roots):
        raise ServiceError(rule)
    try:
        resolved = Path(normal).resolve()
    except (RuntimeError, OSError):  # a loop of links
        raise ServiceError(rule) from None
    if not any(resolved.is_relative_to(root.resolve()) for root in local_roots):
        raise ServiceError(rule)  # a link inside a root that leads outside it
    return normal


def dataset_register(*, owner: Any, uri: str, name: str = "") -> Dataset:
    """Register a zarr store where it lies, checked from its metadata, labels and a bounded sample (never read
    whole, never copied); refused, with the reason, outside the allowed roots or when it breaks the contract."""
    uri = check_data_root(uri)
    name = _free_name(owner, name, uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zarr"))
    try:
        store = load_store(uri, name=name)
    except DataError as exc:
        raise ServiceError(public_text(str(exc))) from None
    info = store.summary()
    return Dataset.objects.create(
        name=name, owner=owner, uri=uri, input_shape=info["input_shape"], num_classes=info["num_classes"],
        num_train=info["num_train"], num_test=info["num_test"], channel_names=info["channel_names"],
        test_held_out=store.test_key == "x_train",
    )


def dataset_create(*, owner: Any, name: str, upload: UploadedFile) -> Dataset:
    """Validate an uploaded `.npz` and store it; nothing is kept when it is refused."""
    name = _free_name(owner, name, Path(upload.name or "dataset").stem)
    limit = settings.MASKSEL_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise ServiceError(f"file is {upload.size} bytes, over the upload limit of {limit} bytes")
    check_storage(owner, extra=upload.size or 0)
    tmp_dir = Path(settings.MEDIA_ROOT) / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
        try:
            info = masksel_core.load_npz(tmp_name, max_bytes=limit * 8, name=name).summary()
            with np.load(tmp_name) as arrays:  # lazy: lists the arrays, reads none
                held_out = "x_test" not in arrays.files
        except DataError as exc:
            raise ServiceError(str(exc).replace(Path(tmp_name).name + ": ", "")) from None
        with transaction.atomic(), open(tmp_name, "rb") as handle:
            return Dataset.objects.create(
                name=name, owner=owner, file=File(handle, name=f"{Path(tmp_name).stem}.npz"),
                input_shape=info["input_shape"], num_classes=info["num_classes"], num_train=info["num_train"],
                num_test=info["num_test"], channel_names=info["channel_names"], size_bytes=upload.size or 0,
                test_held_out=held_out,
            )
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def dataset_delete(dataset: Dataset, owner: Any) -> None:
    """Delete an uploaded data set and its file; refused for built-ins, others' data sets and while runs use it
    (their results would lose their data: delete those runs first)."""
    if dataset.builtin:
        raise ServiceError(f"{dataset.name!r} is built in and cannot be deleted")
    if dataset.owner_id != getattr(owner, "pk", None):
        raise ServiceError(f"{dataset.name!r} is not yours to delete")
    using = list(Run.objects.filter(dataset=dataset).order_by("id").values_list("pk", flat=True)[:6])
    if using:
        shown = ", ".join(f"#{pk}" for pk in using[:5]) + (", ..." if len(using) > 5 else "")
        raise ServiceError(f"runs use {dataset.name!r} ({shown}): delete them first, then the data set")
    studies = list(Study.objects.filter(dataset=dataset).order_by("id").values_list("pk", flat=True)[:5])
    if studies:
        raise ServiceError(f"studies use {dataset.name!r} ({', '.join(f'#{pk}' for pk in studies)}): delete them "
                           "first, then the data set")
    file, name, preview = dataset.file, dataset.file.name, preview_name(dataset)

    def remove_files() -> None:
        if name:  # an upload's file and this host's copy (a registered store is never ours to delete)
            file.delete(save=False)
            files.forget(name)
        default_storage.delete(preview)

    with transaction.atomic():
        dataset.delete()
        transaction.on_commit(remove_files)



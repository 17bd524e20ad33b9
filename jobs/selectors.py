"""Reads: what a user may see, and the snapshots pages and websockets start from."""
from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from .models import PRIORITY_RANGE, QUEUE_ORDER, Dataset, EpochMetric, Run

User = AbstractBaseUser | AnonymousUser


def datasets_visible_to(user: User) -> QuerySet[Dataset]:
    """Built-ins and the user's own uploads."""
    return Dataset.objects.filter(Q(owner__isnull=True) | Q(owner_id=user.pk))


def runs_visible_to(user: User) -> QuerySet[Run]:
    return Run.objects.filter(owner_id=user.pk).select_related("dataset")


def run_get(user: User, run_id: int | str) -> Run:
    """The run if this user may see it; 404 otherwise, so other users' ids stay unknown."""
    try:
        return runs_visible_to(user).get(pk=int(run_id))
    except (Run.DoesNotExist, ValueError, TypeError):
        raise Http404("no such run") from None


def dataset_get(user: User, dataset_id: int | str) -> Dataset:
    try:
        return datasets_visible_to(user).get(pk=int(dataset_id))
    except (Dataset.DoesNotExist, ValueError, TypeError):
        raise Http404("no such dataset") from None


def mask_payload(mask_type: str, input_shape: list[int], shape: list[int], selected_bits: bytes,
                 fraction: float) -> dict[str, Any]:
    """The compact mask of websocket messages: packed bits (numpy's big-endian order), base64."""
    return {
        "mask_type": mask_type,
        "input_shape": list(input_shape),
        "shape": list(shape),
        "bits": base64.b64encode(selected_bits).decode("ascii"),
        "fraction": fraction,
    }


def epoch_message(run: Run, row: EpochMetric) -> dict[str, Any]:
    return {
        "epoch": row.epoch,
        "phase": row.phase,
        "metrics": row.metrics(),
        "mask": mask_payload(run.mask_type, run.dataset.input_shape, row.mask_shape, bytes(row.mask_bits),
                             row.fraction),
    }


def run_worker_lost(run: Run) -> bool:
    """Running, but its worker has not renewed the lease for longer than the stale limit."""
    if run.status != "running" or run.heartbeat_at is None:
        return False
    return run.heartbeat_at < timezone.now() - timedelta(seconds=settings.MASKSEL_STALE_SECONDS)


def run_summary(run: Run, *, with_latest: bool = True) -> dict[str, Any]:
    """The run as the REST API and the websocket snapshot show it (lists leave out `latest`: one query less per run)."""
    latest = run.epochs.order_by("-epoch").first() if with_latest else None
    return {
        "id": run.pk,
        "status": run.status,
        "epoch": run.epoch,
        "total_epochs": run.total_epochs,
        "dataset": run.dataset_id,
        "dataset_name": run.dataset.name,
        "mask_type": run.mask_type,
        "model": run.model_name,
        "config": run.config,
        "error": run.error,
        "worker": run.worker,
        "device": run.device,
        "fraction": run.fraction,
        "val_accuracy": run.val_accuracy,
        "best_accuracy": run.best_accuracy,
        "phase": run.phase,
        "test_accuracy": run.test_accuracy,
        "warnings": run.warnings,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "tags": run.tags,
        "notes": run.notes,
        "attempts": run.attempts,
        "worker_lost": run_worker_lost(run),
        "retries": run.retries,
        "priority": run.priority,
        "latest": latest.metrics() if latest else None,
    }


def run_metrics(run: Run) -> list[dict[str, Any]]:
    return [row.metrics() for row in run.epochs.order_by("epoch")]


def run_snapshot(run: Run) -> dict[str, Any]:
    """Everything a late or reconnecting client needs before the live stream."""
    rows = list(run.epochs.order_by("epoch"))
    return {"type": "snapshot", "run": run_summary(run), "epochs": [epoch_message(run, row) for row in rows]}


def epoch_selected(run: Run, epoch: int | None) -> tuple[np.ndarray, float, int]:
    """The discrete mask of one epoch (the last one when `epoch` is None)."""
    rows = run.epochs.order_by("-epoch")
    row = rows.filter(epoch=epoch).first() if epoch is not None else rows.first()
    if row is None:
        raise Http404("no such epoch" if epoch is not None else "this run has no epoch yet")
    return row.selected(), row.fraction, row.epoch


def runs_by_ids(user: User, ids: list[int], *, with_epochs: bool = False) -> list[Run]:
    """These runs, in the order given (each once), or 404 naming the ids this user cannot see."""
    wanted = list(dict.fromkeys(ids))
    runs = runs_visible_to(user).filter(pk__in=wanted)
    found = {run.pk: run for run in (runs.prefetch_related("epochs") if with_epochs else runs)}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise Http404(f"no such run: {', '.join(map(str, missing))}")
    return [found[i] for i in wanted]


def runs_for_compare(user: User, ids_text: str) -> list[Run]:
    """The runs named in `?runs=1,2,3` that this user may see, in the order given."""
    try:
        ids = [int(part) for part in ids_text.split(",") if part.strip()]
    except ValueError:
        raise Http404("runs must be a comma-separated list of run ids") from None
    return runs_by_ids(user, ids, with_epochs=True)


def config_differences(runs: list[Run]) -> list[tuple[str, list[Any]]]:
    """The options whose values differ between the runs (dataset included), one row per option."""
    rows: list[tuple[str, list[Any]]] = [("dataset", [run.dataset.name for run in runs])]
    keys = sorted({key for run in runs for key in run.config})
    for key in keys:
        values = [run.config.get(key) for run in runs]
        rows.append((key, values))
    return [(key, values) for key, values in rows if len({repr(v) for v in values}) > 1]


def compare_payload(runs: list[Run]) -> list[dict[str, Any]]:
    """Per run: its label and every epoch's metrics as columns (what the compare charts draw)."""
    out = []
    for run in runs:
        rows = sorted(run.epochs.all(), key=lambda row: row.epoch)
        out.append({
            "id": run.pk, "label": f"#{run.pk} {run.mask_type} {run.model_name} seed {run.config.get('seed', 0)}",
            "status": run.status, "epoch": [r.epoch for r in rows], "val_accuracy": [r.val_accuracy for r in rows],
            "fraction": [r.fraction for r in rows], "task_loss": [r.task_loss for r in rows],
        })
    return out


PREVIEW_CHANNELS = 8


def dataset_preview(dataset: Dataset) -> dict[str, Any]:
    """The first training sample of every class, each channel as 8-bit grey (base64), for the page.

    Computed once per data set and kept next to the media files: loading a data set can take a second.
    """
    import json

    cache = Path(settings.MEDIA_ROOT) / "previews" / f"{dataset.pk}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    import masksel_core

    data = masksel_core.load_dataset(dataset.source)
    samples = []
    for label in range(data.num_classes):
        index = int((data.y_train == label).nonzero()[0][0]) if (data.y_train == label).any() else None
        if index is None:
            continue
        x = data.x_train[index][:PREVIEW_CHANNELS].numpy()  # (C, H, W)
        low, high = float(x.min()), float(x.max())
        scaled = ((x - low) / (high - low) * 255 if high > low else x * 0).astype(np.uint8)
        samples.append({"label": label, "channels": [base64.b64encode(c.tobytes()).decode("ascii") for c in scaled]})
    preview = {"height": data.input_shape[1], "width": data.input_shape[2],
               "channel_names": data.channel_names[:PREVIEW_CHANNELS], "channels_total": data.input_shape[0],
               "samples": samples}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(preview))
    return preview


RUNS_PER_PAGE = 50


def runs_page(user: User, params: Any) -> tuple[Any, dict[str, str]]:
    """One page of the run table, filtered by status, data set, mask type, tag and a search text.

    A fixed number of queries whatever the page size: the count, the page (with its data set
    joined) and nothing per row; every column is a field of the run row.
    """
    from django.core.paginator import Paginator

    filters = {key: str(params.get(key, "")).strip() for key in ("status", "dataset", "mask", "tag", "q")}
    runs = runs_visible_to(user)
    if filters["status"]:
        runs = runs.filter(status=filters["status"])
    if filters["dataset"].isdigit():
        runs = runs.filter(dataset_id=int(filters["dataset"]))
    if filters["mask"]:
        runs = runs.filter(config__mask_type=filters["mask"])
    if filters["tag"]:
        runs = runs.filter(tag_index__contains=f"|{filters['tag']}|")
    if filters["q"]:
        text = filters["q"].lstrip("#")
        match = Q(notes__icontains=text) | Q(tag_index__icontains=text) | Q(config__model=text)
        if text.isdigit():
            match |= Q(pk=int(text))
        runs = runs.filter(match)
    page = Paginator(runs.order_by("-id"), RUNS_PER_PAGE).get_page(params.get("page"))
    return page, filters



def workers_and_queue(user: User) -> dict[str, Any]:
    """Workers seen lately (up, or lost when silent past the stale limit) and the user's queued runs in order."""
    from .models import WorkerNode

    cutoff = timezone.now() - timedelta(seconds=max(settings.MASKSEL_STALE_SECONDS, 30))
    workers = list(WorkerNode.objects.filter(last_seen__gte=timezone.now() - timedelta(hours=24))
                   .select_related("current_run"))
    for worker in workers:
        worker.state = "stopped" if worker.stopped else ("up" if worker.last_seen >= cutoff else "lost")
        # Runs are private: another user's run shows as busy, without its id.
        run = worker.current_run
        worker.visible_run = run if run is not None and run.owner_id == user.pk else None
    # The whole queue's order decides when a run starts; the user sees their own runs' places in it.
    queued = list(runs_visible_to(user).filter(status="queued").select_related("dataset").order_by(*QUEUE_ORDER))
    if queued:
        order = Run.objects.filter(status="queued").order_by(*QUEUE_ORDER).values_list("pk", flat=True)
        place = {pk: i for i, pk in enumerate(order, start=1)}
        for run in queued:
            run.place = place.get(run.pk)
    return {"workers": workers, "queued": queued, "priority_range": PRIORITY_RANGE}


def run_transfer(run: Run) -> dict[str, Any] | None:
    """The final mask's transfer figures (`transfer.json`) and the trade-off curve in bytes, or None.

    The curve: each epoch's accuracy against its mask's bytes per sample, estimated as Q x the raw
    size (exact for plain masks; for JPEG chains only when Q is priced in measured bytes).
    """
    import json

    path = Path(run.artifact_dir) / "transfer.json"
    if not run.is_final or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
        raw = float(summary["raw_bytes_per_sample"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    in_bytes = summary.get("kind") != "jpeg" or run.config.get("extend_costs") == "bytes"
    points = [{"epoch": e, "bytes": round(f * raw, 1), "accuracy": a}
              for e, f, a in run.epochs.order_by("epoch").values_list("epoch", "fraction", "val_accuracy")]
    return {**summary, "curve": points if in_bytes else [], "curve_in_bytes": in_bytes}


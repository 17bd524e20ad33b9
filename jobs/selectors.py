"""Reads: what a user may see, and the snapshots pages and websockets start from."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import messages, queues, run_files
from .errors import NotFound
from .models import PRIORITY_RANGE, QUEUE_ORDER, Dataset, MaskConfig, Run, RunStatus, WorkerNode, id_from_text

User = AbstractBaseUser | AnonymousUser


def datasets_visible_to(user: User) -> QuerySet[Dataset]:
    """Built-ins and the user's own uploads."""
    return Dataset.objects.filter(Q(owner__isnull=True) | Q(owner_id=user.pk))


def runs_visible_to(user: User) -> QuerySet[Run]:
    return Run.objects.filter(owner_id=user.pk).select_related("dataset")


RUN_LIST_LIMIT = 500


def runs_using(user: User, dataset: Dataset) -> int:
    """How many of the user's runs use a data set (its page links them; delete waits until none does)."""
    return Run.objects.filter(owner_id=user.pk, dataset=dataset).count()


def run_list(user: User, *, ids: list[int] | None = None) -> QuerySet[Run]:
    """The user's runs newest first (`RUN_LIST_LIMIT` at most), only those of `ids` when given."""
    runs = runs_visible_to(user).order_by("-id")
    if ids is not None:
        runs = runs.filter(pk__in=ids)
    return runs[:RUN_LIST_LIMIT]


def mask_configs_of(user: User) -> QuerySet[MaskConfig]:
    return MaskConfig.objects.filter(owner=user)


def run_get(user: User, run_id: int | str) -> Run:
    """The run if this user may see it; 404 otherwise, so other users' ids stay unknown."""
    try:
        return runs_visible_to(user).get(pk=int(run_id))
    except (Run.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such run") from None


def dataset_get(user: User, dataset_id: int | str) -> Dataset:
    try:
        return datasets_visible_to(user).get(pk=int(dataset_id))
    except (Dataset.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such dataset") from None


def run_metrics(run: Run) -> list[dict[str, Any]]:
    return [row.metrics() for row in run.epochs.order_by("epoch")]


def epoch_selected(run: Run, epoch: int | None) -> tuple[np.ndarray, float, int]:
    """The discrete mask of one epoch (the last one when `epoch` is None)."""
    rows = run.epochs.order_by("-epoch")
    row = rows.filter(epoch=epoch).first() if epoch is not None else rows.first()
    if row is None:
        raise NotFound("no such epoch" if epoch is not None else "this run has no epoch yet")
    return row.selected(), row.fraction, row.epoch


def runs_by_ids(user: User, ids: list[int], *, with_epochs: bool = False) -> list[Run]:
    """These runs, in the order given (each once), or 404 naming the ids this user cannot see."""
    wanted = list(dict.fromkeys(ids))
    runs = runs_visible_to(user).filter(pk__in=wanted)
    found = {run.pk: run for run in (runs.prefetch_related("epochs") if with_epochs else runs)}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(f"no such run: {', '.join(map(str, missing))}")
    return [found[i] for i in wanted]


def runs_for_compare(user: User, ids: list[int]) -> list[Run]:
    """The runs named in `?runs=1,2,3` that this user may see, in the order given."""
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
    """Per run: its label, every epoch's metrics as columns (what the compare charts draw) and its last mask
    (a dynamic run's: how often each cell is sent), drawn side by side."""
    out = []
    for run in runs:
        rows = sorted(run.epochs.all(), key=lambda row: row.epoch)
        out.append({
            "id": run.pk, "label": f"#{run.pk} {run.mask_type} {run.model_name} seed {run.config.get('seed', 0)}",
            "status": run.status, "epoch": [r.epoch for r in rows], "val_accuracy": [r.val_accuracy for r in rows],
            "fraction": [r.fraction for r in rows], "task_loss": [r.task_loss for r in rows],
            "mask": messages.epoch_fields(run, rows[-1])["mask"] if rows else None,
        })
    return out




def dataset_preview_cached(dataset: Dataset) -> dict[str, Any] | None:
    """The preview `dataset_services.dataset_preview` made and kept in storage for this data set, if it did."""
    name = preview_name(dataset)
    if not default_storage.exists(name):
        return None
    with default_storage.open(name, "rb") as handle:
        return json.loads(handle.read())


def preview_name(dataset: Dataset) -> str:
    """Its name in storage, by the data set's id and its stored file (or built-in) name: an id used again after
    a delete (SQLite does that) never finds the preview of the data set that had it."""
    if dataset.uri:  # an id used again for another store must not find this one's preview
        source = "store-" + hashlib.sha256(dataset.uri.encode()).hexdigest()[:16]
    else:
        source = dataset.builtin or Path(dataset.file.name).stem
    return f"previews/{dataset.pk}-{source}.json"


RUNS_PER_PAGE = 50


def runs_page(user: User, params: Any) -> tuple[Any, dict[str, str]]:
    """One page of the run table, filtered by status, data set, mask type, tag and a search text.

    A fixed number of queries whatever the page size: the count, the page (with its data set
    joined) and nothing per row; every column is a field of the run row.
    """
    filters = {key: str(params.get(key, "")).strip() for key in ("status", "dataset", "mask", "tag", "q")}
    runs = runs_visible_to(user)
    if filters["status"]:
        runs = runs.filter(status=filters["status"])
    if (dataset := id_from_text(filters["dataset"])) is not None:
        runs = runs.filter(dataset_id=dataset)
    if filters["mask"]:
        runs = runs.filter(config__mask_type=filters["mask"])
    if filters["tag"]:
        runs = runs.filter(tag_index__contains=f"|{filters['tag']}|")
    if filters["q"]:
        text = filters["q"].lstrip("#")
        match = Q(notes__icontains=text) | Q(tag_index__icontains=text) | Q(config__model=text)
        if (run_id := id_from_text(text)) is not None:
            match |= Q(pk=run_id)
        runs = runs.filter(match)
    page = Paginator(runs.order_by("-id"), RUNS_PER_PAGE).get_page(params.get("page"))
    return page, filters



STOPPED_SHOWN_MINUTES = 10


def _seen_since(now: Any) -> Any:
    """A worker last seen before this is lost: silent past the stale limit (30 s at least)."""
    return now - timedelta(seconds=max(settings.MASKSEL_STALE_SECONDS, 30))


def gpu_worker_up() -> bool:
    """Whether a worker with a GPU has reported within the stale limit (a `cuda` run waits for one)."""
    return _live_workers(queues.GPU, timezone.now()).exists()


def worker_host(name: str) -> str:
    """The host of a worker named `<node>@<host>:<pid>` (Celery's node name and the process id)."""
    return name.split("@", 1)[-1].rsplit(":", 1)[0]


def workers_and_queue(user: User) -> dict[str, Any]:
    """Workers seen lately (up, stopped, or lost when silent past the stale limit) and the user's queued runs with
    their places in the whole queue (whose order decides when a run starts). Another user's run shows as busy,
    without its id: runs are private."""
    now = timezone.now()
    cutoff = _seen_since(now)
    workers = [
        {"name": w.name, "host": worker_host(w.name), "device": w.device, "gpu_memory_mb": w.gpu_memory_mb,
         "queue": w.queue,
         "last_seen": w.last_seen, "busy": w.current_run_id is not None,
         "state": "stopped" if w.stopped else ("up" if w.last_seen >= cutoff else "lost"),
         "run": w.current_run_id if w.current_run is not None and w.current_run.owner_id == user.pk else None}
        for w in WorkerNode.objects.filter(last_seen__gte=now - timedelta(hours=24)).select_related("current_run")
        # A worker stopped on purpose (an earlier `make run`) is shown for a few minutes, then left out.
        if not w.stopped or w.last_seen >= now - timedelta(minutes=STOPPED_SHOWN_MINUTES)
    ]
    workers.sort(key=lambda w: (w["host"], w["name"]))  # the page groups them by host
    queued = list(runs_visible_to(user).filter(status=RunStatus.QUEUED).select_related("dataset")
                  .order_by(*QUEUE_ORDER))
    places: dict[int, int] = {}
    if queued:
        order = Run.objects.filter(status=RunStatus.QUEUED).order_by(*QUEUE_ORDER).values_list("pk", flat=True)
        places = {pk: i for i, pk in enumerate(order, start=1)}
    stalled = stalled_run_ids(queued, now=now)
    return {"workers": workers, "priority_range": PRIORITY_RANGE,
            "queued": [{"run": run, "place": places.get(run.pk), "stalled": run.pk in stalled} for run in queued]}


def waiting_since(run: Run) -> datetime:
    """Since when a queued run may start: its submission, its last requeue, or the end of its wait to retry."""
    times = [run.created_at, run.retry_after] + [parse_datetime(r["at"]) for r in run.retries[-1:] if "at" in r]
    return max(t for t in times if t is not None)


def stalled_run_ids(runs: Iterable[Run], *, now: datetime | None = None) -> set[int]:
    """The queued runs that may have been trained for `STALL_SECONDS` and were not, a worker of their kind idle
    beside them all that time. It should not happen (idle workers wake queued runs, `worker_services.wake_queued_runs`);
    where it does, the workers page and the run's page say so."""
    now = now or timezone.now()
    since = now - timedelta(seconds=STALL_SECONDS)
    waiting = [run for run in runs if run.status == RunStatus.QUEUED and waiting_since(run) <= since]
    if not waiting:  # the common case, a run page of a running or finished run: no query of the workers
        return set()
    any_idle, gpu_idle = (_live_workers(kind, now).filter(current_run=None, idle_since__lte=since).exists()
                          for kind in (queues.ANY, queues.GPU))
    return {run.pk for run in waiting
            if (gpu_idle if queues.kind_of(run.config.get("device")) == queues.GPU else any_idle)}


def run_transfer(run: Run) -> dict[str, Any] | None:
    """The final mask's transfer figures (`transfer.json`) and the trade-off curve in bytes, or None.

    The curve: each epoch's accuracy against its mask's bytes per sample, estimated as Q x the raw
    size (exact for plain masks; for JPEG chains only when Q is priced in measured bytes).
    """
    stored = run_files.read_bytes(run.pk, "transfer.json") if run.is_final else None
    if stored is None:
        return None
    try:
        summary = json.loads(stored)
        raw = float(summary["raw_bytes_per_sample"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    in_bytes = summary.get("kind") != "jpeg" or run.config.get("extend_costs") == "bytes"
    points = [{"epoch": e, "bytes": round(f * raw, 1), "accuracy": a}
              for e, f, a in run.epochs.order_by("epoch").values_list("epoch", "fraction", "val_accuracy")]
    return {**summary, "curve": points if in_bytes else [], "curve_in_bytes": in_bytes}


STALL_SECONDS = 60.0  # a queued run that may start waits this long beside an idle worker: something is wrong


def next_queued_run_id(kind: str = queues.ANY) -> int | None:
    """The queued run of this kind (`queues`: GPU runs or the others) a free worker should take: highest priority
    first, then the oldest; a run given back to wait (`Run.retry_after`) not before its time."""
    return _startable(kind).order_by(*QUEUE_ORDER).values_list("pk", flat=True).first()


def _startable(kind: str) -> QuerySet[Run]:
    runs = Run.objects.filter(status=RunStatus.QUEUED).filter(
        Q(retry_after__isnull=True) | Q(retry_after__lte=timezone.now()))
    return runs.filter(config__device="cuda") if kind == queues.GPU else runs.exclude(config__device="cuda")


def _live_workers(kind: str, now: datetime) -> QuerySet[WorkerNode]:
    """Workers up (reported lately) that read a kind's queue: GPU workers read both."""
    workers = WorkerNode.objects.filter(stopped=False, last_seen__gte=_seen_since(now))
    return workers.filter(device__startswith="cuda") if kind == queues.GPU else workers


def queue_demand(kind: str) -> int:
    """How many messages a kind's queue should hold now: one per queued run that may start, at most one per
    worker up that reads it (at least one, for the worker asking)."""
    return min(_startable(kind).count(), max(_live_workers(kind, timezone.now()).count(), 1))


def storage_used(owner: Any) -> int:
    """Bytes a user's uploads and run artifacts take on disk."""
    datasets = Dataset.objects.filter(owner=owner).aggregate(total=Sum("size_bytes"))["total"] or 0
    runs = Run.objects.filter(owner=owner).aggregate(total=Sum("artifact_bytes"))["total"] or 0
    return int(datasets + runs)


def run_holds_lease(run_id: int, *, worker: str) -> bool:
    return Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, lease_owner=worker).exists()


def run_status(run_id: int) -> str:
    """The run's status; "deleted" once its row is gone (a user may delete a cancelled run its worker still ends)."""
    return str(Run.objects.values_list("status", flat=True).filter(pk=run_id).first() or "deleted")


def run_options(run_id: int) -> dict[str, Any]:
    """A run's stored options (a `TrainConfig` as JSON), as a worker reads them before it takes the run."""
    return dict(Run.objects.values_list("config", flat=True).get(pk=run_id))


def run_is_cancelled(run_id: int) -> bool:
    return Run.objects.filter(pk=run_id, status=RunStatus.CANCELLED).exists()

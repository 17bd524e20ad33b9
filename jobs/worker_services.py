"""Writes for a run's life on a worker: take its lease, beat, record each epoch, finish, fail, give it back to
wait and retry, recover it when its worker died; and the workers' own reports, with the wake-ups an idle worker
sends for queued runs whose message the broker lost.

The Celery task (`training`) and the workers' recovery thread (`recovery`) call these, and nothing else writes
these rows: a conditional UPDATE guards each change, so two workers never both hold a run.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

import masksel_core
from masksel_core import TrainConfig

from . import messages, progress, queues, run_files, study_services
from .dataset_services import PREVIEW_CHANNELS, grey_channels
from .models import EpochMetric, Run, RunStatus, WorkerNode
from .run_submission import PRETRAINED, enqueue
from .selectors import next_queued_run_id, queue_demand


def run_start(run_id: int, *, worker: str, device: str) -> Run | None:
    """Take the lease of a queued run; None when it is not queued (cancelled, or another worker has it).

    The conditional UPDATE is the lock: of two workers handed the same run (a redelivered task),
    exactly one moves it from queued to running.
    """
    now = timezone.now()
    updated = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, worker=worker, device=device, lease_owner=worker, heartbeat_at=now,
        attempts=F("attempts") + 1, started_at=Coalesce(F("started_at"), Value(now)))
    if not updated:
        return None
    progress.broadcast(run_id, messages.status(RunStatus.RUNNING))
    return Run.objects.select_related("dataset").get(pk=run_id)


def run_heartbeat(run_id: int, *, worker: str) -> bool:
    """Renew the lease; False when this worker no longer holds it (cancelled, or given to another)."""
    return bool(Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, lease_owner=worker).update(
        heartbeat_at=timezone.now()))


def recover_stale_runs(*, stale_seconds: float, max_attempts: int) -> list[int]:
    """Requeue runs whose worker stopped beating (killed, machine lost); fail them after `max_attempts`.

    Each retry keeps its reason, so a lost worker (infrastructure) is told apart from an error in
    the run itself (which fails the run at once and is never retried).
    """
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    requeued = []
    for run in Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff):
        reason = f"worker {run.lease_owner or '?'} lost (no heartbeat since {run.heartbeat_at.isoformat()})"
        # Guarded by the heartbeat we read: a worker that beat meanwhile keeps its run.
        if _retry_or_fail(run, reason, max_attempts=max_attempts, guard={"heartbeat_at": run.heartbeat_at}):
            requeued.append(run.pk)
    return requeued


def run_retry_later(run_id: int, *, worker: str, reason: str, max_attempts: int, after_seconds: float) -> str:
    """Give a running run back to the queue for a fault outside it (its storage unreachable), to be tried again
    after `after_seconds` from its last stored checkpoint, which is kept; failed after `max_attempts`. Returns
    the run's status now."""
    run = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, lease_owner=worker).first()
    if run is not None:
        _retry_or_fail(run, reason, max_attempts=max_attempts, guard={"lease_owner": worker},
                       after_seconds=after_seconds)
    return Run.objects.values_list("status", flat=True).get(pk=run_id)


def _retry_or_fail(run: Run, reason: str, *, max_attempts: int, guard: dict[str, Any],
                   after_seconds: float = 0) -> bool:
    """Record why `run` stopped and queue it again, or fail it when it has had `max_attempts`; False when the
    row no longer matches `guard` (someone else changed it first)."""
    now = timezone.now()
    retries = [*run.retries, {"attempt": run.attempts, "reason": reason, "at": now.isoformat()}]
    fields: dict[str, Any] = {"lease_owner": "", "retries": retries,
                              "retry_after": now + timedelta(seconds=after_seconds) if after_seconds else None}
    if run.attempts >= max_attempts:
        fields |= {"status": RunStatus.FAILED, "finished_at": now,
                   "error": f"{reason}; gave up after {run.attempts} attempts"}
    else:
        fields |= {"status": RunStatus.QUEUED}
    with transaction.atomic():
        if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, **guard).update(**fields):
            return False
        if fields["status"] == RunStatus.FAILED:
            study_services.trial_ended(run.pk, None, reason=f"its run failed: {fields['error']}")
        if fields["status"] == RunStatus.QUEUED:
            transaction.on_commit(lambda run_id=run.pk: enqueue(run_id, after_seconds=after_seconds))
    progress.broadcast(run.pk, messages.status(fields["status"], error=reason))
    return True


class RunDeleted(Exception):
    """The run's row is gone while its worker still trains it (cancelled, then deleted): training stops."""


def run_record_epoch(run: Run, record: masksel_core.EpochRecord) -> EpochMetric:
    """Store one epoch (metrics and packed mask) in one transaction, then broadcast it."""
    selected = np.asarray(record.selected, dtype=np.uint8)
    fields = {
        "task_loss": record.task_loss, "mask_loss": record.mask_loss, "val_accuracy": record.val_accuracy,
        "lambda_value": record.lambda_, "tau": record.tau, "fraction": record.fraction, "phase": record.phase,
        "mask_shape": list(selected.shape), "mask_bits": np.packbits(selected.ravel()).tobytes(),
    }
    if record.frequency is not None and record.gallery is not None:
        fields["frequency_bytes"] = np.round(np.asarray(record.frequency) * 255).astype(np.uint8).tobytes()
        fields["gallery_bits"] = np.packbits(np.asarray(record.gallery, dtype=np.uint8).ravel()).tobytes()
    with transaction.atomic():
        now: dict[str, Any] = {"epoch": record.epoch, "fraction": record.fraction, "val_accuracy": record.val_accuracy,
                               "phase": record.phase}
        if record.phase != "warmup":  # a best accuracy of the full input would sit beside a mask that never had it
            now["best_accuracy"] = Greatest(Coalesce(F("best_accuracy"), Value(-1.0)), Value(record.val_accuracy))
        if not Run.objects.filter(pk=run.pk).update(**now):  # deleted since it was cancelled: nothing to add to
            raise RunDeleted(f"run {run.pk} was deleted")
        row, _ = EpochMetric.objects.update_or_create(run=run, epoch=record.epoch, defaults=fields)
    progress.broadcast(run.pk, messages.epoch(run, row))
    return row


def run_gallery(run: Run, data: masksel_core.TensorDataset, config: TrainConfig) -> None:
    """Keep a dynamic run's gallery inputs (8-bit grey per channel, at most PREVIEW_CHANNELS), the validation
    inputs the core reports the cells of every epoch: its page draws each with the cells it sends."""
    images = masksel_core.gallery_inputs(data, config).numpy()  # (G, C, H, W)
    shown = images[:, :PREVIEW_CHANNELS]
    low, high = float(shown.min(initial=0.0)), float(shown.max(initial=1.0))  # one scale for the gallery
    gallery = {"height": int(images.shape[2]), "width": int(images.shape[3]),
               "images": [grey_channels(image, low, high) for image in shown]}
    Run.objects.filter(pk=run.pk).update(gallery=gallery)
    run.gallery = gallery


def run_deleted(run_id: int) -> bool:
    """Whether the run's row is gone: cancelled, then deleted before its worker had stopped. What the worker wrote
    after the delete removed the run's files (its outputs, a checkpoint) goes too, so nothing is left unowned."""
    if Run.objects.filter(pk=run_id).exists():
        return False
    run_files.delete(run_id, "")
    return True


def run_finish(run: Run, result: masksel_core.TrainResult) -> None:
    """Write the artifacts (atomically), publish them to storage, then mark the run succeeded (or cancelled if
    it was stopped): its files are there when its row says so."""
    directory = run.artifact_dir
    paths = masksel_core.write_outputs(result, directory)
    run_files.publish(run.pk, [path.relative_to(directory).as_posix() for path in paths.values()])
    status = RunStatus.CANCELLED if result.stopped_because == "cancelled" else RunStatus.SUCCEEDED
    with transaction.atomic():  # the outcome and the status change together: no reader sees one without the other
        Run.objects.filter(pk=run.pk).update(
            artifact_bytes=sum(p.stat().st_size for p in paths.values()) + _kept_bytes(run),
            fraction=result.fraction,
            test_accuracy=result.test_accuracy, warnings=list(result.warnings),
            seconds_per_phase=result.seconds_per_phase())
        Run.objects.filter(pk=run.pk).exclude(status__in=[RunStatus.FAILED, RunStatus.CANCELLED]).update(
            status=status, finished_at=timezone.now())
        final = Run.objects.values_list("status", flat=True).get(pk=run.pk)
        study_services.trial_ended(run.pk, run_outcome(run, result) if final == RunStatus.SUCCEEDED else None,
                                   reason=f"its run was {final}")
    run_files.delete(run.pk, run_files.CHECKPOINT)  # only needed to resume
    progress.broadcast(run.pk, messages.ended(final, warnings=result.warnings, test_accuracy=result.test_accuracy,
                                              seconds_per_phase=result.seconds_per_phase()))


def run_outcome(run: Run, result: masksel_core.TrainResult) -> dict[str, float | None]:
    """What a study may judge a succeeded run on (`study_spec.OBJECTIVE_METRICS`); seconds from its first start."""
    started = run.started_at or timezone.now()
    return {"test_accuracy": result.test_accuracy,
            "val_accuracy": result.records[-1].val_accuracy if result.records else None,
            "fraction": result.fraction, "bytes_per_sample": result.transfer.get("bytes_per_sample"),
            "seconds": (timezone.now() - started).total_seconds()}


def _kept_bytes(run: Run) -> int:
    """The bytes of a run's files that outlive a requeue: the copy of the network it starts from."""
    return run_files.size(run.pk, PRETRAINED)


def run_fail(run_id: int, error: str) -> None:
    """Mark a run failed with `error`; its checkpoint goes (a failed run is trained again from the start)."""
    with transaction.atomic():  # a study's trial ends with its run
        Run.objects.filter(pk=run_id).update(status=RunStatus.FAILED, error=error[:10_000],
                                             finished_at=timezone.now())
        study_services.trial_ended(run_id, None, reason=f"its run failed: {(error.splitlines() or [''])[0][:500]}")
    run_files.delete(run_id, run_files.CHECKPOINT)
    progress.broadcast(run_id, messages.status(RunStatus.FAILED, error=error))


def worker_report(name: str, *, device: dict[str, object]) -> None:
    """A worker says it is alive, on which device, and which run it holds (from the leases)."""
    now = timezone.now()
    holding = Run.objects.filter(status=RunStatus.RUNNING, lease_owner=name).values_list("pk", flat=True).first()
    idle_since = None
    if holding is None:
        idle_since = WorkerNode.objects.filter(name=name, current_run=None, stopped=False).values_list(
            "idle_since", flat=True).first() or now
    WorkerNode.objects.update_or_create(name=name, defaults={
        "device": device.get("device", ""), "gpu_memory_mb": device.get("gpu_memory_mb"),
        "queue": settings.CELERY_TASK_DEFAULT_QUEUE, "last_seen": now, "current_run_id": holding,
        "idle_since": idle_since, "stopped": False})


def wake_queued_runs(*, kinds: Sequence[str]) -> int:
    """Called by an idle worker every few seconds: for each kind it serves, messages up to what its queue should
    hold (`selectors.queue_demand`: a message per queued run that may start, at most one per worker up that reads
    it). The database is the queue's truth: a broker that lost its messages (Redis restarted without persistence,
    a queue purged) strands no run. An extra message is harmless: each trains whichever queued run is first, or
    finds none. Returns how many messages were sent."""
    sent = 0
    for kind in kinds:
        run_id = next_queued_run_id(kind)
        if run_id is None:
            continue
        for _ in range(max(queue_demand(kind) - queues.waiting_messages(kind), 0)):
            enqueue(run_id)
            sent += 1
    return sent


def worker_stopped(name: str) -> None:
    WorkerNode.objects.filter(name=name).update(stopped=True, current_run=None, last_seen=timezone.now())

"""Training a queued run on this worker: the one service the Celery task calls (`execute_next`).

It reads the run through the selectors, takes its lease and records each epoch, its end, its failure or its
retry through `worker_services` (each write a conditional UPDATE there), trains with `masksel_core.train`, and
polls for a cancel at most a few times per second. No row is read or written here directly.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connection

import masksel_core
from masksel_core import CHECKPOINT_NAME, DataError, StoreError, TrainConfig

from . import queues, run_files, run_submission, selectors, worker_services
from .devices import device_label
from .errors import public_error, public_text
from .files import storage_fault

log = logging.getLogger(__name__)
# A read of the run row at most every 0.1 s, between batches: a cancel stops training within one batch, or
# within 0.1 s where batches are shorter than that, for well under 1% of a step even on tiny networks.
CANCEL_POLL_SECONDS = 0.1


class Lease:
    """Holds a run's lease while it trains: a heartbeat thread renews it, `should_stop` watches it.

    The thread keeps beating while data is prepared and between batches alike. `should_stop` (called
    between batches) also reads the row a few times a second, so a cancel stops training within
    a batch or so. When the lease is gone (cancelled, or handed to another worker after this one
    was thought dead), training stops: a run is never trained by two workers at once.
    """

    def __init__(self, run_id: int, worker: str) -> None:
        self.run_id, self.worker = run_id, worker
        self.lost = threading.Event()
        self._done = threading.Event()
        self._last_check = 0.0
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self._done.wait(settings.MASKSEL_HEARTBEAT_SECONDS):
                if not worker_services.run_heartbeat(self.run_id, worker=self.worker):
                    self.lost.set()
                    return
        finally:
            connection.close()

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.lost.is_set() and now - self._last_check >= CANCEL_POLL_SECONDS:
            self._last_check = now
            if not selectors.run_holds_lease(self.run_id, worker=self.worker):
                self.lost.set()
        return self.lost.is_set()


# How many times a worker looks for the next queued run when others keep taking the one it picked.
CLAIM_TRIES = 5
# Set while this process trains (a worker runs one task at a time, in its solo pool): its recovery thread wakes
# queued runs only while it is idle.
BUSY = threading.Event()


def execute_next(*, worker: str, kind: str = queues.ANY) -> str:
    """Train the queued run that is first in the queue order (priority, then age); "idle" when none is queued.

    Every queued run has one task message, and each message trains whichever run is first at that
    moment, so the messages' own order does not matter and a priority changed after submitting counts.
    """
    BUSY.set()
    try:
        for _ in range(CLAIM_TRIES):
            run_id = selectors.next_queued_run_id(kind)
            if run_id is None:
                return "idle"
            status = _execute(run_id, worker=worker)
            if status is not None:
                return status
        return "idle"
    finally:
        BUSY.clear()


def execute_run(run_id: int, *, worker: str) -> str:
    """Train this run to its end; returns the final status (or its status now, when it is not queued)."""
    status = _execute(run_id, worker=worker)
    return status if status is not None else selectors.run_status(run_id)


def _load(dataset: Any, seed: int) -> Any:
    """The run's data. A registered store was checked when it was registered: one that no longer reads is gone
    from where it lay (a storage fault: the run waits and is tried again), not the run's fault."""
    try:
        return masksel_core.load_dataset(dataset.source, seed=seed)
    except DataError as exc:
        if dataset.uri:
            raise StoreError(f"data set {dataset.name!r} ({dataset.uri}) cannot be read: {exc}") from exc
        raise


def _execute(run_id: int, *, worker: str) -> str | None:
    """Train one run to its end; None when it could not be claimed. Errors in the run mark it failed."""
    try:
        config = TrainConfig.from_dict(selectors.run_options(run_id))
        device = masksel_core.resolve_device(config.device)
    except Exception as exc:  # noqa: BLE001 - a bad stored config fails the run, not the worker
        worker_services.run_fail(run_id, f"cannot start: {public_text(str(exc))}")
        return "failed"
    run = worker_services.run_start(run_id, worker=worker, device=device_label(device))
    if run is None:
        log.info("run %s is no longer queued; skipping", run_id)
        return None
    try:
        if run.pretrained_from is not None:  # its weights were copied beside the run when it was submitted
            config = dataclasses.replace(config, pretrained=str(run_files.fetch(run_id, run_submission.PRETRAINED)))
        run_files.fetch(run_id, f"{run_files.CHECKPOINT}/{CHECKPOINT_NAME}")  # from the bucket, if a host left one
        if (run.artifact_dir / run_files.CHECKPOINT / CHECKPOINT_NAME).exists():
            log.warning("resuming run %s from its checkpoint (attempt %s)", run_id, run.attempts)
        with Lease(run_id, worker) as lease:
            data = _load(run.dataset, config.seed)
            if masksel_core.is_dynamic(config.mask_type) and not run.gallery:
                worker_services.run_gallery(run, data, config)
            # A checkpoint after every epoch: a retried run (lost worker) resumes where it stopped.
            result = masksel_core.train(config, data, should_stop=lease.should_stop,
                                        on_epoch=lambda record: worker_services.run_record_epoch(run, record),
                                        checkpoint_dir=run.artifact_dir / run_files.CHECKPOINT,
                                        on_checkpoint=lambda: run_files.publish(run_id, [run_files.CHECKPOINT]))
            result.transfer  # noqa: B018 - measured here, under the lease: it reads the test inputs (a store's bucket)
        if worker_services.run_deleted(run_id):
            log.info("run %s was deleted while it ended; its files are removed", run_id)
            return "deleted"
        if lease.lost.is_set() and not selectors.run_is_cancelled(run_id):
            log.warning("run %s: lease lost to another worker; stopping without finishing", run_id)
            return "lease_lost"
        worker_services.run_finish(run, result)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, shown on its page
        if worker_services.run_deleted(run_id):  # deleted while it ended (its files went under the worker's feet)
            log.info("run %s was deleted while it ended (%s); its files are removed", run_id, type(exc).__name__)
            return "deleted"
        fault = storage_fault(exc)
        if fault is not None:  # not the run's fault: tried again later from what is stored, which stays
            log.warning("run %s: %s; giving it back to the queue", run_id, fault)
            return worker_services.run_retry_later(run_id, worker=worker, reason=fault,
                                            max_attempts=settings.MASKSEL_MAX_ATTEMPTS,
                                            after_seconds=settings.MASKSEL_STORAGE_RETRY_SECONDS)
        log.exception("run %s failed", run_id)
        worker_services.run_fail(run_id, public_error(exc))
        return "failed"
    return selectors.run_status(run_id)

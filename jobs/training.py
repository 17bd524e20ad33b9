"""The bridge from a queued `Run` row to `masksel_core.train` (what the Celery task calls).

It builds the config from the row, trains with an epoch callback that records through the
services, and polls the row for a cancel at most a few times per second.
"""
from __future__ import annotations

import logging
import time
import traceback

import torch

import masksel_core
from masksel_core import TrainConfig

from . import services
from .models import Run

log = logging.getLogger(__name__)
CANCEL_POLL_SECONDS = 0.5


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


class CancelPoller:
    """`should_stop` for the training loop: asks the database, but not on every batch."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.last_check = 0.0
        self.cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.last_check >= CANCEL_POLL_SECONDS:
            self.last_check = now
            self.cancelled = services.run_is_cancelled(self.run_id)
        return self.cancelled


def execute_run(run_id: int, *, worker: str) -> str:
    """Train one run to its end; returns the final status. Errors in the run mark it failed."""
    try:
        config = TrainConfig.from_dict(Run.objects.get(pk=run_id).config)
        device = masksel_core.resolve_device(config.device)
    except Exception as exc:  # noqa: BLE001 - a bad stored config fails the run, not the worker
        services.run_fail(run_id, f"cannot start: {exc}")
        return "failed"
    run = services.run_start(run_id, worker=worker, device=device_label(device))
    if run is None:
        log.info("run %s is no longer queued; skipping", run_id)
        return Run.objects.get(pk=run_id).status
    try:
        data = masksel_core.load_dataset(run.dataset.source, seed=config.seed)
        # A checkpoint after every epoch: a retried run (lost worker) resumes where it stopped.
        result = masksel_core.train(config, data, on_epoch=lambda record: services.run_record_epoch(run, record),
                                    should_stop=CancelPoller(run_id), checkpoint_dir=run.artifact_dir / "checkpoint")
        services.run_finish(run, result)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, shown on its page
        log.exception("run %s failed", run_id)
        services.run_fail(run_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        return "failed"
    return Run.objects.get(pk=run_id).status

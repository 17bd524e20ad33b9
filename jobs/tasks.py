"""Celery tasks: thin adapters that take an id and call one function."""
from __future__ import annotations

import os

from celery import shared_task
from celery.signals import worker_ready

from .recovery import start_recovery_thread
from .training import execute_run


@shared_task(bind=True, name="jobs.train_run")
def train_run(self, run_id: int) -> str:  # type: ignore[no-untyped-def]
    return execute_run(run_id, worker=f"{self.request.hostname or 'eager'}:{os.getpid()}")


@worker_ready.connect
def recover_on_start(**_: object) -> None:
    """A worker that comes up requeues runs whose worker died, then keeps checking in the background."""
    start_recovery_thread()

"""Celery tasks: thin adapters that take an id and call one function."""
from __future__ import annotations

from celery import shared_task

from .training import execute_run


@shared_task(bind=True, name="jobs.train_run")
def train_run(self, run_id: int) -> str:  # type: ignore[no-untyped-def]
    return execute_run(run_id, worker=self.request.hostname or "eager")

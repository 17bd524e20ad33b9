"""Queues by device: a run that asks for `cuda` waits in the GPU queue, which only GPU workers read; `cpu` and
`auto` runs wait in the main queue, which every worker reads (a GPU worker runs an `auto` run on its GPU).

Each queued run has one message in its own queue, and the worker that takes a message trains the first queued
run of that queue's kind (priority, then age): priorities hold within each kind, and no message can take a
run of the other kind and leave one of its own runs without a message.
"""
from __future__ import annotations

from django.conf import settings

GPU = "gpu"
ANY = "any"


def kind_of(device: str | None) -> str:
    """Which queue a run with this `device` option waits in: GPU for `cuda`, ANY otherwise."""
    return GPU if device == "cuda" else ANY


def queue_name(kind: str) -> str:
    """The Celery queue of a kind: `MASKSEL_QUEUE` (default "train") and that name with "-gpu"."""
    base = settings.CELERY_TASK_DEFAULT_QUEUE
    return f"{base}-gpu" if kind == GPU else base

"""Queues by device: a run that asks for `cuda` waits in the GPU queue, which only GPU workers read; `cpu` and
`auto` runs wait in the main queue, which every worker reads (a GPU worker runs an `auto` run on its GPU).

Each queued run has a message in its own queue, and the worker that takes a message trains the first queued
run of that queue's kind (priority, then age): priorities hold within each kind, and no message can take a
run of the other kind and leave one of its own runs without a message. The messages are only wake-ups: the
database is the queue's truth, and an idle worker sends a new one where a queued run has none
(`worker_services.wake_queued_runs`), so a broker that lost its messages strands nothing.

The queues' names carry this installation's key (`deployment`), kept in its database: two installations that
share a Redis database (and `MASKSEL_QUEUE`) read different queues. Workers are started with `-Q` naming the
kinds' plain names (`webapp.worker`); `jobs.tasks` turns them into this installation's names once Django is up.
"""
from __future__ import annotations

import functools
import uuid

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from kombu.exceptions import ChannelError

GPU = "gpu"
ANY = "any"


def kind_of(device: str | None) -> str:
    """Which queue a run with this `device` option waits in: GPU for `cuda`, ANY otherwise."""
    return GPU if device == "cuda" else ANY


@functools.cache
def deployment() -> str:
    """This installation's key: made once, by whichever of its processes asks first, and kept in its database."""
    from .models import Deployment

    try:
        with transaction.atomic():
            return Deployment.objects.get_or_create(pk=1, defaults={"key": uuid.uuid4().hex[:12]})[0].key
    except IntegrityError:  # another process made it between our read and our insert
        return Deployment.objects.get(pk=1).key


def base_name(kind: str) -> str:
    """The plain name of a kind's queue, as `-Q` gives it: `MASKSEL_QUEUE` (default "train"), with "-gpu"."""
    base = settings.CELERY_TASK_DEFAULT_QUEUE
    return f"{base}-gpu" if kind == GPU else base


def queue_name(kind: str) -> str:
    """The Celery queue of a kind in this installation: its plain name and the installation's key."""
    return f"{base_name(kind)}.{deployment()}"


def kind_of_queue(name: str) -> str:
    """The kind a queue name (plain, or with the key) serves."""
    return GPU if name.split(".", 1)[0].endswith("-gpu") else ANY


def waiting_messages(kind: str) -> int:
    """Messages waiting in a kind's queue (not those a worker holds), as the broker counts them."""
    with current_app.connection_for_read() as connection:
        try:
            return int(connection.default_channel.queue_declare(queue=queue_name(kind), passive=True).message_count)
        except ChannelError:  # no such queue: Redis drops an empty list, so none are waiting
            return 0

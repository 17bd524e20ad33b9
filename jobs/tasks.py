"""Celery tasks: thin adapters that take an id and call one function."""
from __future__ import annotations

import os

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

from . import queues, worker_services
from .recovery import start_recovery_thread, wake_after_run
from .training import execute_next


@shared_task(bind=True, name="jobs.train_run")
def train_run(self, run_id: int, kind: str = queues.ANY) -> str:  # type: ignore[no-untyped-def]
    """`run_id` is the run whose submission sent this message; the worker trains the first queued run of the
    message's kind (`queues`: a GPU run, or any other)."""
    status = execute_next(worker=worker_name(self.request.hostname), kind=kind)
    if not self.request.is_eager:
        wake_after_run()
    return status


def worker_name(hostname: str | None) -> str:
    """The name a worker reports and holds leases under: Celery's node name and the process id."""
    return f"{hostname or 'eager'}:{os.getpid()}"


@celeryd_after_setup.connect
def consume_this_installations_queues(sender: object = None, instance: object = None, **_: object) -> None:
    """`-Q` names the kinds' plain queues (`webapp.worker`); read this installation's (`queues.queue_name`) instead,
    so that a worker never takes another installation's messages from a shared Redis database."""
    selected = instance.app.amqp.queues  # type: ignore[attr-defined]
    plain = list(selected.consume_from)
    for name in plain:
        selected.select_add(queues.queue_name(queues.kind_of_queue(name)))
    selected.deselect([name for name in plain if name not in {queues.queue_name(k) for k in (queues.GPU, queues.ANY)}])


@worker_ready.connect
def recover_on_start(sender: object = None, **_: object) -> None:
    """A worker that comes up reports itself, requeues runs whose worker died, then keeps doing both."""
    start_recovery_thread(worker_name(getattr(sender, "hostname", None)))


@worker_shutdown.connect
def report_stop(sender: object = None, **_: object) -> None:
    worker_services.worker_stopped(worker_name(getattr(sender, "hostname", None)))

"""Finding runs whose worker died, waking queued runs whose message was lost, and reporting this worker: at
start and then every few seconds.

With late acknowledgement a killed worker's task would only come back after Redis'
visibility timeout (hours, since runs are long); the heartbeat in the database finds it sooner,
and the run's checkpoint lets the next worker resume from its last epoch. A queued run whose message the broker
lost (restarted without persistence, purged) is woken by the next idle worker of its kind.
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from . import queues, worker_services
from .devices import this_device
from .training import BUSY

log = logging.getLogger(__name__)
_started = threading.Event()


def recover_once() -> list[int]:
    recovered = worker_services.recover_stale_runs(stale_seconds=settings.MASKSEL_STALE_SECONDS,
                                            max_attempts=settings.MASKSEL_MAX_ATTEMPTS)
    if recovered:
        log.warning("requeued or failed runs whose worker was lost: %s", recovered)
    return recovered


def wake_if_idle(device: dict[str, object]) -> int:
    """An idle worker sends messages for the queued runs of the kinds it serves that have none waiting."""
    if BUSY.is_set():
        return 0
    kinds = [queues.GPU, queues.ANY] if str(device.get("device", "")).startswith("cuda") else [queues.ANY]
    sent = worker_services.wake_queued_runs(kinds=kinds)
    if sent:
        log.warning("queued runs had no message waiting (did the broker lose them?): sent %d", sent)
    return sent


def wake_after_run() -> None:
    """A worker that has just finished a run looks at once rather than at its next round: where the broker lost
    the queued runs' messages, the next one starts now."""
    try:
        wake_if_idle(this_device())
    except Exception:  # noqa: BLE001 - the round every few seconds tries again
        log.exception("waking queued runs after a run failed; the next round tries again")


def _loop(stop: threading.Event, name: str) -> None:
    while not stop.wait(min(settings.MASKSEL_STALE_SECONDS / 2, 5.0)):
        try:
            close_old_connections()
            device = this_device()
            worker_services.worker_report(name, device=device)
            recover_once()
            wake_if_idle(device)
        except Exception:  # noqa: BLE001 - the sweeper must outlive a database or broker hiccup
            log.exception("worker report, stale-run recovery or wake-up failed; trying again later")


def start_recovery_thread(name: str = "") -> threading.Event:
    """Report this worker and recover now, then keep doing both in a daemon thread (once per process)."""
    stop = threading.Event()
    if name:
        worker_services.worker_report(name, device=this_device())
    recover_once()
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_loop, args=(stop, name), name="masksel-recovery", daemon=True).start()
    return stop

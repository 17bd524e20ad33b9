"""Finding runs whose worker died, and reporting this worker: at start and then every few seconds.

With late acknowledgement a killed worker's task would only come back after Redis'
visibility timeout (hours, since runs are long); the heartbeat in the database finds it sooner,
and the run's checkpoint lets the next worker resume from its last epoch.
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from . import services
from .devices import this_device

log = logging.getLogger(__name__)
_started = threading.Event()


def recover_once() -> list[int]:
    recovered = services.recover_stale_runs(stale_seconds=settings.MASKSEL_STALE_SECONDS,
                                            max_attempts=settings.MASKSEL_MAX_ATTEMPTS)
    if recovered:
        log.warning("requeued or failed runs whose worker was lost: %s", recovered)
    return recovered


def _loop(stop: threading.Event, name: str) -> None:
    while not stop.wait(min(settings.MASKSEL_STALE_SECONDS / 2, 5.0)):
        try:
            close_old_connections()
            services.worker_report(name, device=this_device())
            recover_once()
        except Exception:  # noqa: BLE001 - the sweeper must outlive a database hiccup
            log.exception("worker report or stale-run recovery failed; trying again later")


def start_recovery_thread(name: str = "") -> threading.Event:
    """Report this worker and recover now, then keep doing both in a daemon thread (once per process)."""
    stop = threading.Event()
    if name:
        services.worker_report(name, device=this_device())
    recover_once()
    if not _started.is_set():
        _started.set()
        threading.Thread(target=_loop, args=(stop, name), name="masksel-recovery", daemon=True).start()
    return stop

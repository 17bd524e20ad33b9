"""Pushing run progress to the websocket group `run-<installation>-<id>`, and a study's to `study-<...>-<id>`.

The database is the record and is written first; a broadcast that fails (Redis restarting) is
logged and dropped, since clients catch up from the snapshot when they reconnect.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import queues

log = logging.getLogger(__name__)


def group_name(run_id: int) -> str:
    """The group of a run's viewers; named with this installation's key, as its queues are: two installations
    that share a Redis both have a run 1, and each one's pages hear only its own."""
    return f"run-{queues.deployment()}-{run_id}"


def study_group(study_id: int) -> str:
    return f"study-{queues.deployment()}-{study_id}"


def broadcast(run_id: int, message: dict[str, Any]) -> None:
    """Send one message to every browser watching the run."""
    broadcast_to(group_name(run_id), message)


def broadcast_to(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    payload = dict(message, sent_at=time.time())
    try:
        async_to_sync(layer.group_send)(group, {"type": "run.message", "message": payload})
    except Exception:  # noqa: BLE001 - a lost broadcast must never fail training
        log.warning("could not broadcast %s to %s", message.get("type"), group, exc_info=True)

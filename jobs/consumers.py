"""`/ws/runs/<id>/`: the DB snapshot right after accepting, then the live epochs and statuses.

The consumer checks that the caller may see the run, joins its group, and only then reads the
snapshot, so nothing broadcast in between is lost (and nothing of another user's run is ever queued
for it); epochs the snapshot already held are skipped, so nothing arrives twice.
"""
from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import messages
from .progress import group_name
from .selectors import runs_visible_to
from .serializers import RunSerializer

CLOSE_UNAUTHORISED = 4401
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _visible(user: Any, run_id: int) -> bool:
    return runs_visible_to(user).filter(pk=run_id).exists()


@database_sync_to_async
def _snapshot_for(user: Any, run_id: int) -> dict[str, Any] | None:
    """Everything a late or reconnecting client needs before the live stream: the run and every epoch so far."""
    run = runs_visible_to(user).select_related("dataset").filter(pk=run_id).first()
    if run is None:
        return None
    rows = list(run.epochs.order_by("epoch"))
    return messages.snapshot(RunSerializer(run).data, run, rows)


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        self.last_epoch = 0
        self.group = group_name(self.run_id)
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORISED)
            return
        if not await _visible(user, self.run_id):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await _snapshot_for(user, self.run_id)
        if snapshot is None:  # deleted in the meantime
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if snapshot["epochs"]:
            self.last_epoch = snapshot["epochs"][-1]["epoch"]
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients have nothing to send; answer anything with an error rather than silence."""
        await self.send_json(messages.refusal("this socket accepts no messages"))

    async def run_message(self, event: dict[str, Any]) -> None:
        message = event["message"]
        if message.get("type") == "epoch":
            if message["epoch"] <= self.last_epoch:
                return
            self.last_epoch = message["epoch"]
        await self.send_json(message)

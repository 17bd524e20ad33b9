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
from .progress import group_name, study_group
from .selectors import runs_visible_to
from .serializers import RunSerializer, StudySerializer
from .study_selectors import studies_visible_to

CLOSE_UNAUTHORISED = 4401
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _visible(user: Any, run_id: int) -> bool:
    return runs_visible_to(user).filter(pk=run_id).exists()


@database_sync_to_async
def _study_visible(user: Any, study_id: int) -> bool:
    return studies_visible_to(user).filter(pk=study_id).exists()


@database_sync_to_async
def _study_snapshot_for(user: Any, study_id: int) -> dict[str, Any] | None:
    study = studies_visible_to(user).filter(pk=study_id).first()
    return None if study is None else messages.study_snapshot(StudySerializer(study).data)


@database_sync_to_async
def _snapshot_for(user: Any, run_id: int) -> dict[str, Any] | None:
    """Everything a late or reconnecting client needs before the live stream: the run and every epoch so far."""
    run = runs_visible_to(user).select_related("dataset").filter(pk=run_id).first()
    if run is None:
        return None
    rows = list(run.epochs.order_by("epoch"))
    return messages.snapshot(RunSerializer(run).data, run, rows)


class SnapshotConsumer(AsyncJsonWebsocketConsumer):
    """Accept; refuse a caller without a login (4401) or who may not see the thing (4404); join its group, and only
    then read and send the snapshot, so nothing broadcast in between is lost; then relay the group's messages."""

    group = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.key = int(next(iter(self.scope["url_route"]["kwargs"].values())))
        self.group = await database_sync_to_async(self.group_of)(self.key)  # the installation's key: read once
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORISED)
            return
        if not await self.visible(user, self.key):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await self.snapshot(user, self.key)
        if snapshot is None:  # deleted in the meantime
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.started(snapshot)
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients have nothing to send; answer anything with an error rather than silence."""
        await self.send_json(messages.refusal("this socket accepts no messages"))

    async def run_message(self, event: dict[str, Any]) -> None:
        if self.relays(event["message"]):
            await self.send_json(event["message"])

    def started(self, snapshot: dict[str, Any]) -> None:
        """What the snapshot held (to skip it when it is broadcast again)."""

    def relays(self, message: dict[str, Any]) -> bool:
        return True


class RunConsumer(SnapshotConsumer):
    """`/ws/runs/<id>/`: epochs the snapshot already held are skipped, so nothing arrives twice."""

    group_of = staticmethod(group_name)
    visible = staticmethod(_visible)
    snapshot = staticmethod(_snapshot_for)

    def started(self, snapshot: dict[str, Any]) -> None:
        self.last_epoch = snapshot["epochs"][-1]["epoch"] if snapshot["epochs"] else 0

    def relays(self, message: dict[str, Any]) -> bool:
        if message.get("type") == "epoch":
            if message["epoch"] <= self.last_epoch:
                return False
            self.last_epoch = message["epoch"]
        return True


class StudyConsumer(SnapshotConsumer):
    """`/ws/studies/<id>/`: the study as the REST API gives it, then each change of its trials. A change sent between
    joining and the snapshot arrives twice, which is harmless: a client puts trials in place by number."""

    group_of = staticmethod(study_group)
    visible = staticmethod(_study_visible)
    snapshot = staticmethod(_study_snapshot_for)

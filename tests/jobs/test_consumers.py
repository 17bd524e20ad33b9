from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from jobs import dataset_services, services, worker_services
from jobs.models import Run
from jobs.routing import websocket_urlpatterns
from masksel_core import EpochRecord

pytestmark = pytest.mark.django_db(transaction=True)
APP = URLRouter(websocket_urlpatterns)


def record(epoch: int) -> EpochRecord:
    selected = np.zeros((1, 8, 8), dtype=np.uint8)
    selected[0, :epoch] = 1
    return EpochRecord(epoch, 1.0 / epoch, 0.5, 0.1 * epoch, 0.1, 10.0, float(selected.mean()), selected)


async def connect(user: Any, run_id: int) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, f"/ws/runs/{run_id}/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.fixture(autouse=True)
async def close_thread_connections() -> Any:
    """database_sync_to_async opens connections in its own thread; close them so the test DB can be dropped."""
    yield
    from channels.db import database_sync_to_async
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def run(alice: Any) -> Any:
    # A queued row without its task: these tests play the worker's part themselves.
    digits = dataset_services.dataset_seed_builtins()[0]
    return Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any", "epochs": 5},
                              total_epochs=5)


async def test_snapshot_first_then_live_epochs_without_duplicates(alice: Any, run: Any) -> None:
    await sync_to_async(worker_services.run_record_epoch)(run, record(1))
    communicator = await connect(alice, run.pk)
    snapshot = await communicator.receive_json_from()
    assert snapshot["type"] == "snapshot" and snapshot["run"]["id"] == run.pk
    assert [e["epoch"] for e in snapshot["epochs"]] == [1]
    mask = snapshot["epochs"][0]["mask"]
    bits = np.unpackbits(np.frombuffer(__import__("base64").b64decode(mask["bits"]), dtype=np.uint8))[:64]
    assert bits.reshape(mask["shape"]).tolist() == record(1).selected.tolist()

    await sync_to_async(worker_services.run_record_epoch)(run, record(1))  # a redelivered epoch: not sent again
    await sync_to_async(worker_services.run_record_epoch)(run, record(2))
    live = await communicator.receive_json_from()
    assert live["type"] == "epoch" and live["epoch"] == 2 and live["metrics"]["val_accuracy"] == pytest.approx(0.2)
    assert isinstance(live["sent_at"], float)
    await sync_to_async(services.run_cancel)(run)
    status = await communicator.receive_json_from()
    assert status == {"type": "status", "status": "cancelled", "sent_at": status["sent_at"]}
    assert await communicator.receive_nothing()
    await communicator.disconnect()


async def test_anonymous_sockets_are_closed_4401(run: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    communicator = await connect(AnonymousUser(), run.pk)
    assert (await communicator.receive_output())["code"] == 4401


async def test_another_users_run_is_closed_4404(bob: Any, run: Any) -> None:
    communicator = await connect(bob, run.pk)
    assert (await communicator.receive_output())["code"] == 4404


async def test_another_installations_messages_on_the_same_redis_are_not_heard(alice: Any, run: Any) -> None:
    """Two installations that share a Redis both have a run 1: each one's pages hear only its own runs."""
    from channels.layers import get_channel_layer

    communicator = await connect(alice, run.pk)
    assert (await communicator.receive_json_from())["type"] == "snapshot"
    failed = {"type": "run.message", "message": {"type": "status", "status": "failed"}}
    for theirs in (f"run-{run.pk}", f"run-0123456789ab-{run.pk}"):  # a group without a key, or with another's
        await get_channel_layer().group_send(theirs, failed)
    assert await communicator.receive_nothing()
    await sync_to_async(services.run_cancel)(run)  # its own installation's message still arrives
    assert (await communicator.receive_json_from())["status"] == "cancelled"
    await communicator.disconnect()


async def test_a_page_open_on_a_deleted_run_is_told(alice: Any, run: Any) -> None:
    communicator = await connect(alice, run.pk)
    assert (await communicator.receive_json_from())["type"] == "snapshot"
    await sync_to_async(services.run_delete)(run)
    told = await communicator.receive_json_from()
    assert told["status"] == "deleted" and "epochs and files are gone" in told["error"]
    await communicator.disconnect()

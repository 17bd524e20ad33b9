"""A run end to end over REST and the websocket, with a real Redis, worker and ASGI server."""
from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from .conftest import Stack, upload

pytestmark = pytest.mark.e2e
FINAL = {"succeeded", "failed", "cancelled"}


async def watch(stack: Stack, run_id: int, *, timeout: float = 180) -> list[dict[str, Any]]:
    """Every message of `/ws/runs/<id>/` until the run's final status."""
    url = f"{stack.ws_url}/ws/runs/{run_id}/?token={stack.token()}"
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, origin=stack.base_url) as socket:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=deadline - time.monotonic()))
            messages.append(message)
            run_status = message.get("status") or message.get("run", {}).get("status")
            if run_status in FINAL:
                return messages
    raise AssertionError(f"no final status within {timeout} s: {messages[-3:]}")


def test_an_uploaded_dataset_trains_live_over_rest_and_websocket(stack: Stack, slow_npz: Path) -> None:
    dataset = upload(stack, slow_npz, "slow")
    assert dataset["input_shape"] == [2, 16, 16] and dataset["num_classes"] == 4
    with stack.client() as client:
        created = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "pixel-any",
                                                  "model": "lenet5", "epochs": 3, "batch_size": 32,
                                                  "warmup_epochs": 2, "finalize_epochs": 1})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        messages = asyncio.run(watch(stack, run_id))

        assert messages[0]["type"] == "snapshot" and messages[0]["run"]["id"] == run_id
        live = [m for m in messages if m["type"] == "epoch"]
        assert len(live) >= 2, messages
        detail = client.get(f"/api/runs/{run_id}/").json()
        assert detail["status"] == "succeeded" and detail["epoch"] in (6, 7) and detail["device"] == "cpu"
        snapshot_epochs = [e["epoch"] for e in messages[0]["epochs"]]
        all_epochs = snapshot_epochs + [m["epoch"] for m in live]
        assert all_epochs == list(range(1, detail["epoch"] + 1)), "every epoch exactly once, in order"
        phases = [e["phase"] for e in messages[0]["epochs"]] + [m["phase"] for m in live]
        assert phases[:6] == ["warmup"] * 2 + ["select"] * 3 + ["finalize"] and phases[6:] in ([], ["final"])
        assert all(isinstance(m["sent_at"], float) and m["mask"]["shape"] == [2, 16, 16] for m in live)
        last = messages[-1]
        assert (last["type"], last["status"], last["warnings"]) == ("status", "succeeded", [])
        assert last["test_accuracy"] == detail["test_accuracy"] > 0.5

        metrics = client.get(f"/api/runs/{run_id}/metrics/").json()
        assert [m["epoch"] for m in metrics] == list(range(1, detail["epoch"] + 1))
        assert metrics[-1]["val_accuracy"] == pytest.approx(live[-1]["metrics"]["val_accuracy"])

        npy = client.get(f"/api/runs/{run_id}/mask.npy")
        assert npy.status_code == 200
        mask = np.load(io.BytesIO(npy.content))
        assert mask.shape == (2, 16, 16) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert mask.mean() == pytest.approx(detail["fraction"])


def test_a_registered_store_streams_through_a_real_worker_and_serves_its_kept_channels(
        stack: Stack, tmp_path: Path) -> None:
    """A zarr store under the stack's data root (var/stores), larger than its workers' memory budget (64 KiB):
    registered where it lies, trained by the Celery worker from a reader process, served by channel."""
    from masksel_core.data.convert import convert
    from tests.conftest import make_npz

    store = stack.var_dir / "stores" / "four.zarr"
    store.parent.mkdir(exist_ok=True)
    convert(str(make_npz(tmp_path / "four.npz", n=240, channels=4, size=6)), str(store))
    with stack.client() as client:
        dataset = client.post("/api/datasets/", json={"name": "four", "uri": str(store)})
        assert dataset.status_code == 201, dataset.text
        assert dataset.json()["channel_names"] == ["ch0", "ch1", "ch2", "ch3"]
        dataset_id = dataset.json()["id"]
        assert client.get(f"/api/datasets/{dataset_id}/preview/").json()["channels_total"] == 4
        created = client.post("/api/runs/", json={"dataset": dataset_id, "mask_type": "channel-any", "model": "mlp",
                                                  "epochs": 2, "batch_size": 32, "warmup_epochs": 2,
                                                  "finalize_epochs": 1, "init_selected": [0, 2]})
        run_id = created.json()["id"]
        messages = asyncio.run(watch(stack, run_id))
        detail = client.get(f"/api/runs/{run_id}/").json()
        assert detail["status"] == "succeeded", detail
        epochs = [e["epoch"] for e in messages[0]["epochs"]] + [m["epoch"] for m in messages if m["type"] == "epoch"]
        assert epochs == list(range(1, detail["epoch"] + 1)) and detail["test_accuracy"] > 0.9
        masked = client.get(f"/api/datasets/{dataset_id}/samples/?run={run_id}&count=24")
        whole = client.get(f"/api/datasets/{dataset_id}/samples/?count=24")
        assert masked.status_code == 200 == whole.status_code
        assert int(masked.headers["X-Masksel-Bytes-Read"]) < 0.6 * int(whole.headers["X-Masksel-Bytes-Read"])


def test_a_late_client_gets_the_whole_run_from_the_snapshot(stack: Stack) -> None:
    with stack.client() as client:
        digits = next(d for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")
        run_id = client.post("/api/runs/", json={"dataset": digits["id"], "mask_type": "pixel-any",
                                                 "model": "mlp", "epochs": 2, "warmup_epochs": 1,
                                                 "finalize_epochs": 0}).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/api/runs/{run_id}/").json()["status"] not in FINAL:
            assert time.monotonic() < deadline, "run did not finish"
            time.sleep(0.2)
    messages = asyncio.run(watch(stack, run_id))
    assert len(messages) == 1 and messages[0]["type"] == "snapshot"
    assert [e["epoch"] for e in messages[0]["epochs"]] == [1, 2, 3]


def test_websockets_refuse_strangers(stack: Stack) -> None:
    async def close_code(url: str, origin: str | None) -> int | None:
        try:
            async with websockets.connect(url, origin=origin) as socket:  # origin None: no Origin header
                await asyncio.wait_for(socket.recv(), timeout=10)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except websockets.InvalidStatus as refused:
            return refused.response.status_code
        return None

    assert asyncio.run(close_code(f"{stack.ws_url}/ws/runs/1/", stack.base_url)) == 4401
    assert asyncio.run(close_code(f"{stack.ws_url}/ws/runs/1/?token=nope", stack.base_url)) == 4401
    assert asyncio.run(close_code(f"{stack.ws_url}/ws/runs/1/?token={stack.token()}", "http://evil.example")) == 403
    # A client that is not a browser sends no Origin: it must bring a token, which is then all it needs.
    assert asyncio.run(close_code(f"{stack.ws_url}/ws/runs/1/", None)) == 4401
    assert asyncio.run(close_code(f"{stack.ws_url}/ws/runs/999999/?token={stack.token()}", None)) == 4404


def test_cancel_stops_a_running_run_and_keeps_what_it_learned(stack: Stack, slow_npz: Path) -> None:
    dataset = upload(stack, slow_npz, "slow-cancel")
    with stack.client() as client:
        run_id = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "channel-any",
                                                 "model": "lenet5", "epochs": 200, "batch_size": 32,
                                                 "warmup_epochs": 1}).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/api/runs/{run_id}/").json()["epoch"] < 1:
            assert time.monotonic() < deadline, "no epoch recorded"
            time.sleep(0.1)
        cancelled = client.post(f"/api/runs/{run_id}/cancel/")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        at_cancel = client.get(f"/api/runs/{run_id}/").json()["epoch"]
        deadline = time.monotonic() + 60
        while client.get(f"/api/runs/{run_id}/model.pt").status_code != 200:  # written once training stopped
            assert time.monotonic() < deadline, "the worker did not stop"
            time.sleep(0.2)
        time.sleep(1.0)
        final = client.get(f"/api/runs/{run_id}/").json()
        assert final["status"] == "cancelled" and final["epoch"] <= at_cancel + 1
        epochs = [m["epoch"] for m in client.get(f"/api/runs/{run_id}/metrics/").json()]
        assert epochs == list(range(1, final["epoch"] + 1))
        mask = np.load(io.BytesIO(client.get(f"/api/runs/{run_id}/mask.npy").content))
        assert mask.shape == (2,)
        again = client.post(f"/api/runs/{run_id}/cancel/")
        assert again.status_code == 400 and "already cancelled" in again.json()["error"]


def test_the_running_worker_reports_itself_on_the_workers_page(stack: Stack) -> None:
    import re

    session = httpx.Client(base_url=stack.base_url, follow_redirects=True)
    page = session.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    session.post("/accounts/login/", data={"username": stack.username, "password": stack.password,
                                           "csrfmiddlewaretoken": token}, headers={"Referer": stack.base_url})
    deadline = time.monotonic() + 30
    while True:
        workers = session.get("/workers/").text
        if ">up<" in workers:
            break
        assert time.monotonic() < deadline, "no worker reported itself"
        time.sleep(0.5)
    assert "cpu" in workers


def test_a_gpu_run_waits_for_a_gpu_worker_while_a_cpu_worker_trains_the_others(stack: Stack) -> None:
    """This host has no GPU, so the launcher's worker reads the main queue only: the run that asks for cuda
    keeps its message in the GPU queue, and the cpu run submitted after it is trained."""
    import redis

    short = {"mask_type": "pixel-any", "model": "mlp", "epochs": 1, "warmup_epochs": 1, "finalize_epochs": 0}
    with stack.client() as client:
        digits = next(d["id"] for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")
        gpu = client.post("/api/runs/", json={**short, "dataset": digits, "device": "cuda"}).json()["id"]
        cpu = client.post("/api/runs/", json={**short, "dataset": digits, "device": "cpu"}).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/api/runs/{cpu}/").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the cpu run should be trained"
            time.sleep(0.3)
        assert client.get(f"/api/runs/{gpu}/").json()["status"] == "queued"
        broker = redis.Redis.from_url(stack.env["REDIS_URL"])
        # Its message waits for a GPU worker, in the GPU queue named with this installation's key.
        (gpu_queue,) = broker.keys(stack.env["MASKSEL_QUEUE"] + "-gpu.*")
        assert broker.llen(gpu_queue) == 1
        assert client.post(f"/api/runs/{gpu}/cancel/").status_code == 200

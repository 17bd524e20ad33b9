"""Load held: one worker drains 20 queued runs in order; 200 websocket viewers each get every epoch."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from .conftest import Stack, upload

pytestmark = pytest.mark.e2e
FINAL = {"succeeded", "failed", "cancelled"}


def test_one_worker_finishes_twenty_queued_runs_in_submission_order(stack: Stack) -> None:
    with stack.client() as client:
        digits = next(d for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")
        ids = [client.post("/api/runs/", json={"dataset": digits["id"], "mask_type": "pixel-any", "model": "mlp",
                                               "epochs": 1, "seed": i, "warmup_epochs": 0,
                                               "finalize_epochs": 0}).json()["id"] for i in range(20)]
        deadline = time.monotonic() + 240
        while True:
            runs = {r["id"]: r for r in client.get("/api/runs/").json() if r["id"] in ids}
            if all(r["status"] in FINAL for r in runs.values()):
                break
            assert time.monotonic() < deadline, [r["status"] for r in runs.values()]
            time.sleep(0.5)
    assert [runs[i]["status"] for i in ids] == ["succeeded"] * 20, "none lost"
    started = [runs[i]["started_at"] for i in ids]
    assert started == sorted(started), "trained in submission order"
    assert all(runs[i]["attempts"] == 1 for i in ids)


async def viewer(url: str, origin: str) -> list[int]:
    epochs: list[int] = []
    async with websockets.connect(url, origin=origin, open_timeout=60) as socket:
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=120))
            if message["type"] == "snapshot":
                epochs += [e["epoch"] for e in message["epochs"]]
                if message["run"]["status"] in FINAL:
                    return epochs
            elif message["type"] == "epoch":
                epochs.append(message["epoch"])
            elif message["type"] == "status" and message["status"] in FINAL:
                return epochs


async def watch_with(count: int, stack: Stack, run_id: int) -> list[Any]:
    url = f"{stack.ws_url}/ws/runs/{run_id}/?token={stack.token()}"
    return await asyncio.gather(*(viewer(url, stack.base_url) for _ in range(count)), return_exceptions=True)


def test_two_hundred_viewers_of_one_run_each_receive_every_epoch(stack: Stack, slow_npz: Path) -> None:
    dataset = upload(stack, slow_npz, "slow-load")
    with stack.client() as client:
        run_id = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "channel-any",
                                                 "model": "lenet5", "epochs": 6, "batch_size": 32,
                                                 "warmup_epochs": 2, "finalize_epochs": 0}).json()["id"]
    results = asyncio.run(watch_with(200, stack, run_id))
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert all(epochs == list(range(1, 9)) for epochs in results)

"""Redis restarts while a run trains: training goes on, the database keeps every epoch, clients catch up."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import websockets

from webapp.embedded_redis import redis_answers, start_private_redis

from .conftest import free_port, start_worker, upload, web_server_only

pytestmark = pytest.mark.e2e


def status_of(client: httpx.Client, run_id: int) -> dict[str, object]:
    return client.get(f"/api/runs/{run_id}/").json()


def test_a_run_survives_a_redis_restart_and_late_viewers_get_every_epoch(tmp_path: Path, slow_npz: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis = start_private_redis(url, tmp_path / "redis")
    worker = None
    try:
        with web_server_only(url, tmp_path / "var") as stack:
            dataset = upload(stack, slow_npz, "slow")
            worker = start_worker(stack.env, tmp_path / "worker.log")
            with stack.client() as client:
                run_id = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "channel-any",
                                                         "model": "lenet5", "epochs": 25, "batch_size": 32,
                                                         "warmup_epochs": 0, "finalize_epochs": 0}).json()["id"]
                deadline = time.monotonic() + 120
                while status_of(client, run_id)["epoch"] < 2:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                redis.terminate()
                redis.wait(timeout=10)
                assert not redis_answers(url)
                down_at = status_of(client, run_id)["epoch"]
                deadline = time.monotonic() + 60  # an epoch or more, however loaded the machine
                while (during := status_of(client, run_id)["epoch"]) <= down_at and time.monotonic() < deadline:
                    time.sleep(0.2)
                redis = start_private_redis(url, tmp_path / "redis")
                deadline = time.monotonic() + 180
                while status_of(client, run_id)["status"] not in ("succeeded", "failed"):
                    assert time.monotonic() < deadline, "the run did not finish after Redis came back"
                    time.sleep(0.2)
                assert status_of(client, run_id)["status"] == "succeeded"
                assert during > down_at, "training went on while Redis was down"
                epochs = [m["epoch"] for m in client.get(f"/api/runs/{run_id}/metrics/").json()]
                assert epochs == list(range(1, 26))

            async def snapshot() -> list[int]:
                async with websockets.connect(f"{stack.ws_url}/ws/runs/{run_id}/?token={stack.token()}",
                                              origin=stack.base_url) as socket:
                    message = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
                    return [e["epoch"] for e in message["epochs"]]

            assert asyncio.run(snapshot()) == list(range(1, 26))
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        redis.terminate()
        redis.wait(timeout=10)

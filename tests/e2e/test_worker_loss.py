"""A worker killed with SIGKILL mid-run: the next worker resumes the run from its checkpoint."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from .conftest import Stack, start_worker, upload

pytestmark = pytest.mark.e2e


def wait_for(client: httpx.Client, run_id: int, condition, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}/").json()
        if condition(run):
            return run
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout} s: {run}")


def test_a_killed_worker_s_run_resumes_on_the_next_worker_with_every_epoch_once(web_only: Stack,
                                                                              slow_npz: Path) -> None:
    dataset = upload(web_only, slow_npz, "slow")
    first = start_worker(web_only.env, web_only.var_dir / "worker-a.log")
    second = None
    try:
        with web_only.client() as client:
            run_id = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "pixel-any",
                                                     "model": "lenet5", "epochs": 6, "batch_size": 32,
                                                     "warmup_epochs": 2, "finalize_epochs": 2}).json()["id"]
            wait_for(client, run_id, lambda r: r["epoch"] >= 3)  # in selection
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            killed_at = client.get(f"/api/runs/{run_id}/").json()
            assert killed_at["status"] == "running" and killed_at["epoch"] < 8
            time.sleep(2.5)  # the lease goes stale
            second = start_worker(web_only.env, web_only.var_dir / "worker-b.log")
            done = wait_for(client, run_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=180)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2 and "lost" in done["retries"][0]["reason"]
            metrics = client.get(f"/api/runs/{run_id}/metrics/").json()
            assert [m["epoch"] for m in metrics] == list(range(1, done["epoch"] + 1))
            phases = [m["phase"] for m in metrics]
            assert phases[:8] == ["warmup"] * 2 + ["select"] * 6 and set(phases[8:]) <= {"finalize", "final"}
        log = (web_only.var_dir / "worker-b.log").read_text()
        assert f"resuming run {run_id} from its checkpoint" in log
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)

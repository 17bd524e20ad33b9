"""The web server restarts while a browser watches a run: the page reconnects and catches up."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Stack, log_in, start_web, start_worker, upload

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def state(page: Any) -> dict[str, Any]:
    return page.evaluate("window.maskselRun")


def test_the_run_page_reconnects_after_a_web_restart_without_gaps_or_duplicates(
        web_only: Stack, slow_npz: Path, browser: Any) -> None:
    dataset = upload(web_only, slow_npz, "slow")
    worker = start_worker(web_only.env, web_only.var_dir / "worker.log")
    try:
        with web_only.client() as client:
            run_id = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "pixel-any",
                                                     "model": "lenet5", "epochs": 30, "batch_size": 32,
                                                     "warmup_epochs": 0, "finalize_epochs": 0}).json()["id"]
        page = browser.new_page()
        log_in(page, web_only)
        page.goto(f"{web_only.base_url}/runs/{run_id}/")
        page.wait_for_function("window.maskselRun && window.maskselRun.epochs.length >= 2", timeout=60_000)
        port = int(web_only.base_url.rsplit(":", 1)[1])
        web_only.process.send_signal(signal.SIGTERM)
        web_only.process.wait(timeout=20)
        page.wait_for_function("!document.getElementById('live').classList.contains('on')", timeout=10_000)
        seen_while_down = len(state(page)["epochs"])
        time.sleep(1.5)  # epochs go on in the worker while nobody can watch
        web_only.process = start_web(web_only.env, port)
        page.wait_for_function("window.maskselRun.snapshots >= 2", timeout=30_000)
        page.wait_for_function("document.getElementById('run-status').textContent === 'succeeded'",
                               timeout=180_000)
        final = state(page)
        assert final["epochs"] == list(range(1, 31)), "every epoch once, in order, after the reconnect"
        assert seen_while_down < 30
        page.close()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)

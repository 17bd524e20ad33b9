"""Train over REST, download nothing but the model, fetch only the selected parts, predict.

The real stack (Redis, a Celery worker, daphne); the client is `masksel_core.transfer.client.RemoteDataset`
and the `predict` command, talking HTTP to the server.
"""
from __future__ import annotations

import io
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from masksel_core.transfer.client import RemoteDataset

from .conftest import Stack, log_in

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def train_run(stack: Stack, **options: object) -> dict[str, object]:
    with stack.client() as api:
        digits = next(d["id"] for d in api.get("/api/datasets/").json() if d["name"] == "digits")
        run_id = api.post("/api/runs/", json={"dataset": digits, "model": "mlp", "epochs": 4, "batch_size": 64,
                                              "lambda_init": 1.0, "device": "cpu", "warmup_epochs": 3,
                                              "finalize_epochs": 2, **options}).json()["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            run = api.get(f"/api/runs/{run_id}/").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.3)
    assert run["status"] == "succeeded", run
    return run


@pytest.fixture(scope="module")
def pixel_run(stack: Stack) -> dict[str, object]:
    """One trained pixel-any run shared by the tests that only read it."""
    return train_run(stack, mask_type="pixel-any")


@pytest.fixture(scope="module")
def dynamic_run(stack: Stack) -> dict[str, object]:
    """One trained dynamic run: the server's mask network picks each sample's cells."""
    return train_run(stack, mask_type="dynamic-block-any", grid=[4, 4])


@pytest.mark.parametrize("mask_type", ["pixel-any", "jpeg-xor", "dynamic-block-any"])
def test_masked_samples_over_http_give_the_runs_accuracy(stack: Stack, pixel_run: dict[str, object],
                                                        dynamic_run: dict[str, object], mask_type: str) -> None:
    """`RemoteDataset` and the client's model.ts alone give the run's test accuracy exactly, for every kind."""
    runs = {"pixel-any": pixel_run, "dynamic-block-any": dynamic_run}
    run = runs[mask_type] if mask_type in runs else train_run(stack, mask_type=mask_type)
    with stack.client() as api:
        model_bytes = api.get(f"/api/runs/{run['id']}/model.ts").content  # the only file downloaded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(io.BytesIO(model_bytes)).eval()
    remote = RemoteDataset(stack.base_url, stack.token(), int(run["dataset"]), int(run["id"]), page=128)
    correct = total = 0
    with torch.no_grad():
        for batch in remote:
            correct += int((model(batch.x).argmax(dim=1) == batch.labels).sum())
            total += batch.x.shape[0]
    assert total == len(remote) and remote.requests > 2
    assert correct / total == run["test_accuracy"]  # the samples served are the test split
    if mask_type != "jpeg-xor":  # (an 8x8 JPEG is larger than the raw values: the JPEG chain saves nothing here)
        whole = RemoteDataset(stack.base_url, stack.token(), int(run["dataset"]), None, page=128)
        for _ in whole:
            pass
        assert remote.bytes_received < whole.bytes_received


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_the_predict_command_prints_accuracy_and_bytes(stack: Stack, pixel_run: dict[str, object],
                                                       dynamic_run: dict[str, object], kind: str) -> None:
    run = pixel_run if kind == "static" else dynamic_run
    result = subprocess.run(
        [sys.executable, "-m", "masksel_core", "predict", "--server", stack.base_url, "--token", stack.token(),
         "--dataset", str(run["dataset"]), "--run", str(run["id"])],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in result.stdout.splitlines() if line.startswith("| masked") or line.startswith("| full")}
    assert float(rows["masked"][1]) == pytest.approx(run["test_accuracy"], abs=6e-5)
    assert int(rows["masked"][2]) < int(rows["full"][2])
    refused = subprocess.run(
        [sys.executable, "-m", "masksel_core", "predict", "--server", stack.base_url, "--token", "wrong",
         "--dataset", str(run["dataset"]), "--run", str(run["id"])],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 3 and "cannot download model.ts" in refused.stderr and "401" in refused.stderr


@pytest.mark.browser
def test_the_run_page_draws_the_curve_in_bytes(stack: Stack, browser: Any, pixel_run: dict[str, object]) -> None:
    run = pixel_run
    page = browser.new_page()
    log_in(page, stack)
    page.goto(f"{stack.base_url}/runs/{run['id']}/")
    page.wait_for_selector("#chart-bytes canvas")
    assert page.get_attribute("#chart-bytes", "data-points") == str(run["epoch"])  # one point per epoch
    shown = float((page.text_content("#transfer-bytes") or "").split()[0])
    assert shown == pytest.approx(run["fraction"] * 256, abs=0.05)
    page.close()

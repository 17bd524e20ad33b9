"""Shared fixtures: personas (alice owns things, bob must not see them) and small data files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testkit.s3 import start_s3_server

if os.environ.get("PYTEST_XDIST_WORKER"):  # the cores shared out between the test processes, not each taking all
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


def make_npz(path: Path, *, n: int = 120, channels: int = 2, size: int = 6, classes: int = 3, seed: int = 0,
             **overrides: Any) -> Path:
    """A small learnable data set: the class shows as a bright row in channel 0; channel 1 is noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.random((n, channels, size, size)).astype(np.float32) * 0.2
    for i, label in enumerate(y):
        x[i, 0, label % size, :] = 1.0
    arrays: dict[str, Any] = {"x_train": x, "y_train": y.astype(np.int64)}
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


@pytest.fixture
def small_npz(tmp_path: Path) -> Path:
    return make_npz(tmp_path / "small.npz")


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob", password="bob-password-1")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An S3 HTTP endpoint on this machine: moto's standalone server (no S3 server installs here). The code
    under test talks to it with boto3 and django-storages unchanged."""
    with (tmp_path_factory.mktemp("moto") / "moto.log").open("wb") as log:
        url, process = start_s3_server(log)
        yield url
        process.terminate()
        process.wait(timeout=10)

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

    THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    torch.set_num_threads(THREADS)
    # And the processes the tests start (Celery workers, daphne, the CLI): each test process's share, not all the
    # cores each. With every worker on all the cores, two service tests at once oversubscribed them and the
    # threads' waits cost more than the training: the suite took 1,120 s of CPU time (11.5 minutes); with this,
    # 585 s (6.4 minutes).
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


def pytest_itemcollected(item: pytest.Item) -> None:
    """How `make test` shares the tests out (`--dist loadgroup`): the tests of a module that uses a module-wide
    fixture (a stack of Redis, a Celery worker and daphne; Chromium; a data set made once) run in one process, so
    that it is made once; every other test goes to whichever process is free, which keeps both busy to the end. A
    module whose tests each start their own processes says `SPREAD = True` to be shared out all the same."""
    module = getattr(item, "module", None)
    if module is None or getattr(module, "SPREAD", False):
        return
    fixtures = getattr(item, "_fixtureinfo", None)
    definitions = fixtures.name2fixturedefs.values() if fixtures is not None else ()
    if any(fixture.scope == "module" for chain in definitions for fixture in chain):
        item.add_marker(pytest.mark.xdist_group(module.__name__))


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering (database tests first)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The service's tests first: they are the long ones, and a long one started last keeps the suite waiting."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)  # stable: each module's order is kept


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

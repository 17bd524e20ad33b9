from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs.services import dataset_seed_builtins

#: Options of a run that trains in about a second (eager Celery runs it inside the test).
FAST = {"mask_type": "pixel-any", "model": "mlp", "epochs": 2, "batch_size": 64, "warmup_epochs": 1,
        "finalize_epochs": 0}


@pytest.fixture
def digits(db: Any) -> Any:
    return dataset_seed_builtins()[0]


@pytest.fixture
def alice_api(alice: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def bob_api(bob: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(bob)
    return client

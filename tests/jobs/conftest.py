from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs.services import dataset_seed_builtins


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

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


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An S3 HTTP endpoint on this machine: moto's standalone server (no S3 server installs here). The code
    under test talks to it with boto3 and django-storages unchanged."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            assert process.poll() is None and time.monotonic() < deadline, "moto's S3 server did not start"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
def s3(settings: Any, s3_endpoint: str, tmp_path: Any) -> Any:
    """MASKSEL_STORAGE=s3 against a fresh bucket; returns a boto3 client to look into it."""
    import uuid

    import boto3

    bucket = f"masksel-test-{uuid.uuid4().hex[:12]}"
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=s3_endpoint, **credentials)
    client.create_bucket(Bucket=bucket)
    settings.AWS_S3_ENDPOINT_URL, settings.AWS_STORAGE_BUCKET_NAME = s3_endpoint, bucket
    settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY = "test", "test"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.MASKSEL_FILE_CACHE = tmp_path / "file-cache"
    settings.MASKSEL_STORAGE = "s3"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    client.bucket = bucket
    return client

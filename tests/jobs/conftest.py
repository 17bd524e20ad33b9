from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import current_app
from rest_framework.test import APIClient

from jobs.dataset_services import dataset_seed_builtins

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


@pytest.fixture
def queued_only() -> Iterator[None]:
    """Messages go to kombu's in-memory broker, which nothing reads: runs stay queued until a test ends them."""
    conf = current_app.conf
    before = (conf.task_always_eager, conf.broker_url, current_app._pool)
    # The producer pool is made from broker_url on first use: a fresh one for the memory broker, the old one back.
    conf.task_always_eager, conf.broker_url, current_app._pool = False, "memory://", None
    yield
    conf.task_always_eager, conf.broker_url, current_app._pool = before


def worker_run(owner: Any, dataset: Any, **changes: Any) -> Any:
    """A queued run row with every option spelt out, as `run_create` stores it, for a test that plays the worker
    (`jobs.training.execute_next`) itself; three short epochs on big batches."""
    from jobs.models import Run
    from masksel_core import TrainConfig

    config = TrainConfig(**{"mask_type": "pixel-any", "model": "mlp", "epochs": 3, "batch_size": 256, "device": "cpu",
                            "warmup_epochs": 1, "finalize_epochs": 0, **changes})
    return Run.objects.create(owner=owner, dataset=dataset, config=config.to_dict(), total_epochs=5)


def after_recording(monkeypatch: Any, epoch: int, action: Callable[[Any], None]) -> None:
    """The worker does `action(run row)` right after it records `epoch`: the moment a user, or a fault, acts."""
    from jobs import worker_services

    record = worker_services.run_record_epoch

    def recording(row: Any, epoch_record: Any) -> Any:
        stored = record(row, epoch_record)
        if epoch_record.epoch == epoch:
            action(row)
        return stored

    monkeypatch.setattr(worker_services, "run_record_epoch", recording)

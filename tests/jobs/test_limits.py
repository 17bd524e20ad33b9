from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import dataset_services, selectors, services
from jobs.models import Dataset, Run

FAST = {"mask_type": "pixel-any", "model": "mlp", "epochs": 1, "warmup_epochs": 1, "finalize_epochs": 0}


def upload(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes())


def test_open_runs_are_capped_per_user(alice: Any, bob: Any, digits: Any, settings: Any) -> None:
    settings.MASKSEL_MAX_OPEN_RUNS = 2
    for _ in range(2):
        services.run_create(owner=alice, dataset=digits.pk, options=FAST)
    with pytest.raises(services.ServiceError, match="2 runs queued or running, the limit is 2"):
        services.run_create(owner=alice, dataset=digits.pk, options=FAST)
    services.run_create(owner=bob, dataset=digits.pk, options=FAST)  # the limit is per user
    services.run_cancel(Run.objects.filter(owner=alice).first())
    services.run_create(owner=alice, dataset=digits.pk, options=FAST)


def test_uploads_over_the_size_limit_are_refused(alice: Any, small_npz: Path, settings: Any) -> None:
    settings.MASKSEL_MAX_UPLOAD_BYTES = 1000
    with pytest.raises(services.ServiceError, match="over the upload limit of 1000 bytes"):
        dataset_services.dataset_create(owner=alice, name="big", upload=upload(small_npz))
    assert not Dataset.objects.filter(name="big").exists()


def test_storage_counts_uploads_and_artifacts_and_is_capped(alice: Any, digits: Any, small_npz: Path,
                                                            settings: Any,
                                                            django_capture_on_commit_callbacks: Any) -> None:
    size = small_npz.stat().st_size
    dataset_services.dataset_create(owner=alice, name="one", upload=upload(small_npz))
    assert selectors.storage_used(alice) == size
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(owner=alice, dataset=digits.pk, options=FAST)
    run.refresh_from_db()
    assert run.artifact_bytes > 0 and selectors.storage_used(alice) == size + run.artifact_bytes
    settings.MASKSEL_MAX_STORAGE_BYTES = selectors.storage_used(alice) + size // 2
    with pytest.raises(services.ServiceError, match="storage limit reached"):
        dataset_services.dataset_create(owner=alice, name="two", upload=upload(small_npz))
    settings.MASKSEL_MAX_STORAGE_BYTES = selectors.storage_used(alice)
    with pytest.raises(services.ServiceError, match="storage limit reached"):
        services.run_create(owner=alice, dataset=digits.pk, options=FAST)

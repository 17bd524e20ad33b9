"""Data sets on object storage (MASKSEL_STORAGE=s3) against a real S3 HTTP endpoint (moto's server)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rest_framework.test import APIClient

from tests.conftest import make_npz
from tests.jobs.conftest import FAST


def test_an_upload_lives_in_the_bucket_and_a_host_reads_it_through_its_cache(
        alice_api: APIClient, s3: Any, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any) -> None:
    from jobs.models import Dataset, Run

    media_before = set(Path(settings.MEDIA_ROOT).rglob("*.npz"))
    with make_npz(tmp_path / "remote.npz").open("rb") as handle:
        created = alice_api.post("/api/datasets/", {"file": handle, "name": "in the bucket"}, format="multipart")
    assert created.status_code == 201, created.json()
    dataset = Dataset.objects.get(pk=created.json()["id"])
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert keys == [dataset.file.name] and keys[0].startswith("datasets/")
    assert set(Path(settings.MEDIA_ROOT).rglob("*.npz")) == media_before  # nothing on the web server's disk

    preview = alice_api.get(f"/api/datasets/{dataset.pk}/preview/").json()
    assert len(preview["samples"]) == 3
    cached = Path(settings.MASKSEL_FILE_CACHE) / dataset.file.name
    assert cached.is_file() and not list(cached.parent.glob(".part-*"))
    cached.unlink()  # a worker host with an empty cache
    with django_capture_on_commit_callbacks(execute=True):
        run_id = alice_api.post("/api/runs/", {"dataset": dataset.pk, **FAST}, format="json").json()["id"]
    assert Run.objects.get(pk=run_id).status == "succeeded" and cached.is_file()

    Run.objects.filter(pk=run_id).delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/datasets/{dataset.pk}/").status_code == 204
    assert s3.list_objects_v2(Bucket=s3.bucket).get("KeyCount") == 0 and not cached.exists()

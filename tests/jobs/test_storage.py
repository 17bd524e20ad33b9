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
    stored = {item["Key"] for item in s3.list_objects_v2(Bucket=s3.bucket)["Contents"]}
    assert {f"runs/{run_id}/{name}" for name in ("model.pt", "model.ts", "mask.json", "metrics.csv")} <= stored
    assert not any("/checkpoint/" in name for name in stored)  # only needed while it trained
    model = alice_api.get(f"/api/runs/{run_id}/model.pt")  # streamed from the bucket
    assert model.status_code == 200 and len(b"".join(model.streaming_content)) == int(model["Content-Length"])

    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/runs/{run_id}/").status_code == 204
        assert alice_api.delete(f"/api/datasets/{dataset.pk}/").status_code == 204
    assert s3.list_objects_v2(Bucket=s3.bucket).get("KeyCount") == 0 and not cached.exists()


def test_a_run_resumes_on_another_host_from_the_checkpoint_in_the_bucket(
        alice: Any, digits: Any, s3: Any, settings: Any, tmp_path: Path, caplog: Any) -> None:
    import logging

    import masksel_core
    from jobs import run_files, services
    from jobs.models import EpochMetric, Run
    from jobs.training import execute_next
    from masksel_core import TrainConfig

    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=3, batch_size=256, device="cpu",
                         warmup_epochs=1, finalize_epochs=0)
    run = Run.objects.create(owner=alice, dataset=digits, config=config.to_dict(), total_epochs=4)
    done: list[int] = []

    def record(epoch: Any) -> None:  # host A records two epochs, then is lost mid-way through the third
        services.run_record_epoch(run, epoch)
        done.append(epoch.epoch)

    masksel_core.train(config, masksel_core.load_dataset("digits", seed=0), on_epoch=record,
                       should_stop=lambda: len(done) >= 2, checkpoint_dir=run.artifact_dir / run_files.CHECKPOINT,
                       on_checkpoint=lambda: run_files.publish(run.pk, [run_files.CHECKPOINT]))
    assert run_files.exists(run.pk, "checkpoint/checkpoint.pt")
    settings.MASKSEL_FILE_CACHE = tmp_path / "host-b-cache"  # host B: nothing of the run on its disk
    with caplog.at_level(logging.WARNING, logger="jobs.training"):
        assert execute_next(worker="host-b:1") == "succeeded"
    assert f"resuming run {run.pk} from its checkpoint" in caplog.text
    assert list(EpochMetric.objects.filter(run=run).values_list("epoch", flat=True)) == [1, 2, 3, 4]
    assert run_files.exists(run.pk, "model.pt") and not run_files.exists(run.pk, "checkpoint/checkpoint.pt")


def test_the_storage_check_names_the_bucket_and_why(s3: Any, settings: Any) -> None:
    import pytest
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("masksel_check_storage")  # the bucket answers
    settings.AWS_STORAGE_BUCKET_NAME = "masksel-no-such-bucket"
    with pytest.raises(CommandError, match="bucket 'masksel-no-such-bucket' at http://127.0.0.1:\\d+: it does not"):
        call_command("masksel_check_storage")
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.STORAGES = {**settings.STORAGES}  # a new storage object, as a process started with these settings
    with pytest.raises(CommandError, match="cannot be reached: Could not connect to the endpoint URL"):
        call_command("masksel_check_storage")

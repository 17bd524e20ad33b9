"""Data sets on object storage (MASKSEL_STORAGE=s3) against a real S3 HTTP endpoint (moto's server)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rest_framework.test import APIClient

from jobs import worker_services
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
    kept = f"previews/{dataset.pk}-{Path(dataset.file.name).stem}.json"  # kept in the bucket, for every web host
    assert kept in [item["Key"] for item in s3.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert alice_api.get(f"/api/datasets/{dataset.pk}/preview/").json() == preview
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
    streamed = b"".join(model.streaming_content)
    assert model.status_code == 200 and len(streamed) == int(model["Content-Length"])
    settings.MASKSEL_PRESIGNED_DOWNLOADS = True  # or a redirect to the bucket itself, signed for a while
    redirect = alice_api.get(f"/api/runs/{run_id}/model.pt")
    assert redirect.status_code == 302 and "Signature" in redirect["Location"]
    import httpx
    signed = httpx.get(redirect["Location"])
    assert signed.status_code == 200 and signed.content == streamed
    assert f'filename="run{run_id}-model.pt"' in signed.headers["content-disposition"]
    assert signed.headers["content-type"] == "application/octet-stream"  # as the API says it, not guessed
    assert httpx.get(redirect["Location"].split("?")[0]).status_code == 403  # not without the signature
    assert alice_api.get(f"/api/runs/{run_id}/mask.png").status_code == 200  # made now: never redirected

    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/runs/{run_id}/").status_code == 204
        assert alice_api.delete(f"/api/datasets/{dataset.pk}/").status_code == 204
    assert s3.list_objects_v2(Bucket=s3.bucket).get("KeyCount") == 0 and not cached.exists()


def test_a_run_resumes_on_another_host_from_the_checkpoint_in_the_bucket(
        alice: Any, digits: Any, s3: Any, settings: Any, tmp_path: Path, caplog: Any) -> None:
    import logging

    import masksel_core
    from jobs import run_files, worker_services
    from jobs.models import EpochMetric, Run
    from jobs.training import execute_next
    from masksel_core import TrainConfig

    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=3, batch_size=256, device="cpu",
                         warmup_epochs=1, finalize_epochs=0)
    run = Run.objects.create(owner=alice, dataset=digits, config=config.to_dict(), total_epochs=4)
    done: list[int] = []

    def record(epoch: Any) -> None:  # host A records two epochs, then is lost mid-way through the third
        worker_services.run_record_epoch(run, epoch)
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
    from botocore.config import Config

    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.AWS_S3_CLIENT_CONFIG = Config(retries={"max_attempts": 1})  # refused at once, not after 4 backoffs
    settings.STORAGES = {**settings.STORAGES}  # a new storage object, as a process started with these settings
    with pytest.raises(CommandError, match="cannot be reached: Could not connect to the endpoint URL"):
        call_command("masksel_check_storage")


def test_a_bucket_lost_mid_run_gives_the_run_back_with_the_reason_and_keeps_what_is_stored(
        alice: Any, digits: Any, s3: Any, settings: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """The S3 endpoint freezes (SIGSTOP: connections hang, as with a host gone) after the second epoch: the run
    goes back to the queue with the reason, waits, and resumes once the endpoint answers again."""
    import os
    import signal
    import time

    import boto3
    from botocore.config import Config

    from jobs import run_files, selectors
    from jobs.models import EpochMetric
    from jobs.training import execute_next
    from tests.conftest import start_s3_server
    from tests.jobs.conftest import after_recording, worker_run

    with (tmp_path / "moto.log").open("wb") as log:
        url, server = start_s3_server(log)
    try:
        boto3.client("s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket=s3.bucket)
        settings.AWS_S3_ENDPOINT_URL = url
        settings.AWS_S3_CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})
        settings.STORAGES = {**settings.STORAGES}  # a storage with these settings
        settings.MASKSEL_STORAGE_RETRY_SECONDS = 1
        run = worker_run(alice, digits)

        def freeze(row: Any) -> None:
            if run_files.exists(run.pk, "checkpoint/checkpoint.pt"):
                os.kill(server.pid, signal.SIGSTOP)

        record = worker_services.run_record_epoch  # the second host records as it is
        after_recording(monkeypatch, 2, freeze)
        assert execute_next(worker="host-a:1") == "queued"
        run.refresh_from_db()
        assert [retry["attempt"] for retry in run.retries] == [1] and run.error == ""
        assert "storage unreachable" in run.retries[0]["reason"] and s3.bucket in run.retries[0]["reason"]
        assert run.retry_after is not None and selectors.next_queued_run_id() is None  # waits its time
        assert list(EpochMetric.objects.filter(run=run).values_list("epoch", flat=True)) == [1, 2]

        os.kill(server.pid, signal.SIGCONT)
        assert run_files.exists(run.pk, "checkpoint/checkpoint.pt")  # what was stored is still there
        time.sleep(1.1)
        monkeypatch.setattr(worker_services, "run_record_epoch", record)
        settings.MASKSEL_FILE_CACHE = tmp_path / "host-b-cache"
        assert execute_next(worker="host-b:1") == "succeeded"
        run.refresh_from_db()
        assert run.attempts == 2 and run_files.exists(run.pk, "model.pt")
        assert list(EpochMetric.objects.filter(run=run).values_list("epoch", flat=True)) == [1, 2, 3, 4]
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=10)


def test_a_run_given_back_too_often_fails_with_the_reason(alice: Any, digits: Any, settings: Any) -> None:
    from jobs.models import Run

    run = Run.objects.create(owner=alice, dataset=digits, config={}, status="running", lease_owner="w:1",
                             attempts=settings.MASKSEL_MAX_ATTEMPTS)
    assert worker_services.run_retry_later(run.pk, worker="someone-else:2", reason="storage unreachable (x)",
                                    max_attempts=settings.MASKSEL_MAX_ATTEMPTS, after_seconds=1) == "running"
    assert worker_services.run_retry_later(run.pk, worker="w:1", reason="storage unreachable (x)",
                                    max_attempts=settings.MASKSEL_MAX_ATTEMPTS, after_seconds=1) == "failed"
    run.refresh_from_db()
    assert run.error == f"storage unreachable (x); gave up after {settings.MASKSEL_MAX_ATTEMPTS} attempts"
    assert run.retries[-1]["reason"] == "storage unreachable (x)"

"""POST /api/datasets/ with a uri: zarr stores registered where they lie, inside the operator's roots only."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from jobs.models import Dataset, Run
from masksel_core import load_dataset
from masksel_core.data.convert import convert
from masksel_core.transfer.packing import full_plan, unpack
from tests.conftest import make_npz

# A mask that starts on channels 0 and 2 (the class is in channel 0) and keeps them through two short epochs.
RUN = {"mask_type": "channel-any", "model": "mlp", "epochs": 2, "batch_size": 32, "model_lr": 1e-3,
       "device": "cpu", "warmup_epochs": 2, "finalize_epochs": 1, "init_selected": [0, 2]}


@pytest.fixture
def roots(tmp_path: Path, settings: Any) -> Path:
    root = tmp_path / "stores"
    root.mkdir()
    settings.MASKSEL_DATA_ROOTS = [str(root), "s3://allowed-bucket/sets/"]
    return root


@pytest.fixture
def store(roots: Path, tmp_path: Path) -> Path:
    """120 samples of 4 channels 6x6, the class in channel 0, no x_test (a held-out test split)."""
    path = roots / "four.zarr"
    convert(str(make_npz(tmp_path / "four.npz", n=120, channels=4, size=6)), str(path))
    return path


def test_a_store_inside_a_root_is_registered_without_copying(alice_api: APIClient, store: Path,
                                                            bob_api: APIClient) -> None:
    response = alice_api.post("/api/datasets/", {"name": "four", "uri": str(store)}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["uri"] == str(store) and body["input_shape"] == [4, 6, 6] and body["num_classes"] == 3
    assert (body["num_train"], body["num_test"], body["test_held_out"]) == (96, 24, True)
    row = Dataset.objects.get(pk=body["id"])
    assert not row.file and row.size_bytes == 0 and row.source == str(store)
    assert [d["name"] for d in alice_api.get("/api/datasets/").json() if d["uri"]] == ["four"]
    assert bob_api.get(f"/api/datasets/{row.pk}/").status_code == 404
    preview = alice_api.get(f"/api/datasets/{row.pk}/preview/").json()
    assert preview["channels_total"] == 4 and [s["label"] for s in preview["samples"]] == [0, 1, 2]


def test_the_name_defaults_to_the_stores(alice_api: APIClient, store: Path) -> None:
    response = alice_api.post("/api/datasets/", {"uri": str(store) + "/"}, format="json")
    assert response.status_code == 201 and response.json()["name"] == "four"
    again = alice_api.post("/api/datasets/", {"uri": str(store)}, format="json")
    assert again.status_code == 400 and "already named 'four'" in again.json()["error"]


def test_uris_outside_the_roots_are_refused_before_anything_is_read(
        alice_api: APIClient, roots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside.zarr"
    convert(str(make_npz(tmp_path / "o.npz")), str(outside))  # a valid store, but not where users may point
    (roots / "link.zarr").symlink_to(outside, target_is_directory=True)
    opened: list[str] = []
    monkeypatch.setattr("jobs.dataset_services.load_store", lambda uri, **kw: opened.append(uri))
    for uri in (str(outside), f"{roots}/../outside.zarr", str(roots / "link.zarr"), "s3://other-bucket/sets/a.zarr",
                "s3://allowed-bucket/elsewhere/a.zarr", "s3://allowed-bucket/sets/../x/a.zarr"):
        response = alice_api.post("/api/datasets/", {"uri": uri}, format="json")
        assert response.status_code == 400, uri
        assert "must lie inside one of the allowed data roots" in response.json()["error"]
        assert "MASKSEL_DATA_ROOTS" in response.json()["error"]
    for uri, needle in (("relative/set.zarr", "absolute path"), (str(roots / "set.npz"), "must name a zarr store"),
                        ("", "uri: This field may not be blank")):
        response = alice_api.post("/api/datasets/", {"uri": uri}, format="json")
        assert response.status_code == 400 and needle in response.json()["error"], uri
    assert opened == [] and not Dataset.objects.filter(uri__contains="outside").exists()


def test_a_bad_store_inside_a_root_is_refused_with_the_problem_named(alice_api: APIClient, roots: Path,
                                                                      tmp_path: Path) -> None:
    convert(str(make_npz(tmp_path / "s.npz")), str(roots / "cut.zarr"))
    for chunk in (roots / "cut.zarr" / "x_train" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()
            break
    response = alice_api.post("/api/datasets/", {"uri": str(roots / "cut.zarr")}, format="json")
    assert response.status_code == 400 and "chunks" in response.json()["error"]
    response = alice_api.post("/api/datasets/", {"uri": str(roots / "none.zarr")}, format="json")
    assert response.status_code == 400 and "no zarr store there" in response.json()["error"]
    assert not Dataset.objects.exclude(builtin__gt="").exists()


def test_a_store_in_an_allowed_bucket_is_registered(alice_api: APIClient, settings: Any, s3_endpoint: str,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    import boto3

    bucket = f"sets-{uuid.uuid4().hex[:8]}"
    for key, value in {"AWS_S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_S3_REGION_NAME": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    settings.MASKSEL_DATA_ROOTS = [f"s3://{bucket}/sets/"]
    uri = f"s3://{bucket}/sets/small.zarr"
    convert(str(make_npz(tmp_path / "s.npz", n=90)), uri)
    response = alice_api.post("/api/datasets/", {"uri": uri}, format="json")
    assert response.status_code == 201 and response.json()["num_train"] == 72
    samples = alice_api.get(f"/api/datasets/{response.json()['id']}/samples/?count=5")
    assert samples.status_code == 200 and int(samples["X-Masksel-Bytes-Read"]) > 0


def test_a_run_on_a_streamed_store_trains_and_serves_only_its_channels(
        alice_api: APIClient, store: Path, django_capture_on_commit_callbacks: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKSEL_MEMORY_BUDGET", "1K")  # the worker streams it
    dataset = alice_api.post("/api/datasets/", {"uri": str(store)}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        created = alice_api.post("/api/runs/", {"dataset": dataset["id"], **RUN}, format="json")
    run = Run.objects.get(pk=created.json()["id"])
    assert run.status == "succeeded", run.error
    assert run.epochs.count() >= 4 and run.fraction == pytest.approx(0.5)
    base = f"/api/datasets/{dataset['id']}/samples/"
    whole = alice_api.get(f"{base}?count=24")
    masked = alice_api.get(f"{base}?run={run.pk}&count=24")
    assert masked.status_code == 200, masked.content
    batch = unpack(masked.content)
    kept = batch.plan.kept_channels()
    assert kept == [0, 2]
    data = load_dataset(str(store), seed=0, budget=2**30)
    assert np.array_equal(batch.x.numpy(), data.x_test[:24].numpy() * batch.plan.keep)
    assert np.array_equal(unpack(whole.content, full_plan((4, 6, 6))).x.numpy(), data.x_test[:24].numpy())
    # only the kept channels' chunks are read (the store holds one chunk per channel here)
    ratio = int(masked["X-Masksel-Bytes-Read"]) / int(whole["X-Masksel-Bytes-Read"])
    assert 0.4 <= ratio <= 0.6


def test_a_run_whose_store_vanishes_goes_back_to_the_queue(alice_api: APIClient, store: Path, settings: Any,
                                                            django_capture_on_commit_callbacks: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import masksel_core

    monkeypatch.setenv("MASKSEL_MEMORY_BUDGET", "1K")
    settings.MASKSEL_STORAGE_RETRY_SECONDS = 3600
    dataset = alice_api.post("/api/datasets/", {"uri": str(store)}, format="json").json()
    original = masksel_core.train

    def train_then_lose(config: Any, data: Any, **kwargs: Any) -> Any:
        epoch = kwargs["on_epoch"]

        def lose_after_first(record: Any) -> None:
            epoch(record)
            if record.epoch == 1:
                shutil.rmtree(store / "x_train" / "c")

        return original(config, data, **{**kwargs, "on_epoch": lose_after_first})

    monkeypatch.setattr("jobs.training.masksel_core.train", train_then_lose)
    with django_capture_on_commit_callbacks(execute=True):
        created = alice_api.post("/api/runs/", {"dataset": dataset["id"], **RUN}, format="json")
    run = Run.objects.get(pk=created.json()["id"])
    assert run.status == "queued" and run.retry_after is not None
    assert "data set store unreachable" in run.retries[-1]["reason"] and os.fspath(store) in run.retries[-1]["reason"]
    assert run.epochs.count() == 1
    shutil.rmtree(run.artifact_dir)  # its checkpoint would be taken up by a later test's run of the same id


def test_a_contiguous_split_names_its_chunk_so_clients_align_their_pages(alice_api: APIClient, roots: Path,
                                                                         store: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "split.npz", x_train=rng.random((100, 2, 4, 4), dtype=np.float32),
             y_train=np.arange(100) % 2, x_test=rng.random((40, 2, 4, 4), dtype=np.float32), y_test=np.arange(40) % 2)
    convert(str(tmp_path / "split.npz"), str(roots / "split.zarr"))
    split = alice_api.post("/api/datasets/", {"uri": str(roots / "split.zarr")}, format="json").json()
    response = alice_api.get(f"/api/datasets/{split['id']}/samples/?count=8")
    assert response["X-Masksel-Chunk-Samples"] == "40"
    held_out = alice_api.post("/api/datasets/", {"uri": str(store)}, format="json").json()
    assert "X-Masksel-Chunk-Samples" not in alice_api.get(f"/api/datasets/{held_out['id']}/samples/?count=8")


def test_a_registered_store_is_deleted_without_touching_it(alice_api: APIClient, store: Path,
                                                           django_capture_on_commit_callbacks: Any) -> None:
    from jobs.selectors import preview_name

    first = alice_api.post("/api/datasets/", {"uri": str(store)}, format="json").json()
    assert alice_api.get(f"/api/datasets/{first['id']}/preview/").status_code == 200
    name = preview_name(Dataset.objects.get(pk=first["id"]))
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/datasets/{first['id']}/").status_code == 204
    assert (store / "zarr.json").is_file()  # the store stays where it lies
    from django.core.files.storage import default_storage

    assert not default_storage.exists(name)
    assert "store-" in name and str(first["id"]) in name


def test_uris_with_chains_queries_or_link_loops_are_refused(alice_api: APIClient, roots: Path) -> None:
    (roots / "loop.zarr").symlink_to(roots / "loop.zarr")
    for uri in (f"simplecache::{roots}/x.zarr", "s3://allowed-bucket/sets/a.zarr?versionId=1",
                "s3://allowed-bucket/sets/a.zarr#x", str(roots / "loop.zarr")):
        response = alice_api.post("/api/datasets/", {"uri": uri}, format="json")
        assert response.status_code == 400 and "allowed data roots" in response.json()["error"], uri


def test_samples_of_a_store_gone_since_answer_503(alice_api: APIClient, store: Path) -> None:
    import shutil

    dataset = alice_api.post("/api/datasets/", {"uri": str(store)}, format="json").json()
    shutil.rmtree(store / "x_train" / "c")
    response = alice_api.get(f"/api/datasets/{dataset['id']}/samples/?count=4")
    assert response.status_code == 503 and "no longer reads" in response.json()["error"]

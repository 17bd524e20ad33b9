"""`/api/runs/` and `/api/runs/<id>/...`: submit, read, change, delete, download; starting from another run."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from rest_framework.test import APIClient

from tests.conftest import make_npz
from tests.jobs.conftest import FAST


def test_a_run_over_rest_trains_and_serves_its_files(alice_api: APIClient, digits: Any,
                                                     django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        created = alice_api.post("/api/runs/", {"dataset": digits.pk, **FAST}, format="json")
    assert created.status_code == 201 and created.json()["status"] == "queued"
    run_id = created.json()["id"]
    detail = alice_api.get(f"/api/runs/{run_id}/").json()
    assert detail["status"] == "succeeded" and detail["epoch"] == 3 and detail["config"]["epochs"] == 2
    assert detail["phase"] == "select" and 0.5 < detail["test_accuracy"] <= 1 and detail["warnings"] == []
    metrics = alice_api.get(f"/api/runs/{run_id}/metrics/").json()
    assert [(m["epoch"], m["phase"]) for m in metrics] == [(1, "warmup"), (2, "select"), (3, "select")]
    assert set(metrics[0]) == {"epoch", "task_loss", "mask_loss", "val_accuracy", "lambda", "tau", "fraction",
                               "phase"}
    npy = alice_api.get(f"/api/runs/{run_id}/mask.npy")
    assert npy.status_code == 200 and int(npy["Content-Length"]) == len(npy.content)
    assert np.load(io.BytesIO(npy.content)).shape == (1, 8, 8)
    first = alice_api.get(f"/api/runs/{run_id}/mask.json?epoch=1").json()
    assert first["mask_type"] == "pixel-any" and first["input_shape"] == [1, 8, 8]
    summary = alice_api.get(f"/api/runs/{run_id}/summary.json")
    assert json.loads(b"".join(summary.streaming_content))["test_accuracy"] == detail["test_accuracy"]
    model = alice_api.get(f"/api/runs/{run_id}/model.pt")
    assert model.status_code == 200 and int(model["Content-Length"]) > 1000
    # Said, not guessed from the name (the system's tables call .pt a SNES page table, .ts a Qt translation).
    types = {name: alice_api.get(f"/api/runs/{run_id}/{name}")["Content-Type"] for name in
             ("model.pt", "model.ts", "metrics.csv", "summary.json")}
    assert types == {"model.pt": "application/octet-stream", "model.ts": "application/octet-stream",
                     "metrics.csv": "text/csv", "summary.json": "application/json"}
    bundle = alice_api.get(f"/api/runs/{run_id}/bundle.zip")
    names = zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    assert {"mask.npy", "mask.json", "mask.png", "model.pt", "model.ts", "metrics.csv", "config.json",
            "summary.json", "README.txt"} <= set(names)
    png = alice_api.get(f"/api/runs/{run_id}/mask.png?epoch=1")
    assert png.status_code == 200 and png["Content-Type"] == "image/png" and png.content[:4] == b"\x89PNG"
    names = {alice_api.get(f"/api/runs/{run_id}/{name}")["Content-Disposition"] for name in
             ("mask.json", "mask.npy", "mask.png")}  # one naming for every format of the final mask
    assert names == {f'attachment; filename="run{run_id}-mask.{kind}"' for kind in ("json", "npy", "png")}
    assert f"run{run_id}-epoch1-mask.png" in png["Content-Disposition"]
    scripted = alice_api.get(f"/api/runs/{run_id}/model.ts")
    import torch

    net = torch.jit.load(io.BytesIO(b"".join(scripted.streaming_content)))
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert alice_api.get(f"/api/runs/{run_id}/mask.json?epoch=9").status_code == 404
    assert alice_api.get(f"/api/runs/{run_id}/mask.json?epoch=x").json()["error"].startswith("epoch must be")


def test_bad_run_bodies_answer_400_with_an_error(alice_api: APIClient, digits: Any) -> None:
    for body, needle in (
        ({"dataset": digits.pk, "mask_type": "nope"}, "unknown mask type"),
        ({"dataset": digits.pk, "epochs": "many"}, "epochs must be an integer"),
        ({"mask_type": "pixel-any"}, "dataset is required"),
        ([1, 2], "JSON object"),
    ):
        response = alice_api.post("/api/runs/", body, format="json")
        assert response.status_code == 400 and needle in response.json()["error"], response.json()
    garbled = alice_api.post("/api/runs/", "{not json", content_type="application/json")
    assert garbled.status_code == 400 and "error" in garbled.json()


def test_another_users_run_is_404_everywhere(alice_api: APIClient, bob_api: APIClient, digits: Any) -> None:
    run_id = alice_api.post("/api/runs/", {"dataset": digits.pk, **FAST}, format="json").json()["id"]
    for suffix in ("", "metrics/", "mask.json", "mask.npy", "model.pt", "bundle.zip"):
        assert bob_api.get(f"/api/runs/{run_id}/{suffix}").status_code == 404, suffix
    assert bob_api.post(f"/api/runs/{run_id}/cancel/").status_code == 404
    assert bob_api.get("/api/runs/").json() == []
    assert alice_api.post(f"/api/runs/{run_id}/cancel/").json()["status"] == "cancelled"


def test_a_finished_chain_runs_mask_json_lists_every_stage(alice_api: APIClient, digits: Any,
                                                          django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run_id = alice_api.post("/api/runs/", {"dataset": digits.pk, "mask_type": "jpeg-xor+pixel-any",
                                               "model": "mlp", "epochs": 1, "warmup_epochs": 1,
                                               "finalize_epochs": 0}, format="json").json()["id"]
    document = alice_api.get(f"/api/runs/{run_id}/mask.json").json()
    assert [s["mask_type"] for s in document["stages"]] == ["extend", "channel-xor", "merge", "pixel-any"]
    assert np.array(document["selected"]).shape == (1, 8, 8)
    one_epoch = alice_api.get(f"/api/runs/{run_id}/mask.json?epoch=2").json()
    assert one_epoch["selected"] == document["selected"] and "stages" not in one_epoch


def test_a_run_without_a_mask_gets_one_that_fits_its_data(alice_api: APIClient, digits: Any,
                                                         tmp_path: Path) -> None:
    one_channel = alice_api.post("/api/runs/", {"dataset": digits.pk, "epochs": 1}, format="json").json()["id"]
    assert alice_api.get(f"/api/runs/{one_channel}/").json()["config"]["mask_type"] == "pixel-any"
    with make_npz(tmp_path / "two.npz").open("rb") as handle:
        two = alice_api.post("/api/datasets/", {"file": handle, "name": "two"}, format="multipart").json()["id"]
    several = alice_api.post("/api/runs/", {"dataset": two, "epochs": 1}, format="json").json()["id"]
    assert alice_api.get(f"/api/runs/{several}/").json()["config"]["mask_type"] == "channel-any"
    refused = alice_api.post("/api/runs/", {"dataset": digits.pk, "mask_type": "channel-any"}, format="json")
    assert refused.status_code == 400 and "single channel" in refused.json()["error"]


def test_a_run_whose_mask_ends_empty_says_so(alice_api: APIClient, digits: Any,
                                             django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run_id = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "epochs": 12, "lambda_init": 50.0,
                                               "mask_lr": 0.2}, format="json").json()["id"]
    detail = alice_api.get(f"/api/runs/{run_id}/").json()
    assert detail["status"] == "succeeded" and detail["fraction"] == 0.0
    assert any("keeps nothing" in w for w in detail["warnings"]) and any("near chance" in w for w in detail["warnings"])


def test_a_huge_json_body_is_refused_with_413(alice_api: APIClient, digits: Any) -> None:
    body = json.dumps({"dataset": digits.pk, "mask_type": "pixel-any", "pad": "x" * (11 * 1024**2)})
    response = alice_api.post("/api/runs/", body, content_type="application/json")
    assert response.status_code == 413 and "larger than" in response.json()["error"]


def test_tags_and_notes_can_be_changed_and_nothing_else(alice_api: APIClient, digits: Any) -> None:
    run_id = alice_api.post("/api/runs/", {"dataset": digits.pk, **FAST}, format="json").json()["id"]
    changed = alice_api.patch(f"/api/runs/{run_id}/", {"tags": ["baseline", "baseline", " pixel "],
                                                       "notes": "first try"}, format="json")
    assert changed.status_code == 200 and changed.json()["tags"] == ["baseline", "pixel"]
    assert alice_api.get(f"/api/runs/{run_id}/").json()["notes"] == "first try"
    for body, needle in (({"status": "succeeded"}, "only name, tags, notes and priority"),
                         ({"tags": "x"}, "list of non-empty"), ({"tags": ["x" * 51]}, "at most 20 tags"),
                         ({"notes": 5}, "notes must be text")):
        response = alice_api.patch(f"/api/runs/{run_id}/", body, format="json")
        assert response.status_code == 400 and needle in response.json()["error"], body


def test_deleting_a_run_removes_its_rows_and_files_but_not_while_it_runs(
        alice_api: APIClient, digits: Any, django_capture_on_commit_callbacks: Any) -> None:
    from jobs import worker_services
    from jobs.models import EpochMetric, Run

    with django_capture_on_commit_callbacks(execute=True):
        run_id = alice_api.post("/api/runs/", {"dataset": digits.pk, **FAST}, format="json").json()["id"]
    directory = Path(Run.objects.get(pk=run_id).artifact_dir)
    assert directory.is_dir() and EpochMetric.objects.filter(run_id=run_id).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/runs/{run_id}/").status_code == 204
    assert not Run.objects.filter(pk=run_id).exists() and not EpochMetric.objects.filter(run_id=run_id).exists()
    assert not directory.exists()
    other = alice_api.post("/api/runs/", {"dataset": digits.pk, **FAST}, format="json").json()["id"]
    worker_services.run_start(other, worker="w:1", device="cpu")
    refused = alice_api.delete(f"/api/runs/{other}/")
    assert refused.status_code == 400 and "cancel it before deleting" in refused.json()["error"]


def test_the_run_list_api_costs_the_same_queries_for_many_runs(alice_api: APIClient, alice: Any, digits: Any,
                                                                django_assert_max_num_queries: Any) -> None:
    from jobs.models import Run

    runs = [Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=1)
            for _ in range(60)]
    with django_assert_max_num_queries(4):
        assert len(alice_api.get("/api/runs/").json()) == 60
    picked = alice_api.get(f"/api/runs/?ids={runs[0].pk},{runs[3].pk}").json()
    assert sorted(r["id"] for r in picked) == sorted([runs[0].pk, runs[3].pk])
    for bad in (f"{runs[0].pk},x", "", "0"):  # not ids, none, not a run's id
        refused = alice_api.get(f"/api/runs/?ids={bad}")
        assert refused.status_code == 400 and "ids must be" in refused.json()["error"], bad


def test_a_server_path_as_pretrained_is_refused_over_rest(alice_api: APIClient, digits: Any) -> None:
    for path in ("/etc/passwd", "var/media/runs/1/model.pt"):
        response = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "pretrained": path}, format="json")
        assert response.status_code == 400 and "for the command line only" in response.json()["error"]
    saved = alice_api.post("/api/configs/", {"name": "sneaky", "config": {"pretrained": "/etc/passwd"}}, format="json")
    assert saved.status_code == 400 and "not a starting network" in saved.json()["error"]


def test_a_run_starts_from_one_of_the_callers_succeeded_runs(
        alice_api: APIClient, bob_api: APIClient, digits: Any, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk}, format="json").json()["id"]
    for who, source, needle in ((bob_api, first, "is not one of your succeeded runs"),
                                (alice_api, 999999, "is not one of your succeeded runs"),
                                (alice_api, "1", "must be the id")):
        refused = who.post("/api/runs/", {**FAST, "dataset": digits.pk, "pretrained_run": source}, format="json")
        assert refused.status_code == 400 and needle in refused.json()["error"], refused.json()
    other_model = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "model": "lenet5",
                                                "pretrained_run": first}, format="json")
    assert other_model.status_code == 400 and "trained mlp on input [1, 8, 8]" in other_model.json()["error"]
    with django_capture_on_commit_callbacks(execute=True):
        second = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "pretrained_run": first},
                                format="json").json()["id"]
    detail = alice_api.get(f"/api/runs/{second}/").json()
    assert detail["status"] == "succeeded" and detail["pretrained_run"] == first
    assert detail["config"]["pretrained"] is None  # no path of the server in what the API shows
    phases = [m["phase"] for m in alice_api.get(f"/api/runs/{second}/metrics/").json()]
    assert phases == ["select", "select"]  # no warm-up: it starts from the first run's network
    first_metrics = alice_api.get(f"/api/runs/{first}/metrics/").json()
    assert alice_api.get(f"/api/runs/{second}/summary.json").status_code == 200
    assert first_metrics[0]["phase"] == "warmup"


def test_the_copy_of_a_pretrained_network_counts_against_storage(
        alice_api: APIClient, alice: Any, digits: Any, settings: Any,
        django_capture_on_commit_callbacks: Any) -> None:
    from jobs import selectors
    from jobs.models import Run

    with django_capture_on_commit_callbacks(execute=True):
        first = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk}, format="json").json()["id"]
    weights = (Run.objects.get(pk=first).artifact_dir / "model.pt").stat().st_size
    settings.MASKSEL_MAX_STORAGE_BYTES = selectors.storage_used(alice) + weights - 1
    refused = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "pretrained_run": first}, format="json")
    assert refused.status_code == 400 and "the copy of pretrained_run's network adds" in refused.json()["error"]
    assert Run.objects.filter(owner=alice).count() == 1
    settings.MASKSEL_MAX_STORAGE_BYTES = 10 ** 12
    created = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "pretrained_run": first}, format="json")
    second = Run.objects.get(pk=created.json()["id"])
    assert second.artifact_bytes == weights  # counted from submission, while it waits in the queue
    Run.objects.filter(pk=second.pk).update(status="cancelled")
    requeued = alice_api.post("/api/runs/batch/", {"action": "requeue", "ids": [second.pk]}, format="json").json()
    third = Run.objects.get(pk=requeued["created"][str(second.pk)])
    assert third.pretrained_from == first and third.artifact_bytes == weights  # its own copy, counted too


def test_a_requeued_run_starts_from_its_own_copy_when_its_source_is_gone(
        alice_api: APIClient, digits: Any, django_capture_on_commit_callbacks: Any) -> None:
    """The copy beside a run is kept for this: its source run may be deleted before the run is requeued."""
    from jobs import run_files
    from jobs.models import Run

    with django_capture_on_commit_callbacks(execute=True):
        first = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk}, format="json").json()["id"]
    second = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "pretrained_run": first},
                            format="json").json()["id"]
    Run.objects.filter(pk=second).update(status="cancelled")
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/runs/{first}/").status_code == 204
    requeued = alice_api.post("/api/runs/batch/", {"action": "requeue", "ids": [second]}, format="json").json()
    assert requeued["results"][str(second)] == "ok", requeued
    third = Run.objects.get(pk=requeued["created"][str(second)])
    assert third.pretrained_from == first and run_files.exists(third.pk, "pretrained.pt")

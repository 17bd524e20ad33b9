"""GET /api/datasets/<id>/samples/: whole samples, or only what a run's trained mask selects."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from jobs.models import Run
from masksel_core import load_dataset
from masksel_core.transfer.packing import full_plan, unpack

RUN = {"mask_type": "pixel-any", "model": "mlp", "epochs": 3, "batch_size": 64, "model_lr": 1e-3,
       "lambda_init": 1.0, "device": "cpu", "warmup_epochs": 2, "finalize_epochs": 1}


@pytest.fixture
def trained(alice_api: APIClient, digits: Any, django_capture_on_commit_callbacks: Any) -> Run:
    with django_capture_on_commit_callbacks(execute=True):
        created = alice_api.post("/api/runs/", {"dataset": digits.pk, **RUN}, format="json")
    run = Run.objects.get(pk=created.json()["id"])
    assert run.status == "succeeded"
    return run


def test_whole_samples_come_with_labels_and_the_total(alice_api: APIClient, digits: Any) -> None:
    response = alice_api.get(f"/api/datasets/{digits.pk}/samples/?start=10&count=20")
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    assert int(response["Content-Length"]) == len(response.content)
    data = load_dataset("digits")
    assert int(response["X-Masksel-Total"]) == data.x_test.shape[0]
    batch = unpack(response.content, full_plan((1, 8, 8)))
    assert torch_equal(batch.x, data.x_test[10:30]) and batch.labels.tolist() == data.y_test[10:30].tolist()


def test_a_runs_samples_hold_only_what_its_mask_selects(alice_api: APIClient, digits: Any, trained: Run) -> None:
    masked = alice_api.get(f"/api/datasets/{digits.pk}/samples/?run={trained.pk}&count=300")
    full = alice_api.get(f"/api/datasets/{digits.pk}/samples/?count=300")
    batch = unpack(masked.content)
    keep = batch.plan.keep
    assert keep.mean() == pytest.approx(trained.fraction)
    assert masked["X-Masksel-Plan"] == batch.plan.plan_id
    data = load_dataset("digits", seed=0)
    assert torch_equal(batch.x, data.x_test[:300] * torch_from(keep))
    body_masked, body_full = 300 * keep.sum() * 4, 300 * 64 * 4
    assert body_masked <= len(masked.content) <= body_masked + 100 + 8 * 300
    assert body_full <= len(full.content) <= body_full + 100 + 8 * 300


def test_bad_requests_name_the_problem(alice_api: APIClient, digits: Any, trained: Run, alice: Any) -> None:
    base = f"/api/datasets/{digits.pk}/samples/"
    for query, needle in (("count=0", "count must be between 1 and 4096"), ("start=x", "start must be a whole"),
                          ("start=100000", "start must be between"), ("split=dev", "split must be train or test"),
                          ("dtype=int64", "dtype must be one of"), ("bogus=1", "unknown parameter(s): bogus")):
        response = alice_api.get(f"{base}?{query}")
        assert response.status_code == 400 and needle in response.json()["error"], query
    running = Run.objects.create(owner=alice, dataset=digits, config=trained.config, total_epochs=1,
                                 status="running")
    response = alice_api.get(f"{base}?run={running.pk}")
    assert response.status_code == 400 and "has no trained mask" in response.json()["error"]
    Run.objects.filter(pk=running.pk).update(status="succeeded")
    from jobs.dataset_services import dataset_seed_builtins

    remote = next(d for d in dataset_seed_builtins() if d.builtin == "synthetic-remote")
    response = alice_api.get(f"/api/datasets/{remote.pk}/samples/?run={trained.pk}")
    assert response.status_code == 400 and "trained on another data set" in response.json()["error"]


def test_another_users_run_cannot_be_used(bob_api: APIClient, digits: Any, trained: Run) -> None:
    response = bob_api.get(f"/api/datasets/{digits.pk}/samples/?run={trained.pk}")
    assert response.status_code == 404 and "error" in response.json()


def test_lossy_types_and_compression_shrink_the_payload(alice_api: APIClient, digits: Any) -> None:
    base = f"/api/datasets/{digits.pk}/samples/?count=200"
    sizes = {q: len(alice_api.get(f"{base}&{q}").content) for q in ("dtype=float32", "dtype=uint8", "compress=1")}
    assert sizes["dtype=uint8"] < sizes["dtype=float32"] / 3
    assert sizes["compress=1"] < sizes["dtype=float32"]


def torch_equal(a: Any, b: Any) -> bool:
    return bool((a == b).all())


def torch_from(keep: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(keep.astype(np.float32))


def test_the_run_page_shows_the_transfer_figures_and_the_curve_in_bytes(alice: Any, trained: Run) -> None:
    from django.test import Client

    client = Client()
    client.force_login(alice)
    page = client.get(f"/runs/{trained.pk}/").content.decode()
    summary = __import__("json").loads((trained.artifact_dir / "transfer.json").read_text())
    assert 'id="transfer"' in page and f"{summary['bytes_per_sample']:.1f}" in page
    assert summary["bytes_per_sample"] == pytest.approx(trained.fraction * 256)
    assert 'id="transfer-curve"' in page and page.count('"epoch":') == trained.epoch  # one point per epoch


def test_jpeg_samples_are_encoded_once_and_equal_packing_on_the_spot(alice_api: APIClient, alice: Any,
                                                                      digits: Any) -> None:
    import json

    from masksel_core.export import mask_document
    from masksel_core.masks.chain import build_chain
    from masksel_core.transfer.packing import pack, plan_from_chain

    chain = build_chain("jpeg-xor", (1, 8, 8))
    with __import__("torch").no_grad():
        chain.stages[0].logits[0, 3] = 9.0  # quality 30
    run = Run.objects.create(owner=alice, dataset=digits, config={**RUN, "mask_type": "jpeg-xor"}, total_epochs=1,
                             status="succeeded")
    run.artifact_dir.mkdir(parents=True, exist_ok=True)
    document = mask_document("jpeg-xor", (1, 8, 8), chain.selected(), chain.fraction(), chain.describe())
    (run.artifact_dir / "mask.json").write_text(json.dumps(document))
    url = f"/api/datasets/{digits.pk}/samples/?run={run.pk}&start=5&count=40"
    first, again = alice_api.get(url).content, alice_api.get(url).content
    data = load_dataset("digits", seed=0)
    assert first == again == pack(data.x_test[5:45], plan_from_chain(chain), labels=data.y_test[5:45])


def test_a_dynamic_runs_samples_are_picked_by_its_mask_network_on_the_server(
        alice_api: APIClient, alice: Any, digits: Any, django_capture_on_commit_callbacks: Any,
        tmp_path: Any) -> None:
    """The API takes the dynamic options; the server packs each sample's own cells; the client rebuilds with
    `unpack` alone, and the client network (model.ts) gives the run's own predictions."""
    import base64
    import io
    import json
    import zipfile

    import torch
    from django.test import Client

    options = {**RUN, "mask_type": "dynamic-block-any", "grid": [4, 4], "server_view": "4x4", "mask_net": "linear",
               "epochs": 4}
    with django_capture_on_commit_callbacks(execute=True):
        created = alice_api.post("/api/runs/", {"dataset": digits.pk, **options}, format="json")
    assert created.status_code == 201, created.json()
    run = Run.objects.get(pk=created.json()["id"])
    assert run.status == "succeeded", run.error
    assert alice_api.get(f"/api/runs/{run.pk}/").json()["config"]["server_view"] == [4, 4]

    response = alice_api.get(f"/api/datasets/{digits.pk}/samples/?run={run.pk}&count=300")
    assert response.status_code == 200, response.content[:300]
    batch = unpack(response.content)
    assert batch.plan.kind == "dynamic" and batch.x.shape == (300, 1, 8, 8)
    data = load_dataset("digits")
    mask_net = alice_api.get(f"/api/runs/{run.pk}/mask_net.ts")
    model = alice_api.get(f"/api/runs/{run.pk}/model.ts")
    (tmp_path / "mask_net.ts").write_bytes(b"".join(mask_net.streaming_content))
    (tmp_path / "model.ts").write_bytes(b"".join(model.streaming_content))
    cells = torch.jit.load(str(tmp_path / "mask_net.ts"))(data.x_test[:300])
    kept = batch.plan.expand_cells(cells.numpy())
    assert torch.equal(batch.x, data.x_test[:300] * torch.from_numpy(kept))  # each sample its own cells
    document = json.loads(alice_api.get(f"/api/runs/{run.pk}/mask.json").content)
    assert document["dynamic"]["cells"] == [1, 4, 4]
    client = torch.jit.load(str(tmp_path / "model.ts"))
    assert client(batch.x).shape == (300, 10)

    bundle = zipfile.ZipFile(io.BytesIO(alice_api.get(f"/api/runs/{run.pk}/bundle.zip").content))
    assert {"mask_net.ts", "model.ts"} <= set(bundle.namelist())
    assert "mask_net.ts runs on the server" in bundle.read("README.txt").decode()
    web = Client()
    web.force_login(alice)
    page = web.get(f"/runs/{run.pk}/")
    assert page.status_code == 200 and b"mask_net.ts (server mask network)" in page.content
    assert b'id="run-gallery"' in page.content and len(run.gallery["images"]) == 8  # drawn by the page's script
    from jobs.messages import epoch_fields

    message = epoch_fields(run, run.epochs.order_by("epoch").last())
    assert len(base64.b64decode(message["mask"]["frequency"])) == 16  # one byte per cell
    assert len(base64.b64decode(message["mask"]["gallery_bits"])) == 8 * 16 // 8
    with django_capture_on_commit_callbacks(execute=True):  # its files go: a later test's run may get its id
        assert alice_api.delete(f"/api/runs/{run.pk}/").status_code == 204


def test_whole_gives_a_runs_own_split_and_a_wire_type_never_clips(alice_api: APIClient, digits: Any,
                                                                   alice: Any) -> None:
    """A data set without its own test part is split by the run's seed: `whole` sends that split unmasked (the
    comparison `predict` prints), not seed 0's. A value the wire type cannot carry is refused, never clipped."""
    import io

    run = Run.objects.create(owner=alice, dataset=digits, config={**RUN, "seed": 7}, total_epochs=1,
                             status="succeeded")
    whole = alice_api.get(f"/api/datasets/{digits.pk}/samples/?run={run.pk}&whole=1&count=50")
    assert whole.status_code == 200, whole.content
    batch = unpack(whole.content, full_plan((1, 8, 8)))
    ours, seed_zero = load_dataset("digits", seed=7), load_dataset("digits", seed=0)
    assert torch_equal(batch.x, ours.x_test[:50]) and batch.labels.tolist() == ours.y_test[:50].tolist()
    assert not torch_equal(batch.x, seed_zero.x_test[:50])
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, x_train=(rng.random((120, 1, 4, 4)) * 10 - 3).astype(np.float32), y_train=np.arange(120) % 3)
    buffer.seek(0)
    uploaded = alice_api.post("/api/datasets/", {"file": buffer, "name": "wide range"}, format="multipart").json()
    refused = alice_api.get(f"/api/datasets/{uploaded['id']}/samples/?dtype=uint8")
    assert refused.status_code == 400 and "uint8 carries values in [0, 1]" in refused.json()["error"]
    assert alice_api.get(f"/api/datasets/{uploaded['id']}/samples/?dtype=float16").status_code == 200

"""`/api/datasets/`: uploads and what a refused one leaves behind (samples: `test_samples.py`)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from rest_framework.test import APIClient

from tests.conftest import make_npz


def test_upload_returns_the_contract_fields(alice_api: APIClient, tmp_path: Path) -> None:
    path = make_npz(tmp_path / "d.npz")
    with path.open("rb") as handle:
        response = alice_api.post("/api/datasets/", {"file": handle, "name": "mine"}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {k: body[k] for k in ("name", "input_shape", "num_classes", "num_train", "num_test")} == {
        "name": "mine", "input_shape": [2, 6, 6], "num_classes": 3, "num_train": 96, "num_test": 24}


def test_a_bad_upload_answers_400_naming_the_problem(alice_api: APIClient, tmp_path: Path) -> None:
    response = alice_api.post("/api/datasets/", {"file": io.BytesIO(b"not a zip"), "name": "x"}, format="multipart")
    assert response.status_code == 400 and "not an .npz" in response.json()["error"]
    missing = alice_api.post("/api/datasets/", {"name": "x"}, format="multipart")
    assert missing.status_code == 400 and "file is required" in missing.json()["error"]


def test_uploads_refused_for_any_reason_leave_no_file_behind(alice_api: APIClient, tmp_path: Path,
                                                             settings: Any) -> None:
    bad = [b"", b"PK\x03\x04garbage", make_npz(tmp_path / "one.npz", y_train=np.zeros(120, dtype=np.int64))
           .read_bytes()]
    media = Path(settings.MEDIA_ROOT)
    before = set(media.rglob("*"))
    for payload in bad:
        response = alice_api.post("/api/datasets/", {"file": io.BytesIO(payload), "name": "bad"}, format="multipart")
        assert response.status_code == 400 and response.json()["error"]
    assert set(media.rglob("*")) == before


def _upload(api: APIClient, path: Path, name: str) -> Any:
    with path.open("rb") as handle:
        return api.post("/api/datasets/", {"file": handle, "name": name}, format="multipart")


def test_names_are_unique_among_the_data_sets_a_user_sees(alice_api: APIClient, bob_api: APIClient,
                                                          digits: Any, tmp_path: Path) -> None:
    path = make_npz(tmp_path / "d.npz")
    assert _upload(alice_api, path, "survey").status_code == 201
    again = _upload(alice_api, path, "Survey ")
    assert again.status_code == 400 and "one of your data sets is already named 'survey'" in again.json()["error"]
    builtin = _upload(alice_api, path, "digits")
    assert builtin.status_code == 400 and "a built-in data set is already named 'digits'" in builtin.json()["error"]
    assert _upload(bob_api, path, "survey").status_code == 201  # another user's names are not in the way


def test_the_split_made_for_a_file_without_a_test_part_is_said(alice_api: APIClient, tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((40, 1, 4, 4)).astype(np.float32)
    y = np.arange(40) % 2
    held = _upload(alice_api, make_npz(tmp_path / "a.npz"), "no test part").json()
    given = _upload(alice_api, make_npz(tmp_path / "b.npz", x_test=x, y_test=y, x_train=x, y_train=y), "with").json()
    assert held["test_held_out"] is True and given["test_held_out"] is False and given["num_test"] == 40


def test_delete_an_upload_unless_runs_use_it(alice_api: APIClient, bob_api: APIClient, alice: Any, digits: Any,
                                             tmp_path: Path, django_capture_on_commit_callbacks: Any) -> None:
    from jobs.models import Dataset, Run

    row = _upload(alice_api, make_npz(tmp_path / "d.npz"), "to go").json()
    dataset = Dataset.objects.get(pk=row["id"])
    stored = Path(dataset.file.path)
    run = Run.objects.create(owner=alice, dataset=dataset, config={"mask_type": "pixel-any"}, total_epochs=3)
    refused = alice_api.delete(f"/api/datasets/{row['id']}/")
    assert refused.status_code == 400 and f"runs use 'to go' (#{run.pk})" in refused.json()["error"]
    assert bob_api.delete(f"/api/datasets/{row['id']}/").status_code == 404
    builtin = alice_api.delete(f"/api/datasets/{digits.pk}/")
    assert builtin.status_code == 400 and "built in" in builtin.json()["error"]
    run.delete()
    with django_capture_on_commit_callbacks(execute=True):  # the file goes once the row is gone for good
        assert alice_api.delete(f"/api/datasets/{row['id']}/").status_code == 204
    assert not Dataset.objects.filter(pk=row["id"]).exists() and not stored.exists()

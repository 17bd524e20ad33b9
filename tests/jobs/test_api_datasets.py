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

"""Requests a careless or hostile client sends: each refused with a 400 that names the problem, nothing kept."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Dataset, MaskConfig, Run
from tests.jobs.conftest import FAST


@pytest.mark.parametrize(("change", "named"), [
    ({"lambda_init": 10**400}, "lambda_init must be a number no larger than 1e308"),
    ({"epochs": 10**400}, "epochs must be in [1, 100000], got an integer of about 401 digits"),
    ({"init_selected": [1_000_000]}, "pixel-any has 64 elements; init_selected index out of range"),
    ({"costs": [["a"]]}, "costs must be numbers in the mask's shape"),
    ({"costs": [1, 2]}, "costs must have shape [1, 8, 8], got [2]"),
    ({"mask_type": "block-any", "grid": [10_000, 10_000]}, "block grid 10000x10000 is finer than the 8x8 input"),
    ({"tags": ["a|b"]}, "a tag may not contain '|'"),
])
def test_a_run_that_could_not_train_is_refused_where_it_is_submitted(
        alice_api: APIClient, digits: Any, change: dict[str, Any], named: str) -> None:
    answer = alice_api.post("/api/runs/", {"dataset": digits.pk, **FAST, **change}, format="json")
    assert answer.status_code == 400 and named in answer.json()["error"], answer.content
    assert not Run.objects.exists()


@pytest.mark.parametrize("change", [{"lambda_init": 10**400}, {"seed": -(10**400)}])
def test_a_configuration_with_a_number_beyond_any_float_is_refused(alice_api: APIClient,
                                                                   change: dict[str, Any]) -> None:
    answer = alice_api.post("/api/configs/", {"name": "c", "config": {**FAST, **change}}, format="json")
    assert answer.status_code == 400 and "got an integer of about 401 digits" in answer.json()["error"]
    assert not MaskConfig.objects.exists()


@pytest.mark.parametrize("ids", ["²", "9" * 25, "1,x", ",".join(["1"] * 1001)])
def test_run_ids_that_are_not_ids_are_a_400(alice: Any, alice_api: APIClient, digits: Any, ids: str) -> None:
    alice_api.force_login(alice)  # the compare page is a page: a session
    for url in (f"/api/runs/?ids={ids}", f"/compare/metrics.csv?runs={ids}"):
        answer = alice_api.get(url)
        assert answer.status_code == 400, (url[:60], answer.status_code)
    batch = alice_api.post("/api/runs/batch/", {"action": "cancel", "ids": [10**25]}, format="json")
    assert batch.status_code == 400 and "ids must be" in batch.json()["error"]


def test_a_run_list_filter_that_is_no_id_is_ignored(alice: Any, alice_api: APIClient, digits: Any) -> None:
    alice_api.force_login(alice)
    for query in ("dataset=²", "dataset=" + "9" * 25, "q=%23²", "q=" + "9" * 25):
        assert alice_api.get(f"/runs/?{query}").status_code == 200, query


def test_json_nested_too_deeply_is_a_parse_error(alice_api: APIClient) -> None:
    body = "[" * 50_000 + "]" * 50_000
    answer = alice_api.post("/api/runs/", body, content_type="application/json")
    assert answer.status_code == 400 and "JSON parse error" in answer.json()["error"]


def test_labels_far_beyond_the_samples_are_refused_without_counting_them(alice_api: APIClient) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.zeros((120, 1, 4, 4), np.float32), y_train=(np.arange(120) % 3) * 10**12)
    buffer.seek(0)
    answer = alice_api.post("/api/datasets/", {"file": buffer, "name": "huge labels"}, format="multipart")
    assert answer.status_code == 400 and "labels must be 0..K-1" in answer.json()["error"]
    assert not Dataset.objects.filter(name="huge labels").exists()


def test_a_blank_data_set_name_takes_the_file_s_name(alice_api: APIClient) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.zeros((120, 1, 4, 4), np.float32), y_train=np.arange(120) % 3)
    buffer.seek(0)
    buffer.name = "sensors.npz"
    answer = alice_api.post("/api/datasets/", {"file": buffer, "name": "   "}, format="multipart")
    assert answer.status_code == 201 and answer.json()["name"] == "sensors"


def test_a_configuration_saved_twice_at_once_is_refused_by_name(alice: Any, monkeypatch: Any) -> None:
    """The second request passed the name check before the first was saved: the database's constraint decides."""
    services.mask_config_create(owner=alice, name="dup", config={})
    monkeypatch.setattr(type(MaskConfig.objects.none()), "exists", lambda self: False)
    with pytest.raises(services.ServiceError, match="you already have a configuration named 'dup'"):
        services.mask_config_create(owner=alice, name="dup", config={})
    assert MaskConfig.objects.filter(name="dup").count() == 1


def test_samples_compress_must_be_true_or_false(alice_api: APIClient, digits: Any) -> None:
    answer = alice_api.get(f"/api/datasets/{digits.pk}/samples/?compress=maybe")
    assert answer.status_code == 400 and "compress must be true or false" in answer.json()["error"]


def test_an_api_address_that_names_nothing_is_a_json_404(alice_api: APIClient) -> None:
    for path in ("/api/nope/", "/api/runs/abc/", "/api/runs/7/transfer.json"):
        answer = alice_api.get(path)
        assert answer.status_code == 404 and answer.json()["error"].startswith(f"no such API address: {path}"), path
    moved = alice_api.post("/api/runs?x=1", {}, format="json")  # only its slash missing: sent on, method kept
    assert moved.status_code == 308 and moved["Location"] == "/api/runs/?x=1"

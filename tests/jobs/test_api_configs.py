"""`/api/configs/`: saved mask configurations."""
from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient


def test_saved_configurations_fill_in_runs_and_are_private(alice_api: APIClient, bob_api: APIClient,
                                                           digits: Any) -> None:
    saved = alice_api.post("/api/configs/", {"name": "paper pixel", "config": {
        "mask_type": "pixel-any", "model": "lenet5", "lambda_init": 1.0, "lambda_factor": 1.25}}, format="json")
    assert saved.status_code == 201
    config_id = saved.json()["id"]
    run_id = alice_api.post("/api/runs/", {"dataset": digits.pk, "mask_config": config_id, "epochs": 3},
                            format="json").json()["id"]
    config = alice_api.get(f"/api/runs/{run_id}/").json()["config"]
    assert (config["mask_type"], config["model"], config["lambda_init"], config["epochs"]) == ("pixel-any", "lenet5",
                                                                                               1.0, 3)
    assert [c["name"] for c in alice_api.get("/api/configs/").json()] == ["paper pixel"]
    assert bob_api.get("/api/configs/").json() == []
    theirs = bob_api.post("/api/runs/", {"dataset": digits.pk, "mask_config": config_id}, format="json")
    assert theirs.status_code == 400 and "no saved configuration" in theirs.json()["error"]
    for body, needle in (({"name": "x", "config": {"tau_init": 0}}, "tau_init must be in"),
                         ({"name": "paper pixel", "config": {}}, "already have"),
                         ({"name": "", "config": {}}, "name is required"),
                         ({"name": "d", "config": {"dataset": 1}}, "without the dataset")):
        response = alice_api.post("/api/configs/", body, format="json")
        assert response.status_code == 400 and needle in response.json()["error"], body

"""Every JSON endpoint's real response matches what `/api/schema/` says it sends: keys, types, nulls, enums.

A key the schema does not list fails, as does a listed key that is missing: the serializers that build the
responses and the schema are the same classes, and this test keeps it so.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import make_npz

FAST = {"mask_type": "pixel-any", "model": "mlp", "epochs": 2, "batch_size": 64, "warmup_epochs": 1,
        "finalize_epochs": 1}


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def conforms(value: Any, schema: dict[str, Any], components: dict[str, Any], where: str = "$") -> None:
    """Assert that `value` is what the OpenAPI 3 `schema` describes (the parts drf-spectacular emits)."""
    nullable = schema.get("nullable", False)
    schema = _resolve(schema, components)
    if value is None:
        assert nullable or schema.get("nullable", False), f"{where}: null where the schema allows none"
        return
    for part in schema.get("allOf", []):
        conforms(value, part, components, where)
    if "oneOf" in schema:
        assert any(_fits(value, part, components) for part in schema["oneOf"]), f"{where}: matches no oneOf"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), f"{where}: expected an object, got {type(value).__name__}"
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            assert key in value, f"{where}: required key {key!r} missing"
        for key, item in value.items():
            if key in properties:
                conforms(item, properties[key], components, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                conforms(item, schema["additionalProperties"], components, f"{where}.{key}")
            else:
                assert properties == {} and "additionalProperties" in schema, f"{where}: undocumented key {key!r}"
    elif kind == "array":
        assert isinstance(value, list), f"{where}: expected an array"
        for index, item in enumerate(value):
            conforms(item, schema.get("items", {}), components, f"{where}[{index}]")
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer, got {value!r}"
    elif kind == "number":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: expected a number"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{where}: expected a boolean"
    elif kind == "string":
        assert isinstance(value, str), f"{where}: expected a string, got {value!r}"
        if schema.get("format") == "date-time":
            datetime.fromisoformat(value.replace("Z", "+00:00"))


def _fits(value: Any, schema: dict[str, Any], components: dict[str, Any]) -> bool:
    try:
        conforms(value, schema, components)
    except AssertionError:
        return False
    return True


@pytest.fixture
def schema(alice_api: APIClient) -> dict[str, Any]:
    response = alice_api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def check(schema: dict[str, Any], response: Any, method: str, template: str) -> None:
    operation = schema["paths"][template][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method.upper()} {template} answered {response.status_code}, not documented"
    body = documented.get("content", {}).get("application/json", {}).get("schema")
    if body is None:
        assert response.status_code == 204 or not response.content, f"{method.upper()} {template}: a body"
        return
    conforms(response.json(), body, schema["components"]["schemas"], f"{method.upper()} {template}")


def test_every_json_endpoint_sends_what_the_schema_says(alice_api: APIClient, bob_api: APIClient, digits: Any,
                                                        schema: dict[str, Any], tmp_path: Any,
                                                        django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        created = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk, "name": "first", "tags": ["a"]},
                                 format="json")
    check(schema, created, "post", "/api/runs/")
    run = created.json()["id"]
    with make_npz(tmp_path / "d.npz").open("rb") as handle:
        uploaded = alice_api.post("/api/datasets/", {"file": handle, "name": "mine"}, format="multipart")
    check(schema, uploaded, "post", "/api/datasets/")
    dataset = uploaded.json()["id"]
    config = alice_api.post("/api/configs/", {"name": "c", "config": {"epochs": 3}}, format="json")
    check(schema, config, "post", "/api/configs/")
    queued = alice_api.post("/api/runs/", {**FAST, "dataset": digits.pk}, format="json").json()["id"]
    study_request = {"dataset": digits.pk, "base": FAST, "space": {"target_fraction": {"low": 0.1, "high": 0.5}},
                     "objectives": [{"metric": "test_accuracy", "direction": "maximize"},
                                    {"metric": "fraction", "direction": "minimize"}], "trials": 2}
    study_created = alice_api.post("/api/studies/", study_request, format="json")
    check(schema, study_created, "post", "/api/studies/")
    study = study_created.json()["id"]
    calls = [
        ("get", "/api/datasets/", "/api/datasets/", None),
        ("get", "/api/datasets/{dataset_id}/", f"/api/datasets/{dataset}/", None),
        ("get", "/api/datasets/{dataset_id}/preview/", f"/api/datasets/{digits.pk}/preview/", None),
        ("get", "/api/runs/", "/api/runs/", None),
        ("get", "/api/runs/{run_id}/", f"/api/runs/{run}/", None),
        ("patch", "/api/runs/{run_id}/", f"/api/runs/{run}/", {"notes": "n", "name": "renamed"}),
        ("get", "/api/runs/{run_id}/metrics/", f"/api/runs/{run}/metrics/", None),
        ("get", "/api/configs/", "/api/configs/", None),
        ("post", "/api/runs/batch/", "/api/runs/batch/", {"action": "cancel", "ids": [run]}),
        ("post", "/api/runs/{run_id}/cancel/", f"/api/runs/{queued}/cancel/", None),
        ("post", "/api/sweeps/", "/api/sweeps/", {**FAST, "dataset": digits.pk, "lambda_init": [0.1],
                                                  "lambda_factor": [1.25], "seeds": 1}),
        ("get", "/api/studies/", "/api/studies/", None),
        ("get", "/api/studies/{study_id}/", f"/api/studies/{study}/", None),
        ("post", "/api/studies/{study_id}/cancel/", f"/api/studies/{study}/cancel/", None),
        # errors: the same shape everywhere
        ("post", "/api/studies/", "/api/studies/", {"dataset": digits.pk}),
        ("post", "/api/runs/batch/", "/api/runs/batch/", {"action": "explode", "ids": []}),
        ("get", "/api/runs/{run_id}/", "/api/runs/999999/", None),
        ("post", "/api/runs/", "/api/runs/", {"dataset": digits.pk, "epochs": "many"}),
        ("get", "/api/runs/", "/api/runs/?ids=x", None),
        ("post", "/api/runs/{run_id}/cancel/", f"/api/runs/{run}/cancel/", None),
    ]
    for method, template, path, body in calls:
        response = getattr(alice_api, method)(path, body, format="json") if body is not None else \
            getattr(alice_api, method)(path)
        check(schema, response, method, template)
    assert bob_api.get(f"/api/runs/{run}/").status_code == 404
    detail = alice_api.get(f"/api/runs/{run}/").json()
    assert detail["name"] == "renamed" and detail["tags"] == ["a"] and detail["latest"]["epoch"] == detail["epoch"]
    listed = alice_api.get("/api/runs/").json()
    assert all(row["latest"] is None for row in listed)  # lists leave it out


def test_binary_downloads_are_documented_with_their_names(alice_api: APIClient, schema: dict[str, Any]) -> None:
    from jobs.downloads import NAMES

    parameters = schema["paths"]["/api/runs/{run_id}/{name}"]["get"]["parameters"]
    name = next(p for p in parameters if p["name"] == "name")
    assert set(name["schema"]["enum"]) == set(NAMES)
    assert "application/octet-stream" in schema["paths"]["/api/runs/{run_id}/{name}"]["get"]["responses"]["200"][
        "content"]


def test_the_description_shows_the_websocket_path_whole(schema: dict[str, Any]) -> None:
    """Markdown would read a bare <id> as a tag: the path sits in a code span."""
    assert "`/ws/runs/<run_id>/`" in schema["info"]["description"]

"""Authentication and the API's own description: tokens, 401 for anonymous requests, the schema and docs."""
from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient


def test_token_endpoint_returns_a_token_for_good_credentials(alice: Any) -> None:
    client = APIClient()
    good = client.post("/api/auth/token/", {"username": "alice", "password": "alice-password-1"}, format="json")
    assert good.status_code == 200 and len(good.json()["token"]) == 40
    client.credentials(HTTP_AUTHORIZATION=f"Token {good.json()['token']}")
    assert client.get("/api/runs/").status_code == 200
    bad = APIClient().post("/api/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert bad.status_code == 400 and "error" in bad.json()


def test_the_api_answers_anonymous_requests_with_401_and_says_how_to_authenticate(db: Any) -> None:
    response = APIClient().get("/api/runs/")
    assert response.status_code == 401 and "error" in response.json()
    assert response["WWW-Authenticate"] == "Token"


def test_the_openapi_schema_documents_every_endpoint_and_the_docs_page_works_offline(alice_api: APIClient) -> None:
    import yaml

    schema = yaml.safe_load(alice_api.get("/api/schema/").content)
    paths = set(schema["paths"])
    assert {"/api/runs/", "/api/runs/{run_id}/", "/api/runs/{run_id}/metrics/", "/api/runs/{run_id}/cancel/",
            "/api/datasets/", "/api/runs/{run_id}/{name}"} <= paths
    run_request = schema["components"]["schemas"]["RunCreate"]["properties"]
    assert {"dataset", "mask_type", "lambda_init", "tau_init", "target_fraction"} <= set(run_request)
    docs = alice_api.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower()

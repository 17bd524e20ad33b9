from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from jobs.models import Run


def form_defaults(**overrides: Any) -> dict[str, Any]:
    """What a browser posts when the user changes only `overrides` in the new-run form."""
    from jobs.forms import RunForm

    fields = RunForm.base_fields
    data = {name: field.initial for name, field in fields.items() if field.initial is not None}
    return {**data, **overrides}


@pytest.fixture
def alice_web(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_pages_redirect_anonymous_users_to_login(db: Any) -> None:
    for path in ("/runs/", "/runs/new/", "/runs/1/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), path


def test_the_new_run_form_creates_a_run_and_redirects_to_its_page(alice_web: Client, digits: Any) -> None:
    page = alice_web.get("/runs/new/")
    assert page.status_code == 200 and b"digits" in page.content and b"pixel-any" in page.content
    response = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, mask_type="pixel-any", model="lenet5",
                                                          epochs=4))
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.config["model"] == "lenet5" and run.total_epochs == 4
    detail = alice_web.get(f"/runs/{run.pk}/")
    assert detail.status_code == 200 and b'id="chart"' in detail.content and b"uPlot.iife.min.js" in detail.content
    listing = alice_web.get("/runs/")
    assert listing.status_code == 200 and f"/runs/{run.pk}/".encode() in listing.content


def test_a_bad_form_shows_the_error_next_to_the_field(alice_web: Client, digits: Any) -> None:
    response = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, epochs=0, tau_init=-1))
    assert response.status_code == 200
    assert b"has-error" in response.content and Run.objects.count() == 0


def test_another_users_run_page_is_404(alice_web: Client, bob: Any, digits: Any) -> None:
    run = Run.objects.create(owner=bob, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=1)
    assert alice_web.get(f"/runs/{run.pk}/").status_code == 404

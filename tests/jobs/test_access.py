"""Every route needs a login, and another user's run answers 404 on every route that names it."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from jobs import api_urls, urls
from jobs.models import Run, Study

RUN_PAGES = ["/runs/{id}/", "/compare/?runs={id}", "/compare/metrics.csv?runs={id}"]
LIST_PAGES = ["/runs/", "/runs/new/", "/runs/sweep/", "/datasets/", "/workers/", "/studies/", "/studies/new/"]
RUN_API = ["/api/runs/{id}/", "/api/runs/{id}/metrics/", "/api/runs/{id}/mask.json", "/api/runs/{id}/mask.npy",
           "/api/runs/{id}/model.pt", "/api/runs/{id}/metrics.csv", "/api/runs/{id}/config.json",
           "/api/runs/{id}/bundle.zip"]
LIST_API = ["/api/datasets/", "/api/runs/", "/api/configs/", "/api/studies/", "/api/schema/", "/api/docs/"]
POST_RUN_API = ["/api/runs/{id}/cancel/"]
POST_API = ["/api/sweeps/", "/api/runs/batch/"]
DATASET_PAGES = ["/datasets/{id}/"]
STUDY_PAGES = ["/studies/{id}/"]
STUDY_API = ["/api/studies/{id}/"]
POST_STUDY_API = ["/api/studies/{id}/cancel/"]
DATASET_API = ["/api/datasets/{id}/", "/api/datasets/{id}/preview/", "/api/datasets/{id}/samples/"]


def test_the_lists_here_cover_every_route_of_the_app() -> None:
    """A new route fails this test until it is added to the access checks below."""
    assert len(urls.urlpatterns) == len(RUN_PAGES) + len(LIST_PAGES) + len(DATASET_PAGES) + len(STUDY_PAGES)
    # api_urls: the token endpoint and the JSON 404 of the rest (both public by design: the 404 names nothing of
    # anyone's) and the ones listed here (downloads: one pattern).
    assert len(api_urls.urlpatterns) == (2 + len(LIST_API) + len(DATASET_API) + len(RUN_API) - 5 + len(POST_RUN_API)
                                         + len(POST_API) + len(STUDY_API) + len(POST_STUDY_API))


@pytest.fixture
def alices_study(alice: Any, digits: Any) -> Study:
    return Study.objects.create(owner=alice, dataset=digits, trials=1, status="finished",
                                objectives=[{"metric": "fraction", "direction": "minimize"}] * 2)


def test_another_users_study_is_404_on_every_route(alices_study: Study, bob: Any) -> None:
    api, web = APIClient(), Client()
    assert api.get(f"/api/studies/{alices_study.pk}/").status_code in (401, 403)
    assert web.get(f"/studies/{alices_study.pk}/")["Location"].startswith("/accounts/login/")
    api.force_authenticate(bob)
    web.force_login(bob)
    for path in STUDY_PAGES:
        assert web.get(path.format(id=alices_study.pk)).status_code == 404, path
    for path in STUDY_API:
        response = api.get(path.format(id=alices_study.pk))
        assert response.status_code == 404 and "error" in response.json(), path
    for path in POST_STUDY_API:
        assert api.post(path.format(id=alices_study.pk)).status_code == 404, path
    assert api.delete(f"/api/studies/{alices_study.pk}/").status_code == 404
    assert api.get("/api/studies/").json() == [] and Study.objects.filter(pk=alices_study.pk).exists()


@pytest.fixture
def alices_run(alice: Any, digits: Any) -> Run:
    return Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=1)


def test_anonymous_users_are_sent_to_login_or_refused(alices_run: Run) -> None:
    web, api = Client(), APIClient()
    for path in LIST_PAGES + RUN_PAGES:
        response = web.get(path.format(id=alices_run.pk))
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), path
    for path in LIST_API + RUN_API:
        assert api.get(path.format(id=alices_run.pk)).status_code in (401, 403), path
    for path in POST_RUN_API + POST_API:
        assert api.post(path.format(id=alices_run.pk)).status_code in (401, 403), path


def test_another_users_run_is_404_on_every_route(alices_run: Run, bob: Any) -> None:
    web, api = Client(), APIClient()
    web.force_login(bob)
    api.force_authenticate(bob)
    for path in RUN_PAGES:
        assert web.get(path.format(id=alices_run.pk)).status_code == 404, path
    for path in RUN_API:
        response = api.get(path.format(id=alices_run.pk))
        assert response.status_code == 404 and "error" in response.json(), path
    for path in POST_RUN_API:
        assert api.post(path.format(id=alices_run.pk)).status_code == 404, path
    assert api.patch(f"/api/runs/{alices_run.pk}/", {"notes": "mine"}, format="json").status_code == 404
    assert api.delete(f"/api/runs/{alices_run.pk}/").status_code == 404
    assert api.get("/api/runs/").json() == []
    listing = web.get("/runs/").content.decode()
    assert f"/runs/{alices_run.pk}/" not in listing and "No runs yet" in listing
    assert Run.objects.get(pk=alices_run.pk).status == "queued"  # bob's cancel did nothing


def test_another_users_dataset_is_404_on_every_route(alice: Any, bob: Any, tmp_path: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from jobs import dataset_services
    from tests.conftest import make_npz

    path = make_npz(tmp_path / "d.npz")
    upload = SimpleUploadedFile("d.npz", path.read_bytes())
    theirs = dataset_services.dataset_create(owner=bob, name="bobs", upload=upload)
    web, api = Client(), APIClient()
    assert web.get(f"/datasets/{theirs.pk}/").status_code == 302  # anonymous: to the login page
    assert api.get(f"/api/datasets/{theirs.pk}/").status_code in (401, 403)
    web.force_login(alice)
    api.force_authenticate(alice)
    for path_ in DATASET_PAGES:
        assert web.get(path_.format(id=theirs.pk)).status_code == 404
    for path_ in DATASET_API:
        assert api.get(path_.format(id=theirs.pk)).status_code == 404
    assert web.get(f"/runs/new/?dataset={theirs.pk}").status_code == 404
    assert "bobs" not in web.get("/datasets/").content.decode()

"""The studies' pages and websocket: the form and its presets, the errors at the fields they name, the page's
starting data, and `/ws/studies/<id>/` (snapshot, then each change of the trials)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from jobs import study_services, worker_services
from jobs.models import Dataset, Study, Trial
from jobs.routing import websocket_urlpatterns
from jobs.study_forms import StudyForm
from jobs.study_presets import PRESETS
from jobs.study_spec import check

APP = URLRouter(websocket_urlpatterns)
CHANGES = {"trials": 3, "parallel": 1, "space": json.dumps({"target_fraction": {"low": 0.1, "high": 0.5, "log": True}}),
           "mask_type": "pixel-any", "model": "mlp", "epochs": 2, "warmup_epochs": 1, "finalize_epochs": 0}


def filled(data_set: Any, **changes: Any) -> dict[str, Any]:
    """The form as a browser sends it untouched (every field's initial value), with these changes."""
    form = StudyForm(datasets=Dataset.objects.all())
    values = {name: form[name].value() for name in form.fields}
    sent = {name: value for name, value in values.items() if value is not None and value is not False}
    return {**sent, **CHANGES, "dataset": data_set.pk, **changes}


@pytest.fixture
def web(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_every_preset_is_a_valid_study_on_its_built_in(digits: Any) -> None:
    from jobs.dataset_services import dataset_seed_builtins

    shapes = {row.builtin: row.input_shape for row in dataset_seed_builtins()}
    for preset in PRESETS:
        spec = check(preset.request(0), shapes[preset.dataset])
        assert spec.trials == preset.trials and "target_fraction" in spec.space


def test_the_form_starts_a_study_with_its_options_as_base(web: Client, digits: Any, queued_only: None) -> None:
    answer = web.post("/studies/new/", filled(digits, name="by form"))
    study = Study.objects.get(name="by form")
    assert answer.status_code == 302 and answer["Location"] == f"/studies/{study.pk}/"
    assert study.base["epochs"] == 2 and study.base["mask_type"] == "pixel-any" and "target_fraction" not in study.base
    assert study.objectives == [{"metric": "test_accuracy", "direction": "maximize"},
                                {"metric": "fraction", "direction": "minimize"}]
    assert study.space == {"target_fraction": {"low": 0.1, "high": 0.5, "log": True}}
    assert Trial.objects.filter(study=study).count() == 1
    page = web.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="study-data"' in page and "by form" in page
    assert f'id="study-seed" title="the sampler\'s: the same seed proposes the same trials">{study.seed}</dd>' in page
    assert f"/studies/{study.pk}/" in web.get("/studies/").content.decode()


def test_the_form_shows_each_problem_at_its_field(web: Client, digits: Any) -> None:
    space = json.dumps({"model_lr": {"low": 0.1, "high": 0.1}})
    page = web.post("/studies/new/", filled(digits, space=space, objective_2="test_accuracy:minimize")).content.decode()
    assert "space.model_lr: empty range" in page and "objectives: each metric at most once" in page
    assert page.count(" has-error") == 2 and not Study.objects.exists()
    page = web.post("/studies/new/", filled(digits, space="{not json")).content.decode()
    assert "the space must be JSON" in page


def test_a_preset_starts_in_one_click(web: Client, digits: Any, queued_only: None) -> None:
    answer = web.post("/studies/new/", {"preset": "pixels-digits"})
    study = Study.objects.get()
    assert answer["Location"] == f"/studies/{study.pk}/" and study.dataset == digits
    assert study.trials == 12 and Trial.objects.filter(study=study).count() == 2
    assert "no such preset" in web.post("/studies/new/", {"preset": "nope"}).content.decode()


@pytest.mark.django_db(transaction=True)
async def test_the_socket_sends_the_study_then_each_change(alice: Any, bob: Any, queued_only: None) -> None:
    from jobs.dataset_services import dataset_seed_builtins

    digits = (await sync_to_async(dataset_seed_builtins)())[0]
    data = {"dataset": digits.pk, "base": {"epochs": 2}, "space": {"target_fraction": {"low": 0.1, "high": 0.5}},
            "objectives": [{"metric": "test_accuracy", "direction": "maximize"},
                           {"metric": "fraction", "direction": "minimize"}], "trials": 3, "parallel": 1}
    study = await sync_to_async(study_services.study_create)(owner=alice, data=data)
    theirs = WebsocketCommunicator(APP, f"/ws/studies/{study.pk}/")
    theirs.scope["user"] = bob
    await theirs.connect()
    assert (await theirs.receive_output())["code"] == 4404
    communicator = WebsocketCommunicator(APP, f"/ws/studies/{study.pk}/")
    communicator.scope["user"] = alice
    assert (await communicator.connect())[0]
    snapshot = await communicator.receive_json_from()
    assert snapshot["type"] == "snapshot" and [t["state"] for t in snapshot["study"]["trials"]] == ["running"]
    first = snapshot["study"]["trials"][0]["run"]
    await sync_to_async(worker_services.run_fail)(first, "ValueError: planted")
    update = await communicator.receive_json_from(timeout=5)
    assert update["type"] == "study" and update["status"] == "running"
    assert [(t["number"], t["state"]) for t in update["trials"]] == [(0, "failed"), (1, "running")]
    await communicator.disconnect()
    from channels.db import database_sync_to_async
    from django.db import connections

    await database_sync_to_async(connections.close_all)()

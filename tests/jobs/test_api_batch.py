"""`/api/runs/batch/`: cancel, requeue and delete many runs, answered per run."""
from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from tests.jobs.conftest import FAST


def test_batch_actions_answer_per_run(alice_api: APIClient, alice: Any, digits: Any,
                                      django_capture_on_commit_callbacks: Any) -> None:
    from jobs.models import EpochMetric, Run

    with django_capture_on_commit_callbacks(execute=True):
        done = alice_api.post("/api/runs/", {"dataset": digits.pk, **FAST}, format="json").json()["id"]
    queued = [Run.objects.create(owner=alice, dataset=digits, config=FAST, total_epochs=3) for _ in range(2)]
    ids = [done] + [r.pk for r in queued]
    cancelled = alice_api.post("/api/runs/batch/", {"action": "cancel", "ids": ids}, format="json").json()
    assert cancelled["results"] == {str(done): f"run {done} is already succeeded", str(ids[1]): "ok",
                                    str(ids[2]): "ok"}
    with django_capture_on_commit_callbacks(execute=True):
        requeued = alice_api.post("/api/runs/batch/", {"action": "requeue", "ids": [ids[1]]}, format="json")
    assert requeued.json()["results"] == {str(ids[1]): "ok"}
    new_id = requeued.json()["created"][str(ids[1])]
    again = Run.objects.get(pk=new_id)  # a new run with the same options: the eager task trained it
    assert again.status == "succeeded" and again.error == ""
    assert {key: again.config[key] for key in FAST} == FAST
    assert list(EpochMetric.objects.filter(run=again).values_list("epoch", flat=True)) == [1, 2, 3]
    assert Run.objects.get(pk=ids[1]).status == "cancelled"  # the old run stays as it was
    assert alice_api.post("/api/runs/batch/", {"action": "delete", "ids": [ids[2]]}, format="json").status_code == 200
    assert not Run.objects.filter(pk=ids[2]).exists()
    for body, needle in (({"action": "explode", "ids": [done]}, "unknown action"), ({"action": "cancel"}, "ids must"),
                         ({"action": "cancel", "ids": [999999]}, "no such run")):
        response = alice_api.post("/api/runs/batch/", body, format="json")
        assert response.status_code in (400, 404) and needle in response.json()["error"], body

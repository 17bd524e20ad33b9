"""Studies: the request checked whole, the tell-and-ask as runs end (trained by eager Celery, or ended by the
services directly), the front against a brute-force check, cancel and delete, and two runs ending at once."""
from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from jobs import services, study_services, worker_services
from jobs.models import Run, RunStatus, Study, StudyStatus, Trial, TrialState

FAST = {"mask_type": "pixel-any", "model": "mlp", "epochs": 2, "batch_size": 64, "warmup_epochs": 1,
        "finalize_epochs": 0}
OBJECTIVES = [{"metric": "test_accuracy", "direction": "maximize"}, {"metric": "fraction", "direction": "minimize"}]


SPACE = {"target_fraction": {"low": 0.1, "high": 0.6}, "model_lr": {"low": 1e-3, "high": 1e-2, "log": True}}


def request(data_set: Any, **changes: Any) -> dict[str, Any]:
    return {"name": "lr and budget", "dataset": data_set.pk, "base": FAST, "space": SPACE,
            "objectives": OBJECTIVES, "trials": 4, "parallel": 2, **changes}


def test_a_study_trains_its_trials_two_at_a_time_and_keeps_its_front(
        alice_api: APIClient, digits: Any, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        answer = alice_api.post("/api/studies/", request(digits), format="json")
    assert answer.status_code == 201, answer.content
    study = alice_api.get(f"/api/studies/{answer.json()['id']}/").json()
    assert study["status"] == "finished" and study["n_trials"] == 4
    assert [t["number"] for t in study["trials"]] == [0, 1, 2, 3]
    assert all(t["state"] == "complete" and len(t["values"]) == 2 for t in study["trials"])
    runs = {run.pk: run for run in Run.objects.filter(pk__in=[t["run"] for t in study["trials"]])}
    for trial in study["trials"]:
        run = runs[trial["run"]]
        assert run.status == RunStatus.SUCCEEDED and f"study-{study['id']}" in run.tags
        assert run.config["target_fraction"] == trial["params"]["target_fraction"]
        assert 0.1 <= trial["params"]["target_fraction"] <= 0.6 and 1e-3 <= trial["params"]["model_lr"] <= 1e-2
        assert trial["values"] == [run.test_accuracy, run.fraction]
    assert set(study["pareto"]) == brute_force_front(study["trials"], ["maximize", "minimize"])
    assert len({tuple(sorted(t["params"].items())) for t in study["trials"]}) == 4  # no proposal twice


def brute_force_front(trials: list[dict[str, Any]], directions: list[str]) -> set[int]:
    """The runs of the complete trials that no other complete trial dominates (at least as good everywhere and
    better somewhere), checked pair by pair."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    points = {t["run"]: [s * v for s, v in zip(signs, t["values"], strict=True)]
              for t in trials if t["state"] == "complete"}

    def dominates(q: list[float], p: list[float]) -> bool:
        pairs = list(zip(q, p, strict=True))
        return all(a >= b for a, b in pairs) and any(a > b for a, b in pairs)

    def dominated(p: list[float]) -> bool:
        return any(dominates(q, p) for q in points.values())
    return {run for run, p in points.items() if not dominated(p)}


@pytest.mark.parametrize("seed", range(5))
def test_the_front_is_the_brute_force_front(alice: Any, digits: Any, queued_only: None, seed: int) -> None:
    rng = random.Random(seed)
    directions = [rng.choice(["maximize", "minimize"]) for _ in range(3)]
    metrics = ["test_accuracy", "fraction", "seconds"]
    objectives = [{"metric": m, "direction": d} for m, d in zip(metrics, directions, strict=True)]
    study = study_services.study_create(owner=alice, data=request(digits, trials=40, parallel=40,
                                                                  objectives=objectives))
    for trial in Trial.objects.filter(study=study):
        # Few distinct values: ties and duplicates, where a front is easiest to get wrong.
        outcome = {m: rng.choice([0.1, 0.2, 0.3, 0.5]) for m in metrics} if rng.random() > 0.2 else None
        Run.objects.filter(pk=trial.run_id).update(status=RunStatus.SUCCEEDED if outcome else RunStatus.FAILED)
        study_services.trial_ended(trial.run_id, outcome, reason="ended")
    study.refresh_from_db()
    trials = [{"run": t.run_id, "state": t.state, "values": t.values} for t in study.trial_rows.all()]
    assert study.status == StudyStatus.FINISHED
    assert set(study.pareto) == brute_force_front(trials, directions) and study.pareto


def test_a_failed_trial_is_told_and_the_study_goes_on(alice: Any, digits: Any, queued_only: None) -> None:
    study = study_services.study_create(owner=alice, data=request(digits, trials=3, parallel=1))
    first = Trial.objects.get(study=study)
    worker_services.run_fail(first.run_id, "RuntimeError: out of memory")
    first.refresh_from_db()
    assert first.state == TrialState.FAILED and "out of memory" in first.error
    rows = list(Trial.objects.filter(study=study).order_by("number"))
    assert [(r.number, r.state) for r in rows] == [(0, "failed"), (1, "running")]
    assert Run.objects.get(pk=rows[1].run_id).status == RunStatus.QUEUED


def test_five_failed_trials_in_a_row_end_the_study_as_failed(alice: Any, digits: Any, queued_only: None) -> None:
    study = study_services.study_create(owner=alice, data=request(digits, trials=20, parallel=1))
    for _ in range(6):
        trial = Trial.objects.filter(study=study, state=TrialState.RUNNING).first()
        if trial is None:
            break
        worker_services.run_fail(trial.run_id, "ValueError: planted")
    study.refresh_from_db()
    assert study.status == StudyStatus.FAILED and "5 trials in a row failed" in study.error
    assert "planted" in study.error and Trial.objects.filter(study=study).count() == 5


def test_cancelling_a_study_cancels_its_open_runs_and_asks_no_more(alice_api: APIClient, alice: Any, digits: Any,
                                                                     queued_only: None) -> None:
    study = study_services.study_create(owner=alice, data=request(digits, trials=6, parallel=2))
    open_runs = list(Run.objects.filter(trial__study=study).values_list("pk", flat=True))
    answer = alice_api.post(f"/api/studies/{study.pk}/cancel/")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert set(Run.objects.filter(pk__in=open_runs).values_list("status", flat=True)) == {RunStatus.CANCELLED}
    assert Trial.objects.filter(study=study).count() == 2
    again = alice_api.post(f"/api/studies/{study.pk}/cancel/")
    assert again.status_code == 400 and again.json()["error"] == f"study {study.pk} is already cancelled"
    assert alice_api.delete(f"/api/studies/{study.pk}/").status_code == 204
    assert not Study.objects.filter(pk=study.pk).exists() and Run.objects.filter(pk__in=open_runs).count() == 2


def test_a_running_study_is_not_deleted_and_its_queued_run_deleted_ends_its_trial(
        alice_api: APIClient, alice: Any, digits: Any, queued_only: None) -> None:
    study = study_services.study_create(owner=alice, data=request(digits, trials=2, parallel=1))
    answer = alice_api.delete(f"/api/studies/{study.pk}/")
    assert answer.status_code == 400 and "cancel it before deleting it" in answer.json()["error"]
    first = Trial.objects.get(study=study)
    services.run_delete(Run.objects.get(pk=first.run_id))
    assert list(Trial.objects.filter(study=study).order_by("number").values_list("state", flat=True)) == [
        "failed", "running"]


def test_cancelling_a_trials_run_fails_the_trial_and_asks_the_next(alice: Any, digits: Any, queued_only: None) -> None:
    study = study_services.study_create(owner=alice, data=request(digits, trials=2, parallel=1))
    services.run_cancel(Run.objects.get(trial__study=study))
    rows = list(Trial.objects.filter(study=study).order_by("number"))
    assert [(r.state, r.error) for r in rows] == [("failed", "its run was cancelled"), ("running", "")]


@pytest.mark.parametrize(("change", "named"), [
    ({"space": {"no_such_option": {"low": 1, "high": 2}}}, "space.no_such_option: not a run option"),
    ({"space": {"model_lr": {"low": 0.01, "high": 0.01}}}, "space.model_lr: empty range"),
    ({"space": {"model_lr": {"low": 0, "high": 0.1, "log": True}}}, "space.model_lr: a log-scaled range needs low"),
    ({"space": {"epochs": {"low": 1.5, "high": 4}}}, "space.epochs: low and high must be whole numbers"),
    ({"space": {"mask_type": {"low": 1, "high": 2}}}, "space.mask_type: a range needs a numeric option"),
    ({"space": {"model": {"choices": ["mlp", "no-such-net"]}}}, 'space.model: choice "no-such-net"'),
    ({"space": {"mask_type": {"choices": ["channel-xor"]}}}, "space.mask_type: choice"),
    ({"space": {}}, "space: must map"),
    ({"objectives": [{"metric": "test_accuracy", "direction": "maximize"}]}, "objectives: must be a list of two"),
    ({"objectives": [{"metric": "loss", "direction": "minimize"}, OBJECTIVES[1]]}, "objectives[0].metric"),
    ({"objectives": [OBJECTIVES[0], {"metric": "fraction", "direction": "down"}]}, "objectives[1].direction"),
    ({"trials": 201}, "trials: must be a whole number from 1 to 200"),
    ({"trials": "many"}, "trials: must be a whole number"),
    ({"parallel": 5, "trials": 4}, "parallel: must be a whole number from 1 to 4"),
    ({"base": {"epochs": "ten"}}, "base: epochs must be an integer"),
    ({"base": {"pretrained_run": 3}}, "base: pretrained_run cannot be part"),
    ({"dataset": 999_999}, "dataset: no dataset with id 999999"),
    ({"space": {"lambda_init": {"low": 10**400, "high": 10**401}}}, "space.lambda_init: lambda_init must be a number"),
    ({"space": {"init_selected": {"choices": [[0, 1], [1_000_000]]}}}, "init_selected index out of range"),
    ({"seed": 2**31}, "seed: must be a whole number from 0 to 2147483647"),
])
def test_a_bad_study_is_refused_naming_the_field(alice_api: APIClient, digits: Any, change: dict[str, Any],
                                                  named: str) -> None:
    answer = alice_api.post("/api/studies/", request(digits, **change), format="json")
    assert answer.status_code == 400 and named in answer.json()["error"], answer.json()
    assert not Study.objects.exists() and not Run.objects.exists()


def test_every_bad_field_is_named_at_once(alice_api: APIClient, digits: Any) -> None:
    answer = alice_api.post("/api/studies/", request(digits, trials=0, space={"model_lr": {"low": 1, "high": 0}},
                                                     objectives=[]), format="json")
    error = answer.json()["error"]
    assert answer.status_code == 400 and all(f in error for f in ("space.model_lr:", "objectives:", "trials:"))


def test_a_study_that_would_pass_the_open_run_limit_is_refused(alice_api: APIClient, digits: Any,
                                                                settings: Any) -> None:
    settings.MASKSEL_MAX_OPEN_RUNS = 1
    answer = alice_api.post("/api/studies/", request(digits), format="json")
    assert answer.status_code == 400 and "limit of 1 queued or running runs" in answer.json()["error"]
    assert not Study.objects.exists()


def test_another_users_study_is_not_found(alice: Any, bob_api: APIClient, digits: Any, queued_only: None) -> None:
    study = study_services.study_create(owner=alice, data=request(digits))
    assert bob_api.get(f"/api/studies/{study.pk}/").status_code == 404
    assert bob_api.post(f"/api/studies/{study.pk}/cancel/").status_code == 404
    assert bob_api.get("/api/studies/").json() == []


@pytest.mark.skipif(connection.vendor == "sqlite", reason="two connections writing at once need PostgreSQL "
                    "(SQLite's in-memory test database locks whole tables): `make test-postgres` runs this test")
@pytest.mark.django_db(transaction=True)
def test_two_runs_ending_at_once_never_start_extra_trials(alice: Any, digits: Any, queued_only: None) -> None:
    """Each run's end, in its own thread and connection, tells and asks with the study's row locked: whatever the
    order, two places free and two trials are asked, never three or four (PostgreSQL in `make test-postgres`)."""
    study = study_services.study_create(owner=alice, data=request(digits, trials=10, parallel=2))
    for _ in range(3):
        running = list(Trial.objects.filter(study=study, state=TrialState.RUNNING).values_list("run_id", flat=True))
        assert len(running) == 2
        errors = end_together(running)
        assert not errors, errors
    numbers = list(Trial.objects.filter(study=study).order_by("number").values_list("number", flat=True))
    assert numbers == list(range(8))
    assert Trial.objects.filter(study=study, state=TrialState.RUNNING).count() == 2


def end_together(run_ids: list[int]) -> list[BaseException]:
    """End these runs at the same moment, each in its own thread and database connection: one succeeds (as
    `worker_services.run_finish` records it), one fails. Returns what went wrong."""
    barrier = threading.Barrier(len(run_ids))
    errors: list[BaseException] = []

    def end(index: int, run_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            if index % 2:
                worker_services.run_fail(run_id, "ValueError: ended together")
            else:
                with transaction.atomic():
                    Run.objects.filter(pk=run_id).update(status=RunStatus.SUCCEEDED)
                    study_services.trial_ended(run_id, {"test_accuracy": 0.5, "fraction": 0.1 * run_id},
                                               reason="succeeded")
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=end, args=pair) for pair in enumerate(run_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_a_data_set_that_a_study_uses_is_not_deleted(alice: Any, tmp_path: Any, queued_only: None) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from jobs import dataset_services
    from tests.conftest import make_npz

    path = make_npz(tmp_path / "d.npz")
    dataset = dataset_services.dataset_create(owner=alice, name="mine", upload=SimpleUploadedFile(
        "d.npz", path.read_bytes()))
    study = study_services.study_create(owner=alice, data=request(dataset))
    study_services.study_cancel(study)
    Run.objects.filter(trial__study=study).delete()
    with pytest.raises(services.ServiceError, match=f"studies use 'mine' \\(#{study.pk}\\)"):
        dataset_services.dataset_delete(dataset, alice)
    study_services.study_delete(Study.objects.get(pk=study.pk))
    dataset_services.dataset_delete(dataset, alice)


def test_a_large_run_seed_gives_a_study_that_proposes_and_a_blank_name_the_default(alice: Any, digits: Any,
                                                                                   queued_only: None) -> None:
    """The study's sampler seed comes from the base's run seed (up to 2**63 - 1) when none is given; numpy's seeds
    stop at 2**32 - 1 and the study's column at 2**31 - 1."""
    data = request(digits, name="   ", base={**FAST, "seed": 5_000_000_000})
    study = study_services.study_create(owner=alice, data=data)
    assert study.name.startswith("study-") and 0 <= study.seed < 2**31
    assert Run.objects.filter(trial__study=study).count() == 2  # two trials asked of the sampler and queued

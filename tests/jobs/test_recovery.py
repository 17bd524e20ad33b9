from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs import selectors, services, worker_services
from jobs.models import Run, RunStatus


@pytest.fixture
def queued(alice: Any, digits: Any) -> Run:
    return Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any", "epochs": 2},
                              total_epochs=2)


def test_only_one_worker_takes_the_lease_of_a_queued_run(queued: Run) -> None:
    first = worker_services.run_start(queued.pk, worker="a:1", device="cpu")
    second = worker_services.run_start(queued.pk, worker="b:2", device="cpu")
    assert first is not None and second is None
    queued.refresh_from_db()
    assert (queued.status, queued.lease_owner, queued.attempts) == ("running", "a:1", 1)


def test_the_heartbeat_renews_only_the_holders_lease(queued: Run) -> None:
    worker_services.run_start(queued.pk, worker="a:1", device="cpu")
    assert worker_services.run_heartbeat(queued.pk, worker="a:1")
    assert not worker_services.run_heartbeat(queued.pk, worker="b:2")
    services.run_cancel(Run.objects.get(pk=queued.pk))
    assert not worker_services.run_heartbeat(queued.pk, worker="a:1")
    assert not selectors.run_holds_lease(queued.pk, worker="a:1")


def age(run: Run, seconds: float) -> None:
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def test_a_run_whose_worker_stopped_beating_is_requeued_with_the_reason(
        queued: Run, django_capture_on_commit_callbacks: Any) -> None:
    worker_services.run_start(queued.pk, worker="a:1", device="cpu")
    age(queued, 120)
    with django_capture_on_commit_callbacks() as callbacks:
        assert worker_services.recover_stale_runs(stale_seconds=60, max_attempts=3) == [queued.pk]
    queued.refresh_from_db()
    assert queued.status == "queued" and queued.lease_owner == ""
    assert len(callbacks) == 1  # the task is sent again once the requeue is committed
    assert queued.retries[0]["attempt"] == 1 and "worker a:1 lost" in queued.retries[0]["reason"]
    assert worker_services.run_start(queued.pk, worker="b:2", device="cpu") is not None
    assert Run.objects.get(pk=queued.pk).attempts == 2


def test_a_fresh_heartbeat_is_left_alone(queued: Run) -> None:
    worker_services.run_start(queued.pk, worker="a:1", device="cpu")
    age(queued, 10)
    assert worker_services.recover_stale_runs(stale_seconds=60, max_attempts=3) == []
    assert Run.objects.get(pk=queued.pk).status == RunStatus.RUNNING


def test_retries_are_bounded(queued: Run) -> None:
    for attempt in range(1, 4):
        assert worker_services.run_start(queued.pk, worker=f"w:{attempt}", device="cpu") is not None
        age(queued, 120)
        worker_services.recover_stale_runs(stale_seconds=60, max_attempts=3)
    queued.refresh_from_db()
    assert queued.status == RunStatus.FAILED and "gave up after 3 attempts" in queued.error
    assert [r["attempt"] for r in queued.retries] == [1, 2, 3]


def test_the_api_and_page_say_when_a_runs_worker_is_lost(queued: Run, alice: Any) -> None:
    from django.test import Client
    from rest_framework.test import APIClient

    worker_services.run_start(queued.pk, worker="a:1", device="cpu")
    api = APIClient()
    api.force_authenticate(alice)
    assert api.get(f"/api/runs/{queued.pk}/").json()["worker_lost"] is False
    age(queued, 600)
    assert api.get(f"/api/runs/{queued.pk}/").json()["worker_lost"] is True
    worker_services.recover_stale_runs(stale_seconds=60, max_attempts=3)
    web = Client()
    web.force_login(alice)
    page = web.get(f"/runs/{queued.pk}/").content.decode()
    assert "Retried 1 time" in page and "worker a:1 lost" in page


def test_workers_report_themselves_and_the_page_shows_state_device_and_run(queued: Run, alice: Any,
                                                                          bob: Any) -> None:
    from django.test import Client

    from jobs.models import WorkerNode

    worker_services.run_start(queued.pk, worker="w1@host:11", device="cpu")
    worker_services.worker_report("w1@host:11", device={"device": "cuda:NVIDIA H100", "gpu_memory_mb": 81000})
    worker_services.worker_report("w2@host:12", device={"device": "cpu"})
    worker_services.worker_stopped("w2@host:12")
    worker_services.worker_report("w3@host:13", device={"device": "cpu"})
    WorkerNode.objects.filter(name="w3@host:13").update(last_seen=timezone.now() - timedelta(seconds=600))
    assert WorkerNode.objects.get(name="w1@host:11").current_run_id == queued.pk
    web = Client()
    web.force_login(alice)
    page = web.get("/workers/").content.decode()
    assert "cuda:NVIDIA H100" in page and "81000 MiB" in page and f"/runs/{queued.pk}/" in page
    assert ">stopped<" in page and ">lost<" in page and ">up<" in page
    assert page.count('class="host-row"') == 1 and page.index(">host<") < page.index("w1@host:11")
    worker_services.worker_report("w4@gpu-box:14", device={"device": "cuda:NVIDIA H200", "gpu_memory_mb": 141000})
    grouped = web.get("/workers/").content.decode()  # one row per host above its workers, hosts in order
    assert grouped.count('class="host-row"') == 2 and grouped.index(">gpu-box<") < grouped.index("w4@gpu-box:14")
    assert grouped.index("w4@gpu-box:14") < grouped.index(">host<")
    WorkerNode.objects.filter(name="w2@host:12").update(last_seen=timezone.now() - timedelta(minutes=11))
    assert "w2@host:12" not in web.get("/workers/").content.decode()  # stopped long ago: an earlier start's
    web.force_login(bob)
    other = web.get("/workers/").content.decode()
    assert f"/runs/{queued.pk}/" not in other and "busy" in other


def test_a_run_deleted_while_its_worker_ends_it_leaves_no_file_and_no_failure(
        alice: Any, digits: Any, monkeypatch: Any, caplog: Any) -> None:
    """Cancel, then delete at once: the row and its files go while the worker still writes the last epoch's
    checkpoint and outputs. The worker removes what it wrote after the delete, and logs no failure."""
    from jobs import run_files
    from jobs.training import execute_next
    from tests.jobs.conftest import after_recording, worker_run

    queued = worker_run(alice, digits, finalize_epochs=1)

    def cancel_and_delete(row: Any) -> None:
        services.run_cancel(Run.objects.get(pk=row.pk))
        services.run_delete(Run.objects.get(pk=row.pk))

    after_recording(monkeypatch, 2, cancel_and_delete)
    with caplog.at_level("INFO", logger="jobs.training"):
        assert execute_next(worker="host-a:1") == "deleted"
    assert not Run.objects.filter(pk=queued.pk).exists()
    assert not run_files.work_dir(queued.pk).exists() and not run_files.exists(queued.pk, "model.pt")
    assert "failed" not in caplog.text and "was deleted while it ended" in caplog.text

"""The queue: queued runs start highest priority first, then oldest first; a priority can change while queued."""
from __future__ import annotations

from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from jobs import selectors, services, worker_services
from jobs.models import Run, RunStatus
from jobs.training import execute_next
from masksel_core import TrainConfig

CONFIG = TrainConfig(mask_type="pixel-any", model="mlp", epochs=1, batch_size=256, device="cpu", warmup_epochs=1,
                     finalize_epochs=0).to_dict()


def queued_run(owner: Any, dataset: Any, priority: int = 0) -> Run:
    """A queued row without its task message: these tests play the worker's part."""
    return Run.objects.create(owner=owner, dataset=dataset, config=CONFIG, total_epochs=1, priority=priority)


def test_the_queue_order_is_priority_then_age(alice: Any, digits: Any) -> None:
    low, high, later_high = queued_run(alice, digits, -1), queued_run(alice, digits, 3), queued_run(alice, digits, 3)
    plain = queued_run(alice, digits)
    order = []
    while (run_id := selectors.next_queued_run_id()) is not None:
        order.append(run_id)
        Run.objects.filter(pk=run_id).update(status=RunStatus.RUNNING)
    assert order == [high.pk, later_high.pk, plain.pk, low.pk]


def test_a_worker_trains_the_first_run_in_the_queue_whatever_message_it_got(alice: Any, digits: Any) -> None:
    first, urgent = queued_run(alice, digits), queued_run(alice, digits)
    services.run_annotate(urgent, priority=5)
    assert execute_next(worker="w:1") == RunStatus.SUCCEEDED
    assert Run.objects.get(pk=urgent.pk).status == RunStatus.SUCCEEDED
    assert Run.objects.get(pk=first.pk).status == RunStatus.QUEUED
    assert execute_next(worker="w:1") == RunStatus.SUCCEEDED
    assert Run.objects.get(pk=first.pk).status == RunStatus.SUCCEEDED
    assert execute_next(worker="w:1") == "idle"  # the extra message of a run already trained finds nothing


def test_priority_over_rest_create_and_change(alice_api: APIClient, bob_api: APIClient, alice: Any,
                                              digits: Any) -> None:
    created = alice_api.post("/api/runs/", {"dataset": digits.pk, **CONFIG, "priority": 2}, format="json")
    assert created.status_code == 201, created.json()
    run_id = created.json()["id"]
    Run.objects.filter(pk=run_id).update(status=RunStatus.QUEUED)  # eager Celery trained it; put it back
    assert alice_api.get(f"/api/runs/{run_id}/").json()["priority"] == 2
    changed = alice_api.patch(f"/api/runs/{run_id}/", {"priority": -4}, format="json")
    assert changed.status_code == 200 and changed.json()["priority"] == -4
    for bad in (11, -11, 1.5, "high", True, None):
        response = alice_api.patch(f"/api/runs/{run_id}/", {"priority": bad}, format="json")
        assert response.status_code == 400 and "priority must be a whole number" in response.json()["error"], bad
    assert bob_api.patch(f"/api/runs/{run_id}/", {"priority": 9}, format="json").status_code == 404
    assert Run.objects.get(pk=run_id).priority == -4
    refused = alice_api.post("/api/runs/", {"dataset": digits.pk, **CONFIG, "priority": 99}, format="json")
    assert refused.status_code == 400 and "priority" in refused.json()["error"]


def test_the_priority_of_a_started_run_cannot_change(alice: Any, digits: Any) -> None:
    run = queued_run(alice, digits)
    worker_services.run_start(run.pk, worker="w:1", device="cpu")
    run.refresh_from_db()
    try:
        services.run_annotate(run, priority=4)
    except services.ServiceError as exc:
        assert "only change while it is queued" in str(exc)
    else:
        raise AssertionError("a running run's priority changed")
    services.run_annotate(run, priority=0, notes="same priority is fine")
    assert Run.objects.get(pk=run.pk).notes == "same priority is fine"


def test_the_workers_page_lists_the_queue_in_order_with_places(alice: Any, bob: Any, digits: Any) -> None:
    bobs = queued_run(bob, digits, 9)
    mine = [queued_run(alice, digits, 0), queued_run(alice, digits, 1)]
    client = Client()
    client.force_login(alice)
    page = client.get("/workers/").content.decode()
    assert page.index(f'data-run="{mine[1].pk}"') < page.index(f'data-run="{mine[0].pk}"')
    assert f'data-run="{bobs.pk}"' not in page  # another user's run counts for places but is not shown
    places = [entry["place"] for entry in selectors.workers_and_queue(alice)["queued"]]
    assert places == [2, 3]


def test_clone_prefills_the_priority(alice: Any, digits: Any) -> None:
    source = queued_run(alice, digits, 7)
    client = Client()
    client.force_login(alice)
    page = client.get(f"/runs/new/?clone={source.pk}").content.decode()
    assert 'name="priority" value="7"' in page


def test_gpu_runs_wait_in_their_own_queue_in_priority_order(alice: Any, digits: Any) -> None:
    from jobs import queues

    def run(device: str, priority: int = 0) -> Run:
        return Run.objects.create(owner=alice, dataset=digits, config={**CONFIG, "device": device}, total_epochs=1,
                                  priority=priority)

    cpu, auto, gpu, urgent_gpu = run("cpu"), run("auto", 2), run("cuda"), run("cuda", 5)
    assert selectors.next_queued_run_id(queues.ANY) == auto.pk  # the highest priority of cpu and auto runs
    assert selectors.next_queued_run_id(queues.GPU) == urgent_gpu.pk  # never a cpu or auto run
    Run.objects.filter(pk__in=[auto.pk, urgent_gpu.pk]).update(status=RunStatus.RUNNING)
    assert (selectors.next_queued_run_id(queues.ANY), selectors.next_queued_run_id(queues.GPU)) == (cpu.pk, gpu.pk)
    assert [queues.kind_of(d) for d in ("cuda", "cpu", "auto", None)] == [queues.GPU] + [queues.ANY] * 3
    from webapp import worker  # names the queues without Django: they must be the ones runs are sent to

    assert worker.worker_queues(gpu=False) == ["train"] == [queues.base_name(queues.ANY)]
    assert worker.worker_queues(gpu=True) == ["train", "train-gpu"] == [queues.base_name(k) for k in
                                                                         (queues.ANY, queues.GPU)]


def test_a_worker_reads_its_own_installations_queues_and_runs_are_sent_there(db: Any) -> None:
    """-Q gives the plain names; the worker reads them with this installation's key, where runs are sent."""
    from types import SimpleNamespace

    from celery import Celery

    from jobs import queues
    from jobs.models import Deployment
    from jobs.tasks import consume_this_installations_queues

    queues.deployment.cache_clear()  # an earlier test's key went with its transaction
    key = queues.deployment()
    assert Deployment.objects.get().key == key and len(key) == 12
    assert queues.queue_name(queues.GPU) == f"train-gpu.{key}" and queues.kind_of_queue(f"train-gpu.{key}") == "gpu"
    app = Celery(set_as_current=False)
    app.amqp.queues.select_add("train")
    app.amqp.queues.select_add("train-gpu")
    app.amqp.queues.select(["train", "train-gpu"])
    consume_this_installations_queues(instance=SimpleNamespace(app=app))
    assert set(app.amqp.queues.consume_from) == {f"train.{key}", f"train-gpu.{key}"}


def test_make_worker_pins_one_process_per_gpu(monkeypatch: Any) -> None:
    import pytest

    from webapp import worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    pinned = worker.plan("0, 1", gpu_here=False)
    assert [extra for extra, _ in pinned] == [{"CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "8"},
                                              {"CUDA_VISIBLE_DEVICES": "1", "OMP_NUM_THREADS": "8"}]
    assert all(command[command.index("-Q") + 1] == "train,train-gpu" for _, command in pinned)
    (extra, command), = worker.plan(None, gpu_here=False)
    assert extra == {} and command[command.index("-Q") + 1] == "train" and "--pool" in command
    with pytest.raises(ValueError, match="GPUS must list GPU numbers"):
        worker.plan("all", gpu_here=True)


def test_workers_on_one_host_share_its_cores_unless_the_operator_says(monkeypatch: Any) -> None:
    from webapp import worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert [worker.cpu_threads(n) for n in (1, 2, 3)] == [{"OMP_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "1"},
                                                          {"OMP_NUM_THREADS": "1"}]
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert worker.cpu_threads(2) == {}


def test_a_worker_reports_since_when_it_is_idle(alice: Any, digits: Any) -> None:
    from jobs.models import WorkerNode

    worker_services.worker_report("w@host:1", device={"device": "cpu"})
    first = WorkerNode.objects.get(name="w@host:1").idle_since
    worker_services.worker_report("w@host:1", device={"device": "cpu"})
    assert first is not None and WorkerNode.objects.get(name="w@host:1").idle_since == first  # idle all along
    run = queued_run(alice, digits)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, lease_owner="w@host:1")
    worker_services.worker_report("w@host:1", device={"device": "cpu"})
    assert WorkerNode.objects.get(name="w@host:1").idle_since is None


def test_a_queued_run_beside_a_long_idle_worker_is_shown_as_stalled(alice: Any, digits: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import WorkerNode

    long_ago = timezone.now() - timedelta(seconds=selectors.STALL_SECONDS + 30)
    old, fresh, gpu = queued_run(alice, digits), queued_run(alice, digits), queued_run(alice, digits)
    Run.objects.filter(pk__in=[old.pk, gpu.pk]).update(created_at=long_ago)
    Run.objects.filter(pk=gpu.pk).update(config={**CONFIG, "device": "cuda"})
    assert selectors.stalled_run_ids(Run.objects.all()) == set()  # no worker at all: nothing to blame
    worker = WorkerNode.objects.create(name="cpu@h:1", device="cpu", last_seen=timezone.now(), idle_since=long_ago)
    assert selectors.stalled_run_ids(Run.objects.all()) == {old.pk}  # a GPU run needs a GPU worker; fresh is new
    client = Client()
    client.force_login(alice)
    assert "waits\n        beside an idle worker" in client.get("/workers/").content.decode()
    assert 'id="run-stalled"' in client.get(f"/runs/{old.pk}/").content.decode()
    assert 'id="run-stalled"' not in client.get(f"/runs/{fresh.pk}/").content.decode()
    WorkerNode.objects.filter(pk=worker.pk).update(idle_since=timezone.now())  # it has just finished a run
    assert selectors.stalled_run_ids(Run.objects.all()) == set()


def test_an_idle_worker_asks_for_a_message_per_startable_run_up_to_the_workers(alice: Any, digits: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from jobs import queues
    from jobs.models import WorkerNode

    for _ in range(3):
        queued_run(alice, digits)
    later = queued_run(alice, digits)
    Run.objects.filter(pk=later.pk).update(retry_after=timezone.now() + timedelta(minutes=5))  # waits to retry
    assert selectors.queue_demand(queues.ANY) == 1  # no worker has reported: the one asking
    for name in ("a@h:1", "b@h:2"):
        WorkerNode.objects.create(name=name, device="cpu", last_seen=timezone.now())
    WorkerNode.objects.create(name="c@h:3", device="cpu", last_seen=timezone.now() - timedelta(hours=1))  # lost
    assert selectors.queue_demand(queues.ANY) == 2
    assert selectors.queue_demand(queues.GPU) == 0  # no GPU run queued

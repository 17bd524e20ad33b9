"""No run left stranded: queued runs are trained whatever the broker lost, and never by another installation.

Real Redis servers and real Celery workers: the broker restarted without persistence while runs wait (a separate
server, and `make run`'s embedded one), the queue purged with two workers racing for the wake-ups, and a second
installation's idle worker on the same Redis database and the same queue name.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from webapp.embedded_redis import redis_answers, start_private_redis

from .conftest import ROOT, free_port, prepared_env, start_worker, upload, wait_for_http, web_server_only

pytestmark = pytest.mark.e2e
SPREAD = True  # every test starts its own processes: the tests may run in different test processes
SLOW = {"mask_type": "channel-any", "model": "lenet5", "epochs": 6, "batch_size": 32, "warmup_epochs": 0,
        "finalize_epochs": 0}
QUICK = {**SLOW, "epochs": 2}


@contextlib.contextmanager
def workers(env: dict[str, str], logs: list[Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = [start_worker(env, log) for log in logs]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def wait_ready(log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while " ready." not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.2)


def submit(client: httpx.Client, dataset: int, options: dict[str, object]) -> int:
    response = client.post("/api/runs/", json={"dataset": dataset, **options})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def wait_all_final(client: httpx.Client, run_ids: list[int], seconds: float) -> dict[int, dict[str, object]]:
    deadline = time.monotonic() + seconds
    while True:
        runs = {i: client.get(f"/api/runs/{i}/").json() for i in run_ids}
        if all(r["status"] in ("succeeded", "failed", "cancelled") for r in runs.values()):
            return runs
        assert time.monotonic() < deadline, {i: r["status"] for i, r in runs.items()}
        time.sleep(0.3)


def wait_epoch(client: httpx.Client, run_id: int, epoch: int) -> None:
    deadline = time.monotonic() + 120
    while int(client.get(f"/api/runs/{run_id}/").json()["epoch"]) < epoch:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def trained_once(client: httpx.Client, runs: dict[int, dict[str, object]]) -> None:
    """Each run succeeded at its first attempt, with every epoch recorded once."""
    for run_id, run in runs.items():
        assert run["status"] == "succeeded" and run["attempts"] == 1, run
        epochs = [m["epoch"] for m in client.get(f"/api/runs/{run_id}/metrics/").json()]
        assert epochs == list(range(1, int(run["total_epochs"]) + 1)), (run_id, epochs)


def test_queued_runs_are_trained_after_redis_restarts_without_persistence(tmp_path: Path, slow_npz: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    server = start_private_redis(url, tmp_path / "redis")
    try:
        with web_server_only(url, tmp_path / "var") as stack, workers(stack.env, [tmp_path / "w.log"]), \
                stack.client() as client:
            dataset = int(upload(stack, slow_npz, "slow")["id"])
            first = submit(client, dataset, SLOW)
            wait_epoch(client, first, 1)
            waiting = [submit(client, dataset, QUICK) for _ in range(2)]
            server.terminate()  # no persistence: the two queued runs' messages are gone
            server.wait(timeout=10)
            assert not redis_answers(url)
            server = start_private_redis(url, tmp_path / "redis")
            assert redis.Redis.from_url(url).dbsize() == 0
            runs = wait_all_final(client, [first, *waiting], 180)
            trained_once(client, runs)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_two_workers_race_for_the_wake_ups_after_the_queue_is_purged(tmp_path: Path, slow_npz: Path,
                                                                      redis_url: str) -> None:
    with web_server_only(redis_url, tmp_path / "var") as stack, stack.client() as client:
        dataset = int(upload(stack, slow_npz, "slow")["id"])
        runs = [submit(client, dataset, QUICK) for _ in range(4)]  # no worker yet: four messages wait
        broker = redis.Redis.from_url(redis_url)
        purged = [key for key in broker.keys(f"{stack.env['MASKSEL_QUEUE']}*") if broker.type(key) == b"list"]
        assert purged and broker.delete(*purged) >= 1  # the queue purged: no message left
        with workers(stack.env, [tmp_path / "a.log", tmp_path / "b.log"]):
            final = wait_all_final(client, runs, 180)
        trained_once(client, final)
        assert len({r["worker"] for r in final.values()}) >= 1


def test_another_installations_worker_on_the_same_redis_takes_nothing(tmp_path: Path, slow_npz: Path,
                                                                    redis_url: str) -> None:
    with web_server_only(redis_url, tmp_path / "var") as stack:
        # Another installation: its own database and files, the same Redis database and the same queue name.
        (tmp_path / "other").mkdir()
        other = prepared_env(redis_url, tmp_path / "other", MASKSEL_QUEUE=stack.env["MASKSEL_QUEUE"],
                             MASKSEL_HEARTBEAT_SECONDS="0.5", MASKSEL_STALE_SECONDS="2")
        with workers(other, [tmp_path / "other.log"]):
            wait_ready(tmp_path / "other.log")  # the other worker is up and idle, reading its queues
            with stack.client() as client:
                dataset = int(upload(stack, slow_npz, "slow")["id"])
                runs = [submit(client, dataset, QUICK) for _ in range(2)]
                time.sleep(4)
                assert {client.get(f"/api/runs/{i}/").json()["status"] for i in runs} == {"queued"}
                with workers(stack.env, [tmp_path / "own.log"]):
                    final = wait_all_final(client, runs, 180)
                trained_once(client, final)
        assert "] received" not in (tmp_path / "other.log").read_text()  # it received no message of ours


def test_queued_runs_survive_a_restart_of_make_run_and_its_embedded_redis(tmp_path: Path) -> None:
    """The embedded default: `make run`'s launcher starts its own Redis, without persistence. Runs queued while
    no worker runs lose their messages when it stops; the next start's worker trains them."""
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(tmp_path),
           "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def launch(workers: int) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "webapp.launcher", "--port", str(port)], cwd=ROOT,
                                   env={**env, "MASKSEL_LOCAL_WORKERS": str(workers)},
                                   stdout=(tmp_path / f"launcher-{workers}.log").open("wb"), stderr=subprocess.STDOUT)
        wait_for_http(f"{base}/accounts/login/", process, timeout=120)
        return process

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0

    process = launch(0)
    try:
        password = (tmp_path / "admin-password").read_text().strip()
        token = httpx.post(f"{base}/api/auth/token/", data={"username": "admin", "password": password}).json()
        with httpx.Client(base_url=base, headers={"Authorization": f"Token {token['token']}"}, timeout=30) as client:
            digits = next(d["id"] for d in client.get("/api/datasets/").json() if d["name"] == "digits")
            runs = [submit(client, digits, {"mask_type": "pixel-any", "model": "mlp", "epochs": 2,
                                            "warmup_epochs": 1, "finalize_epochs": 0}) for _ in range(2)]
        stop(process)  # its Redis goes with it, and the two messages
        assert not redis_answers(redis_url)
        process = launch(1)
        with httpx.Client(base_url=base, headers={"Authorization": f"Token {token['token']}"}, timeout=30) as client:
            trained_once(client, wait_all_final(client, runs, 180))
    finally:
        if process.poll() is None:
            stop(process)

"""A worker killed with SIGKILL mid-run: the next worker resumes the run from its checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import PASSWORD, ROOT, Stack, free_port, manage, upload, wait_for_http

pytestmark = pytest.mark.e2e


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp", "worker", "--pool", "solo", "--concurrency", "1",
         "-Q", env["MASKSEL_QUEUE"], "-n", f"w-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def web_only(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """daphne without a worker: the test starts and kills workers itself. Short leases."""
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(tmp_path),
           "REDIS_URL": redis_url, "MASKSEL_QUEUE": f"train-test-{tag}", "CHANNEL_PREFIX": f"masksel-test-{tag}",
           "MASKSEL_HEARTBEAT_SECONDS": "0.5", "MASKSEL_STALE_SECONDS": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "masksel_setup")
    manage(env, "shell", "-c",
           f"from django.contrib.auth.models import User; User.objects.create_user('alice', password='{PASSWORD}')")
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                            "webapp.asgi:application"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/accounts/login/", web)
        yield Stack(f"http://127.0.0.1:{port}", env, tmp_path, web)
    finally:
        web.terminate()
        web.wait(timeout=20)


def wait_for(client: httpx.Client, run_id: int, condition, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}/").json()
        if condition(run):
            return run
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout} s: {run}")


def test_a_killed_worker_s_run_resumes_on_the_next_worker_with_every_epoch_once(web_only: Stack,
                                                                              slow_npz: Path) -> None:
    dataset = upload(web_only, slow_npz, "slow")
    first = start_worker(web_only.env, web_only.var_dir / "worker-a.log")
    second = None
    try:
        with web_only.client() as client:
            run_id = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "pixel-any",
                                                     "model": "lenet5", "epochs": 10, "batch_size": 32}).json()["id"]
            wait_for(client, run_id, lambda r: r["epoch"] >= 3)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            killed_at = client.get(f"/api/runs/{run_id}/").json()
            assert killed_at["status"] == "running" and killed_at["epoch"] < 10
            time.sleep(2.5)  # the lease goes stale
            second = start_worker(web_only.env, web_only.var_dir / "worker-b.log")
            done = wait_for(client, run_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=180)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2 and "lost" in done["retries"][0]["reason"]
            assert [m["epoch"] for m in client.get(f"/api/runs/{run_id}/metrics/").json()] == list(range(1, 11))
        log = (web_only.var_dir / "worker-b.log").read_text()
        assert f"resuming run {run_id} from its checkpoint" in log
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)

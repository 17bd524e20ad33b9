"""The real stack for integration tests: a real Redis, the launcher's Celery worker and daphne.

Nothing here is mocked. Each module gets its own stack (own SQLite file, media folder, Celery
queue and channel prefix) so tests never see each other's runs; Redis is the one at
MASKSEL_TEST_REDIS_URL (default: database 9 of the local server) or, where none answers, a
private redis-server started the way `make run` starts one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.stack import (  # noqa: F401 - the test modules import these from here
    PASSWORD,
    ROOT,
    Stack,
    free_port,
    manage,
    prepared_env,
    start_web,
    start_worker,
    wait_for_http,
    web_server_only,
)
from webapp.embedded_redis import redis_answers, start_private_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("MASKSEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    if redis_answers(url):
        yield url
        return
    url = f"redis://127.0.0.1:{free_port()}/0"
    process = start_private_redis(url, tmp_path_factory.mktemp("redis"))
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    var_dir = tmp_path_factory.mktemp("var")
    # Zarr stores over 64 KiB are streamed, with a reader process (only stores are concerned).
    env = prepared_env(redis_url, var_dir, MASKSEL_MEMORY_BUDGET="64K", MASKSEL_LOADER_WORKERS="1")
    port = free_port()
    log = (var_dir / "stack.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "webapp.launcher", "--no-prepare", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base_url}/accounts/login/", process)
        yield Stack(base_url, env, var_dir, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def slow_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big enough that an epoch of lenet5 takes a noticeable fraction of a second on a CPU."""
    from tests.conftest import make_npz

    path = tmp_path_factory.mktemp("data") / "slow.npz"
    make_npz(path, n=3000, channels=2, size=16, classes=4)
    return path


def upload(stack: Stack, path: Path, name: str) -> dict[str, object]:
    with stack.client() as client, path.open("rb") as handle:
        response = client.post("/api/datasets/", files={"file": (path.name, handle)}, data={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def web_only(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    with web_server_only(redis_url, tmp_path) as stack:
        yield stack


POSTGRES = os.environ.get("MASKSEL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (dropped after)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"masksel_hosts_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({exc}): this test needs a database that processes share")
    admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a browser Playwright downloads)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): browser tests cannot run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield instance
        instance.close()


def log_in(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/runs/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", stack.username)
    page.fill("#id_password", stack.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{stack.base_url}/runs/")



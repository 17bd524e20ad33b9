"""The real service stack, started as separate processes, for the integration tests and the benchmarks alike.

Each installation it prepares is private (own SQLite file or database, media folder, Celery queue and channel
prefix), so that tests and benchmarks never see each other's runs. Nothing here is mocked.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "alice-password-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the launcher exited with {process.returncode} before serving {url}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")



@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    var_dir: Path
    process: subprocess.Popen[bytes]
    username: str = "alice"
    password: str = PASSWORD
    _token: str = field(default="", repr=False)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://")

    def token(self) -> str:
        if not self._token:
            response = httpx.post(f"{self.base_url}/api/auth/token/",
                                  data={"username": self.username, "password": self.password})
            response.raise_for_status()
            self._token = response.json()["token"]
        return self._token

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Token {self.token()}"}, timeout=30)



def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=180)


def prepared_env(redis_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a private installation (own database, media, queue and channel prefix), migrated,
    seeded, and with the user alice."""
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(var_dir),
           "REDIS_URL": redis_url, "MASKSEL_QUEUE": f"train-test-{tag}", "CHANNEL_PREFIX": f"masksel-test-{tag}",
           "PYTHONUNBUFFERED": "1", **extra}
    if "DATABASE_URL" in extra:  # a database the test names: migrated and seeded here
        migrate_and_seed(env)
        return env
    env.pop("DATABASE_URL", None)  # SQLite under var_dir: a copy of this process's migrated and seeded one
    var_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(sqlite_template() / "db.sqlite3")) as source, \
            contextlib.closing(sqlite3.connect(var_dir / "db.sqlite3")) as copy:
        source.backup(copy)
        copy.execute("DELETE FROM jobs_deployment")  # its own installation key, made on first use
        copy.commit()
    return env


def migrate_and_seed(env: dict[str, str]) -> None:
    # One process for the three steps: each start of Django (and torch) takes seconds on a small machine.
    manage(env, "shell", "-c",
           "from django.core.management import call_command; from django.contrib.auth.models import User; "
           "call_command('migrate', interactive=False, verbosity=0); call_command('masksel_setup'); "
           f"User.objects.create_user('alice', password='{PASSWORD}')")


@functools.cache
def sqlite_template() -> Path:
    """A migrated and seeded SQLite installation, made once per process: a private installation starts from a copy
    (4.4 s of CPU time saved each; the suite prepares dozens)."""
    var_dir = Path(tempfile.mkdtemp(prefix="masksel-template-"))
    atexit.register(shutil.rmtree, var_dir, ignore_errors=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(var_dir)}
    env.pop("DATABASE_URL", None)
    migrate_and_seed(env)
    return var_dir



def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """One Celery worker process in its own process group (so a test can SIGKILL it alone)."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp", "worker", "--pool", "solo", "--concurrency", "1",
         "-Q", env["MASKSEL_QUEUE"], "-n", f"w-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def start_web(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                "webapp.asgi:application"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_http(f"http://127.0.0.1:{port}/accounts/login/", process)
    return process


@contextlib.contextmanager
def benchmark_redis() -> Iterator[str]:
    """The Redis at MASKSEL_TEST_REDIS_URL (default: database 9 of the local server), or a private one started
    the way `make run` starts one when nothing answers there."""
    from webapp.embedded_redis import redis_answers, start_private_redis

    url = os.environ.get("MASKSEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    if redis_answers(url):
        yield url
        return
    url = f"redis://127.0.0.1:{free_port()}/0"
    private = start_private_redis(url, Path(tempfile.mkdtemp(prefix="masksel-bench-redis-")))
    try:
        yield url
    finally:
        private.terminate()
        private.wait(timeout=10)


@contextlib.contextmanager
def web_server_only(redis_url: str, var_dir: Path) -> Iterator[Stack]:
    """daphne without a worker: the test starts, kills and restarts processes itself. Short leases."""
    env = prepared_env(redis_url, var_dir, MASKSEL_HEARTBEAT_SECONDS="0.5", MASKSEL_STALE_SECONDS="2")
    port = free_port()
    stack = Stack(f"http://127.0.0.1:{port}", env, var_dir, start_web(env, port))
    try:
        yield stack
    finally:
        stack.process.terminate()
        stack.process.wait(timeout=20)

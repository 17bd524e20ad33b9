"""`make run`: prepare the database, then start Redis (if needed), the local workers and the web server.

All children run in their own process groups and are stopped together on Ctrl-C or SIGTERM;
if one of them dies, the others are stopped too and the launcher exits with an error.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .embedded_redis import redis_answers, start_private_redis
from .worker import (
    StopOnSignal,
    cpu_threads,
    has_gpu,
    stop,
    storage_problem,
    supervise,
    worker_command,
    worker_queues,
)

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 10.0


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)


def prepare() -> None:
    """Migrate, seed the built-in data sets and the first user (all idempotent)."""
    _manage("migrate", "--noinput", "-v", "0")
    _manage("masksel_setup")


def _spawn(name: str, command: list[str], extra: dict[str, str] | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    return name, subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(extra or {})}, start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run masksel: Redis (if needed), MASKSEL_LOCAL_WORKERS workers "
                                                 "(default 1) and the web server.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-prepare", action="store_true", help="skip migrate and seeding")
    args = parser.parse_args(argv)
    local_workers = _local_workers()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    redis_url = os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    var_dir = Path(os.environ.get("MASKSEL_VAR_DIR", ROOT / "var"))
    # JPEG and thumbnail versions of a data set are computed once and reused by later runs.
    os.environ.setdefault("MASKSEL_CACHE_DIR", str(var_dir / "cache"))
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    flag = StopOnSignal()
    try:
        if not args.no_prepare:
            prepare()
        problem = storage_problem()
        if problem:
            raise RuntimeError(problem)
        if redis_answers(redis_url):
            print(f"masksel: using Redis at {redis_url}", flush=True)
        else:
            print(f"masksel: nothing answers at {redis_url}; starting a private redis-server", flush=True)
            children.append(("redis", start_private_redis(redis_url, var_dir / "redis")))
        gpu = local_workers > 0 and has_gpu()
        for index in range(1, local_workers + 1):
            children.append(_spawn(f"worker {index}", worker_command(f"worker{index}-{os.getpid()}",
                                                                     worker_queues(gpu=gpu)),
                                   cpu_threads(local_workers)))
        print(f"masksel: {local_workers} local worker(s) reading {', '.join(worker_queues(gpu=gpu))}"
              if local_workers else "masksel: no local worker (MASKSEL_LOCAL_WORKERS=0); runs wait for workers "
              "started with `make worker` on hosts that share this service's Redis and database", flush=True)
        children.append(_spawn("web", [sys.executable, "-m", "daphne", "-b", args.host, "-p", str(args.port),
                                       "webapp.asgi:application"]))
        _wait_for_port(args.host, args.port, children)
        _announce(args.host, args.port, var_dir)
        return supervise(children, flag)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"masksel: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop(children, grace=STOP_GRACE_SECONDS)


def _local_workers() -> int:
    """`MASKSEL_LOCAL_WORKERS`: training workers started beside the web server (default 1; 0: the web server
    only, for a service whose workers run on other hosts with `make worker`)."""
    raw = os.environ.get("MASKSEL_LOCAL_WORKERS", "1").strip()
    if not raw.isdigit():
        raise SystemExit(f"masksel: MASKSEL_LOCAL_WORKERS must be a whole number >= 0, got {raw!r}")
    return int(raw)


def _wait_for_port(host: str, port: int, children: list[tuple[str, subprocess.Popen[bytes]]],
                   timeout: float = 60.0) -> None:
    """Announce the URL only once the web server accepts connections there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in children:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode} during start-up")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the web server did not listen on {host}:{port} within {timeout:.0f} s")


def _announce(host: str, port: int, var_dir: Path) -> None:
    password_file = var_dir / "admin-password"
    login = (f"log in as admin with the password in {password_file} ({password_file.read_text().strip()})"
             if password_file.exists() else "log in with your user (python manage.py createsuperuser)")
    print(f"\nmasksel is running at http://{host}:{port}/ ; {login}. Press Ctrl-C to stop.\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())

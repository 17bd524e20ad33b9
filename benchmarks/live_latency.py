"""Live latency: from the worker's broadcast of an epoch to the message in websocket clients.

Starts the real stack (the `make run` launcher: Redis, one Celery worker, daphne) on a temporary
database, connects N viewers to one run, and measures `received - sent_at` (`sent_at` is stamped by
the worker right after the epoch row is committed; same machine clock) for every viewer and epoch.
Goal (issue 4): p50 <= 50 ms and p99 <= 250 ms with 50 viewers, on loopback.

    python benchmarks/live_latency.py [--viewers 50] [--epochs 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_stack(var: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "MASKSEL_VAR_DIR": str(var),
           "REDIS_URL": os.environ.get("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0"),
           "MASKSEL_QUEUE": f"bench-{tag}", "CHANNEL_PREFIX": f"bench-{tag}"}
    env.pop("DATABASE_URL", None)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "webapp.launcher", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=(var / "stack.log").open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/accounts/login/", timeout=2).status_code == 200:
                return process, base, env
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("the stack did not start; see stack.log")


async def viewer(url: str, origin: str, latencies: list[float]) -> None:
    async with websockets.connect(url, origin=origin, open_timeout=60) as ws:
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "epoch":
                latencies.append((time.time() - message["sent_at"]) * 1000)
            if message["type"] == "status" and message["status"] in ("succeeded", "failed", "cancelled"):
                return


async def measure(base: str, token: str, run_id: int, viewers: int) -> list[float]:
    latencies: list[float] = []
    url = f"{base.replace('http', 'ws')}/ws/runs/{run_id}/?token={token}"
    await asyncio.gather(*(viewer(url, base, latencies) for _ in range(viewers)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="masksel-latency-"))
    process, base, env = start_stack(var)
    try:
        token = httpx.post(f"{base}/api/auth/token/", data={"username": "admin", "password": (
            var / "admin-password").read_text().strip()}).json()["token"]
        headers = {"Authorization": f"Token {token}"}
        rng = np.random.default_rng(0)
        x = rng.random((3000, 2, 16, 16), dtype=np.float32)
        np.savez(var / "data.npz", x_train=x, y_train=np.arange(3000) % 4)
        with (var / "data.npz").open("rb") as handle:
            dataset = httpx.post(f"{base}/api/datasets/", headers=headers, files={"file": handle},
                                 data={"name": "bench"}, timeout=60).json()["id"]
        run_id = httpx.post(f"{base}/api/runs/", headers=headers, json={
            "dataset": dataset, "mask_type": "pixel-any", "model": "lenet5", "epochs": args.epochs,
            "batch_size": 64}).json()["id"]
        latencies = asyncio.run(measure(base, token, run_id, args.viewers))
        q = np.percentile(latencies, [50, 90, 99])
        print(f"{args.viewers} viewers, {args.epochs} epochs, {len(latencies)} epoch messages received")
        print("| viewers | messages | p50 ms | p90 ms | p99 ms | max ms |")
        print("|---:|---:|---:|---:|---:|---:|")
        print(f"| {args.viewers} | {len(latencies)} | {q[0]:.1f} | {q[1]:.1f} | {q[2]:.1f} | "
              f"{max(latencies):.1f} |")
        print(f"(mean {statistics.mean(latencies):.1f} ms)")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()

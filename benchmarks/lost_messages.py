"""Queued runs after the broker lost every message: how long each waits for an idle worker.

20 small runs (digits, lenet5, 2 epochs) are submitted while no worker is up, so that every one has a message
waiting; then either nothing happens (the baseline) or Redis restarts without persistence and loses them all.
Two workers start, with the default settings (an idle worker looks for queued runs without a message every 5 s).
Per run: its wait, from the moment its worker became free (its previous run's end, or the workers' start) to its
own start. Goal: every wait at most 30 s after the loss. Real parts: daphne, two Celery workers, a private
redis-server, PostgreSQL when one answers (else SQLite).

    python benchmarks/lost_messages.py [--runs 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workers import fresh_database  # noqa: E402


def one_round(lose: bool, runs: int) -> tuple[float, list[float]]:
    """Seconds from the workers' start to the last run done, and each run's wait for its worker."""
    from testkit.stack import Stack, free_port, prepared_env, start_web, start_worker
    from webapp.embedded_redis import start_private_redis

    var_dir = Path(tempfile.mkdtemp(prefix="masksel-bench-lost-"))
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    redis = start_private_redis(redis_url, var_dir / "redis")
    database, admin = fresh_database()
    env = prepared_env(redis_url, var_dir, **({"DATABASE_URL": database} if database else {}))
    port = free_port()
    web = Stack(f"http://127.0.0.1:{port}", env, var_dir, start_web(env, port))
    workers = []
    try:
        with web.client() as client:
            digits = next(d for d in client.get("/api/datasets/").json() if d["name"] == "digits")
            options = {"dataset": digits["id"], "mask_type": "pixel-any", "model": "lenet5", "epochs": 2,
                       "batch_size": 64, "warmup_epochs": 0, "finalize_epochs": 0}
            ids = [client.post("/api/runs/", json={**options, "seed": seed}).json()["id"] for seed in range(runs)]
            if lose:
                redis.terminate()
                redis.wait(timeout=10)
                redis = start_private_redis(redis_url, var_dir / "redis")
            workers = [start_worker({**env, "OMP_NUM_THREADS": "1"}, var_dir / f"worker-{i}.log") for i in range(2)]
            deadline = time.monotonic() + 120
            while not all(b" ready." in (var_dir / f"worker-{i}.log").read_bytes() for i in range(2)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not start (logs in {var_dir})")
                time.sleep(0.2)
            ready = datetime.now().astimezone()
            started = time.perf_counter()
            while True:
                done = client.get(f"/api/runs/?ids={','.join(map(str, ids))}").json()
                if any(run["status"] in ("failed", "cancelled") for run in done):
                    raise RuntimeError(f"a run did not succeed: {done}")
                if all(run["status"] == "succeeded" for run in done):
                    break
                if time.perf_counter() - started > 900:
                    raise RuntimeError("the runs did not finish in 15 minutes")
                time.sleep(0.2)
            total = time.perf_counter() - started
    finally:
        for process in [*workers, web.process, redis]:
            process.terminate()
        for process in [*workers, web.process, redis]:
            process.wait(timeout=30)
        if admin is not None:
            admin.execute(f'DROP DATABASE "{database.rsplit("/", 1)[1]}" WITH (FORCE)')
    waits = []
    for worker in {run["worker"] for run in done}:
        free = ready
        for run in sorted((r for r in done if r["worker"] == worker), key=lambda r: r["started_at"]):
            waits.append(max((datetime.fromisoformat(run["started_at"]) - free).total_seconds(), 0.0))
            free = datetime.fromisoformat(run["finished_at"])
    return total, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"{args.runs} queued runs (digits, lenet5, pixel-any, 2 epochs), 2 workers of 1 thread\n")
    print("| messages | seconds to the last run | vs kept | median wait (s) | longest wait (s) |")
    print("|---|---:|---:|---:|---:|")
    baseline = None
    for label, lose in (("kept", False), ("lost (Redis restarted)", True)):
        total, waits = one_round(lose, args.runs)
        baseline = baseline or total
        print(f"| {label} | {total:.1f} | {total / baseline:.2f}x | {statistics.median(waits):.1f} "
              f"| {max(waits):.1f} |", flush=True)


if __name__ == "__main__":
    main()

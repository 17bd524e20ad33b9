"""Queued runs over more workers: how long 8 small runs take from submission to the last one done, with one
worker and with two, on the real parts (daphne, Celery workers over Redis, a PostgreSQL database when one
answers, else SQLite).

Each CPU worker trains with `--threads` torch threads (OMP_NUM_THREADS): on a host with C cores, N workers
of C/N threads each share the cores without fighting over them. The single worker gets every core.
Goal: two workers finish in at most 0.6x the time one takes.

    python benchmarks/workers.py [--runs 8] [--epochs 6]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POSTGRES = os.environ.get("MASKSEL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


def fresh_database() -> tuple[str | None, object]:
    """A new PostgreSQL database (its URL and the admin connection that drops it), or (None, None)."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except Exception:  # noqa: BLE001 - no PostgreSQL here: SQLite
        return None, None
    name = f"masksel_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES.rsplit("/", 1)[0] + "/" + name, admin


def one_round(workers: int, threads: int, args: argparse.Namespace, redis_url: str) -> tuple[float, list[str]]:
    """Seconds from submitting `args.runs` runs (workers already up) to the last one succeeded; where each ran."""
    from testkit.stack import Stack, free_port, prepared_env, start_web, start_worker

    database, admin = fresh_database()
    var_dir = Path(tempfile.mkdtemp(prefix="masksel-bench-workers-"))
    env = prepared_env(redis_url, var_dir, **({"DATABASE_URL": database} if database else {}))
    port = free_port()
    web = Stack(f"http://127.0.0.1:{port}", env, var_dir, start_web(env, port))
    processes = [start_worker({**env, "OMP_NUM_THREADS": str(threads)}, var_dir / f"worker-{i}.log")
                 for i in range(workers)]
    try:
        with web.client() as client:
            deadline = time.monotonic() + 120
            while not all(b" ready." in (var_dir / f"worker-{i}.log").read_bytes() for i in range(workers)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not start (logs in {var_dir})")
                time.sleep(0.2)
            digits = next(d for d in client.get("/api/datasets/").json() if d["name"] == "digits")
            options = {"dataset": digits["id"], "mask_type": "pixel-any", "model": "lenet5", "epochs": args.epochs,
                       "batch_size": 64, "warmup_epochs": 1, "finalize_epochs": 0}
            start = time.perf_counter()
            ids = [client.post("/api/runs/", json={**options, "seed": seed}).json()["id"] for seed in range(args.runs)]
            while True:
                runs = client.get(f"/api/runs/?ids={','.join(map(str, ids))}").json()
                if any(run["status"] in ("failed", "cancelled") for run in runs):
                    raise RuntimeError(f"a run did not succeed: {runs}")
                if all(run["status"] == "succeeded" for run in runs):
                    return time.perf_counter() - start, [run["worker"] for run in runs]
                time.sleep(0.1)
    finally:
        for process in [*processes, web.process]:
            process.terminate()
        for process in [*processes, web.process]:
            process.wait(timeout=30)
        if admin is not None:
            admin.execute(f'DROP DATABASE "{database.rsplit("/", 1)[1]}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1, help="repeat each set-up; the median counts")
    args = parser.parse_args()
    from testkit.stack import benchmark_redis

    with benchmark_redis() as redis_url:
        compare(args, redis_url)


def compare(args: argparse.Namespace, redis_url: str) -> None:
    cores = os.cpu_count() or 1
    # The last: two workers that each start a thread per core (what `make run` did before it shared the cores).
    setups = [("1 worker", 1, cores), ("2 workers", 2, max(cores // 2, 1)), ("2, unshared", 2, cores)]
    print(f"{args.runs} queued runs (digits, lenet5, pixel-any, {args.epochs} epochs each), {cores} cores, "
          f"median of {args.rounds}")
    print(f"{'set-up':<12} {'threads each':>12} {'seconds':>8} {'vs 1 worker':>12}  runs per worker")
    baseline = None
    for label, workers, threads in setups:
        times, spread = [], ""
        for _ in range(args.rounds):
            seconds, where = one_round(workers, threads, args, redis_url)
            times.append(seconds)
            counts = sorted((where.count(name) for name in set(where)), reverse=True)
            spread = "/".join(map(str, counts))
        median = statistics.median(times)
        baseline = baseline or median
        print(f"{label:<12} {threads:>12} {median:>8.1f} {median / baseline:>11.2f}x  {spread}")


if __name__ == "__main__":
    main()

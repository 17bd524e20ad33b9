"""Studies on the real parts (daphne, Celery workers over Redis, PostgreSQL when one answers, else SQLite):

1. Search against a grid: on digits (pixel-any, mlp), a 12-trial study with 2 at once searching `target_fraction`
   (log-scaled, 0.03 to 0.6) and the written model's learning rate (`network_lr`, log-scaled, 0.001 to 0.03),
   against 12-run grids over the same budgets at the default rate, evenly spaced and log-spaced, per seed.
   Each set's front (test accuracy up, kept fraction down) is scored by its hypervolume against the reference
   point (accuracy 0, fraction 1): the area of the plane its runs dominate. Goal: the study's larger than the
   grid's on at least 2 of 3 seeds.
2. Workers: the same 12-trial study (2 at once) with one worker and with two (the cores shared out as torch
   threads, as `benchmarks/workers.py`), from submission to the study's end. Goal: two take at most 0.6x the
   time of one.
3. The study page with 200 trials: Chromium, from navigation start to the first drawing (scatter, front, table),
   and the drawing's own time. Goal: at most 300 ms.

Every run is shortened alike (`BASE`: 40 selection epochs, 20 of warm-up, at most 30 of finalize).

    python benchmarks/studies.py [--seeds 3] [--skip-workers] [--skip-search]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workers import fresh_database  # noqa: E402

BASE = {"mask_type": "pixel-any", "model": "mlp", "epochs": 40, "warmup_epochs": 20, "finalize_epochs": 30}
LOW, HIGH, TRIALS, PARALLEL = 0.03, 0.6, 12, 2
#: The study searches the budget and the written model's learning rate; the grids, the budget at the default rate.
SPACE = {"target_fraction": {"low": LOW, "high": HIGH, "log": True}, "network_lr": {"low": 1e-3, "high": 3e-2,
                                                                                    "log": True}}
OBJECTIVES = [{"metric": "test_accuracy", "direction": "maximize"}, {"metric": "fraction", "direction": "minimize"}]


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated by (accuracy, fraction) points, accuracy up and fraction down, above accuracy 0 and below
    fraction 1: the sum of the front's steps, cheapest first."""
    area, best = 0.0, 0.0
    for fraction, accuracy in sorted((f, a) for a, f in points if f <= 1):
        if accuracy > best:
            area += (accuracy - best) * (1 - fraction)
            best = accuracy
    return area


@contextmanager
def service(workers: int, redis_url: str) -> Iterator[Any]:
    """A private installation: daphne and `workers` Celery workers that share the cores (torch threads each: the
    cores over the workers, as `benchmarks/workers.py`)."""
    from testkit.stack import Stack, free_port, prepared_env, start_web, start_worker

    database, admin = fresh_database()
    var_dir = Path(tempfile.mkdtemp(prefix="masksel-bench-studies-"))
    env = prepared_env(redis_url, var_dir, **({"DATABASE_URL": database} if database else {}))
    port = free_port()
    web = Stack(f"http://127.0.0.1:{port}", env, var_dir, start_web(env, port))
    threads = str(max((os.cpu_count() or 1) // max(workers, 1), 1))
    processes = [start_worker({**env, "OMP_NUM_THREADS": threads}, var_dir / f"worker-{i}.log")
                 for i in range(workers)]
    try:
        deadline = time.monotonic() + 120
        while not all(b" ready." in (var_dir / f"worker-{i}.log").read_bytes() for i in range(workers)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not start (logs in {var_dir})")
            time.sleep(0.2)
        yield web
    finally:
        for process in [*processes, web.process]:
            process.terminate()
            process.wait(timeout=60)
        if admin is not None:
            admin.execute(f'DROP DATABASE "{database.rsplit("/", 1)[1]}" WITH (FORCE)')  # type: ignore[attr-defined]
        shutil.rmtree(var_dir, ignore_errors=True)


def digits_id(client: Any) -> int:
    return next(d["id"] for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")


def run_study(web: Any, seed: int) -> tuple[list[tuple[float, float]], float]:
    """The study's (accuracy, fraction) points and its seconds from submission to its end."""
    with web.client() as client:
        started = time.perf_counter()
        answer = client.post("/api/studies/", json={
            "name": f"bench-{seed}", "dataset": digits_id(client), "base": {**BASE, "seed": seed},
            "space": SPACE, "objectives": OBJECTIVES,
            "trials": TRIALS, "parallel": PARALLEL, "seed": seed})
        answer.raise_for_status()
        while True:
            study = client.get(f"/api/studies/{answer.json()['id']}/").json()
            if study["status"] != "running":
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - started
    if study["status"] != "finished":
        raise RuntimeError(f"study ended {study['status']}: {study['error']}")
    return [tuple(t["values"]) for t in study["trials"] if t["state"] == "complete"], seconds


def run_grid(web: Any, seed: int, fractions: list[float]) -> list[tuple[float, float]]:
    with web.client() as client:
        dataset = digits_id(client)
        ids = [client.post("/api/runs/", json={**BASE, "dataset": dataset, "seed": seed, "target_fraction": f}
                           ).json()["id"] for f in fractions]
        while True:
            runs = client.get(f"/api/runs/?ids={','.join(map(str, ids))}").json()
            if all(run["status"] in ("succeeded", "failed", "cancelled") for run in runs):
                break
            time.sleep(0.5)
    return [(run["test_accuracy"], run["fraction"]) for run in runs if run["status"] == "succeeded"]


def search_against_grid(seeds: int, redis_url: str) -> None:
    grids = {"grid, even": list(np.linspace(LOW, HIGH, TRIALS)), "grid, log": list(np.geomspace(LOW, HIGH, TRIALS))}
    print(f"\n1. Hypervolume of the front (accuracy up, fraction down; reference: accuracy 0, fraction 1), digits, "
          f"pixel-any, mlp, {TRIALS} runs each, 2 workers")
    print(f"| seed | study | {' | '.join(grids)} | study / best grid |")
    print("|---:|---:|" + "---:|" * len(grids) + "---:|")
    wins = 0
    with service(2, redis_url) as web:
        for seed in range(seeds):
            study = hypervolume(run_study(web, seed)[0])
            scores = {name: hypervolume(run_grid(web, seed, [float(f) for f in fractions]))
                      for name, fractions in grids.items()}
            wins += study > max(scores.values())
            print(f"| {seed} | {study:.4f} | " + " | ".join(f"{v:.4f}" for v in scores.values()) +
                  f" | {study / max(scores.values()):.3f} |", flush=True)
    print(f"study ahead of every grid on {wins} of {seeds} seeds (goal: 2 of 3)")


def workers_speedup(redis_url: str) -> None:
    print(f"\n2. A {TRIALS}-trial study ({PARALLEL} at once) from submission to its end")
    print("| workers | seconds | ratio to one |")
    print("|---:|---:|---:|")
    times = {}
    for workers in (1, 2):
        with service(workers, redis_url) as web:
            times[workers] = run_study(web, 0)[1]
        print(f"| {workers} | {times[workers]:.1f} | {times[workers] / times[1]:.2f} |", flush=True)
    print("goal: two workers at most 0.60x")


def page_with_200_trials(redis_url: str) -> None:
    """200 finished trials written straight into the database (no training), then the page in Chromium."""
    from testkit.stack import manage
    from tests.e2e.conftest import CHROMIUM, log_in

    with service(0, redis_url) as web:
        manage(web.env, "shell", "-c", SEED_200)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            log_in(page, web)
            first, drawing = [], []
            for _ in range(5):
                page.goto(f"{web.base_url}/studies/1/")
                page.wait_for_function("window.maskselStudy && window.maskselStudy.draws >= 1")
                first.append(page.evaluate("window.maskselStudy.drawnAt"))
                drawing.append(page.evaluate("window.maskselStudy.drawMs"))
                points = page.evaluate("window.maskselStudy.points.length")
            browser.close()
    print("\n3. The study page with 200 trials (median of 5 loads, Chromium)")
    print("| trials drawn | navigation start to drawn (ms) | the drawing itself (ms) |")
    print("|---:|---:|---:|")
    print(f"| {points} | {np.median(first):.0f} | {np.median(drawing):.1f} |")
    print("goal: at most 300 ms")


SEED_200 = """
import random
from django.contrib.auth.models import User
from jobs.models import Dataset, Run, Study, Trial
rng = random.Random(0)
owner = User.objects.get(username='alice')
digits = Dataset.objects.get(builtin='digits')
study = Study.objects.create(owner=owner, name='two hundred', dataset=digits, trials=200, parallel=2,
    status='finished', space={'target_fraction': {'low': 0.03, 'high': 0.6, 'log': True}},
    objectives=[{'metric': 'test_accuracy', 'direction': 'maximize'}, {'metric': 'fraction', 'direction': 'minimize'}])
front, best = [], -1
for number, fraction in enumerate(sorted(rng.uniform(0.03, 0.6) for _ in range(200))):
    accuracy = min(0.99, 0.5 + 0.5 * fraction ** 0.3 * rng.uniform(0.8, 1.05))
    run = Run.objects.create(owner=owner, dataset=digits, config={'mask_type': 'pixel-any'}, status='succeeded',
                             fraction=fraction, test_accuracy=accuracy)
    Trial.objects.create(study=study, number=number, run=run, params={'target_fraction': fraction},
                         state='complete', values=[accuracy, fraction])
    if accuracy > best:
        front.append(run.pk)
        best = accuracy
study.pareto = front
study.save()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    args = parser.parse_args()
    from testkit.stack import benchmark_redis

    database, admin = fresh_database()
    if admin is not None:
        admin.execute(f'DROP DATABASE "{database.rsplit("/", 1)[1]}"')  # type: ignore[attr-defined, union-attr]
    print(f"machine: {os.cpu_count()} CPU cores; database: {'PostgreSQL' if database else 'SQLite'}")
    with benchmark_redis() as redis_url:
        page_with_200_trials(redis_url)
        if not args.skip_workers:
            workers_speedup(redis_url)
        if not args.skip_search:
            search_against_grid(args.seeds, redis_url)

if __name__ == "__main__":
    main()

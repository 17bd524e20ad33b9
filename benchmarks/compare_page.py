"""The compare page for 20 runs x 200 epochs: server time, and time until the charts are drawn.

Server: median of Django test-client requests (view, queries, template, the inline JSON).
Browser: headless Chromium against daphne on the same database, from navigation start until
compare.js has drawn all three charts (`performance.now()` recorded by the page).
Goal (issue 4): server <= 300 ms, charts drawn <= 1 s.

Then the same data over HTTP on loopback, against MLflow's tracking server where one is
installed (`--mlflow /path/to/mlflow`, or `mlflow` on the PATH; it is not a dependency of
masksel: `pip install mlflow` into any environment): the same 20 runs x 200 epochs x 6 metrics
logged into a fresh MLflow server (SQLite store), read back through `metrics/get-history` (one
request per run and metric, as API clients do) and `get-history-bulk-interval` (one request per
metric for all runs, as MLflow's own compare charts do), against masksel's compare page and its
`/api/runs/<id>/metrics/` (one request per run, every metric).

    python benchmarks/compare_page.py [--runs 20] [--epochs 200] [--mlflow PATH]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def populate(runs: int, epochs: int) -> tuple[list[int], str]:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from jobs.dataset_services import dataset_seed_builtins
    from jobs.models import EpochMetric, Run

    call_command("migrate", verbosity=0)
    digits = dataset_seed_builtins()[0]
    User.objects.create_user("bench", password="bench-password-1")
    user = User.objects.get(username="bench")
    rng = np.random.default_rng(0)
    ids = []
    for r in range(runs):
        run = Run.objects.create(owner=user, dataset=digits, status="succeeded", epoch=epochs, total_epochs=epochs,
                                 config={"mask_type": "pixel-any", "model": "lenet5", "seed": r, "lambda_init": 0.1})
        bits = np.packbits(rng.integers(0, 2, 64, dtype=np.uint8)).tobytes()
        EpochMetric.objects.bulk_create(
            EpochMetric(run=run, epoch=e, task_loss=1.0 / e, mask_loss=0.5, val_accuracy=min(0.99, 0.5 + e / 400),
                        lambda_value=0.1, tau=1.0, fraction=max(0.05, 1 - e / epochs), mask_shape=[1, 8, 8],
                        mask_bits=bits) for e in range(1, epochs + 1))
        ids.append(run.pk)
    return ids, ",".join(map(str, ids))


METRICS = ("task_loss", "mask_loss", "val_accuracy", "lambda", "tau", "fraction")


def metric_rows(epochs: int) -> list[dict[str, float]]:
    """The values `populate` stores, keyed as MLflow would log them."""
    return [{"task_loss": 1.0 / e, "mask_loss": 0.5, "val_accuracy": min(0.99, 0.5 + e / 400), "lambda": 0.1,
             "tau": 1.0, "fraction": max(0.05, 1 - e / epochs)} for e in range(1, epochs + 1)]


def timed(repeat: int, action) -> list[float]:  # type: ignore[no-untyped-def]
    action()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times


def masksel_over_http(base: str, ids: list[int], url: str, repeat: int) -> dict[str, list[float]]:
    import httpx

    session = httpx.Client(base_url=base, timeout=60)
    session.get("/accounts/login/")
    session.post("/accounts/login/", data={"username": "bench", "password": "bench-password-1",
                                           "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                 headers={"Referer": f"{base}/accounts/login/"})
    token = httpx.post(f"{base}/api/auth/token/", data={"username": "bench", "password": "bench-password-1"}).json()
    api = httpx.Client(base_url=base, headers={"Authorization": f"Token {token['token']}"}, timeout=60)

    def page() -> None:
        assert session.get(url).status_code == 200

    def per_run() -> None:
        for run_id in ids:
            assert len(api.get(f"/api/runs/{run_id}/metrics/").json()) > 0

    return {"masksel: compare page (every metric of every run)": timed(repeat, page),
            f"masksel: /api/runs/<id>/metrics/ x {len(ids)}": timed(repeat, per_run)}


def mlflow_over_http(mlflow: str, runs: int, epochs: int, repeat: int) -> dict[str, list[float]]:
    """Start a private MLflow tracking server, log the same metrics, time reading them back."""
    import httpx

    store = tempfile.mkdtemp(prefix="masksel-mlflow-")
    port = free_port()
    server = subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
                               "--default-artifact-root", f"{store}/artifacts", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        for _ in range(600):
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        experiment = client.post("/api/2.0/mlflow/experiments/create", json={"name": "bench"}).json()
        rows = metric_rows(epochs)
        run_ids = []
        for _ in range(runs):
            created = client.post("/api/2.0/mlflow/runs/create", json={"experiment_id": experiment["experiment_id"]})
            run_id = created.json()["run"]["info"]["run_id"]
            metrics = [{"key": key, "value": row[key], "timestamp": 0, "step": step}
                       for step, row in enumerate(rows, start=1) for key in METRICS]
            for start in range(0, len(metrics), 1000):  # log-batch takes at most 1000 metrics
                client.post("/api/2.0/mlflow/runs/log-batch",
                            json={"run_id": run_id, "metrics": metrics[start:start + 1000]}).raise_for_status()
            run_ids.append(run_id)

        def history() -> None:
            for run_id in run_ids:
                for key in METRICS:
                    got = client.get("/api/2.0/mlflow/metrics/get-history",
                                     params={"run_id": run_id, "metric_key": key}).json()
                    assert len(got["metrics"]) == epochs

        def bulk() -> None:
            for key in METRICS:
                got = client.get("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                                 params={"run_ids": run_ids, "metric_key": key, "max_results": epochs}).json()
                assert len(got["metrics"]) == runs * epochs

        return {f"MLflow: metrics/get-history x {runs} runs x {len(METRICS)} metrics": timed(repeat, history),
                f"MLflow: get-history-bulk-interval x {len(METRICS)} metrics (its compare charts)":
                    timed(repeat, bulk)}
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(store, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--mlflow", default=shutil.which("mlflow"),
                        help="the mlflow command of an environment with MLflow installed (default: on the PATH)")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    var = tempfile.mkdtemp(prefix="masksel-compare-")
    os.environ["MASKSEL_VAR_DIR"] = var
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.test import Client

    ids, query = populate(args.runs, args.epochs)
    client = Client()
    client.login(username="bench", password="bench-password-1")
    url = f"/compare/?runs={query}"
    response = client.get(url)
    assert response.status_code == 200
    size = len(response.content)
    server = timed(args.repeat, lambda: client.get(url))

    port = free_port()
    env = {**os.environ, "MASKSEL_VAR_DIR": var}
    web = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                            "webapp.asgi:application"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    drawn = []
    http: dict[str, list[float]] = {}
    try:
        from playwright.sync_api import sync_playwright

        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{base}/accounts/login/")
            page.fill("#id_username", "bench")
            page.fill("#id_password", "bench-password-1")
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/runs/")
            for _ in range(args.repeat):
                page.goto(f"{base}{url}")
                page.wait_for_function("window.maskselCompare && window.maskselCompare.drawnAt > 0")
                drawn.append(page.evaluate("window.maskselCompare.drawnAt"))
            browser.close()
        http = masksel_over_http(base, ids, url, args.repeat)
    finally:
        web.terminate()
        web.wait(timeout=20)
    if args.mlflow:
        http |= mlflow_over_http(args.mlflow, args.runs, args.epochs, args.repeat)
    print(f"{args.runs} runs x {args.epochs} epochs, page {size / 1024:.0f} KiB, median of {args.repeat}")
    print("| measure | median ms | max ms |")
    print("|---|---:|---:|")
    print(f"| server response (test client) | {statistics.median(server):.1f} | {max(server):.1f} |")
    print(f"| charts drawn in Chromium (from navigation start) | {statistics.median(drawn):.1f} | {max(drawn):.1f} |")
    print()
    print("Over HTTP on loopback, the same data; ratio against masksel's compare page (median):")
    print("| request(s) | median ms | max ms | ratio |")
    print("|---|---:|---:|---:|")
    reference = statistics.median(next(iter(http.values())))
    for label, times in http.items():
        median = statistics.median(times)
        print(f"| {label} | {median:.1f} | {max(times):.1f} | {median / reference:.2f} |")
    if not args.mlflow:
        print("(MLflow is not installed here: pass --mlflow /path/to/mlflow for its rows)")


if __name__ == "__main__":
    main()

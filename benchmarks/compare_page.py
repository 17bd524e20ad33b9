"""The compare page for 20 runs x 200 epochs: server time, and time until the charts are drawn.

Server: median of Django test-client requests (view, queries, template, the inline JSON).
Browser: headless Chromium against daphne on the same database, from navigation start until
compare.js has drawn all three charts (`performance.now()` recorded by the page).
Goal (issue 4): server <= 300 ms, charts drawn <= 1 s.

    python benchmarks/compare_page.py [--runs 20] [--epochs 200]
"""
from __future__ import annotations

import argparse
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

    from jobs.models import EpochMetric, Run
    from jobs.services import dataset_seed_builtins

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    var = tempfile.mkdtemp(prefix="masksel-compare-")
    os.environ["MASKSEL_VAR_DIR"] = var
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.test import Client

    _, query = populate(args.runs, args.epochs)
    client = Client()
    client.login(username="bench", password="bench-password-1")
    url = f"/compare/?runs={query}"
    client.get(url)
    server = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        response = client.get(url)
        server.append((time.perf_counter() - started) * 1000)
    assert response.status_code == 200
    size = len(response.content)

    port = free_port()
    env = {**os.environ, "MASKSEL_VAR_DIR": var}
    web = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                            "webapp.asgi:application"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    drawn = []
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
    finally:
        web.terminate()
        web.wait(timeout=20)
    print(f"{args.runs} runs x {args.epochs} epochs, page {size / 1024:.0f} KiB, median of {args.repeat}")
    print("| measure | median ms | max ms |")
    print("|---|---:|---:|")
    print(f"| server response (test client) | {statistics.median(server):.1f} | {max(server):.1f} |")
    print(f"| charts drawn in Chromium (from navigation start) | {statistics.median(drawn):.1f} | {max(drawn):.1f} |")


if __name__ == "__main__":
    main()

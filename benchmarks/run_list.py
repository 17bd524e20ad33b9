"""Server time of every page with many runs in the database (default 10,000, 1 in 50 queued), SQLite file.

Median of repeated requests through Django's test client (the whole view: session, queries,
template): the run table (first page, a middle page, a filtered page, a search), a run's page, the
compare page of three runs, the new-run and sweep forms, the data sets and a data set that every run
uses, and the workers page with 200 queued runs. Goal: <= 300 ms each.

    python benchmarks/run_list.py [--runs 10000] [--repeat 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.compare_page import timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    os.environ["MASKSEL_VAR_DIR"] = tempfile.mkdtemp(prefix="masksel-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from jobs.dataset_services import dataset_seed_builtins
    from jobs.models import Run

    call_command("migrate", verbosity=0)
    digits = dataset_seed_builtins()[0]
    user = User.objects.create_user("bench", password="bench-password")
    Run.objects.bulk_create(
        Run(owner=user, dataset=digits, total_epochs=10, epoch=10,
            status="queued" if i % 50 == 1 else "succeeded" if i % 4 else "failed",
            config={"mask_type": ("pixel-any", "channel-any", "block-any")[i % 3], "model": "lenet5"},
            best_accuracy=0.9, fraction=0.3, tags=["sweep"] if i % 10 == 0 else [],
            tag_index="|sweep|" if i % 10 == 0 else "")
        for i in range(args.runs))
    client = Client()
    client.force_login(user)
    print(f"{args.runs} runs, SQLite, median of {args.repeat} requests")
    print("| page | ms (median) | ms (max) | queries |")
    print("|---|---:|---:|---:|")
    for label, url in (("first page", "/runs/"), ("page 100", "/runs/?page=100"),
                       ("status + mask filter", "/runs/?status=failed&mask=pixel-any"),
                       ("tag filter", "/runs/?tag=sweep"), ("search", "/runs/?q=lenet5"),
                       ("a run's page", f"/runs/{args.runs // 2}/"),
                       ("compare 3 runs", f"/compare/?runs={args.runs // 2},{args.runs // 2 + 4},{args.runs // 2 + 8}"),
                       ("new-run form", "/runs/new/"), ("sweep form", "/runs/sweep/"), ("data sets", "/datasets/"),
                       ("a data set all runs use", f"/datasets/{digits.pk}/"), ("workers and queue", "/workers/")):
        assert client.get(url).status_code == 200
        times = timed(args.repeat, lambda url=url: client.get(url))
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        print(f"| {label} | {statistics.median(times):.1f} | {max(times):.1f} | {len(queries)} |", flush=True)


if __name__ == "__main__":
    main()

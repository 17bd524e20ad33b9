"""Bytes and time to fetch samples over HTTP, whole against masked, for a trained mask of each type.

For digits and synthetic-remote, one mask per type is trained in this process (short runs, an MLP:
this measures the transfer, not the best accuracy) and stored as a succeeded run of a private
masksel server (SQLite, daphne on loopback). `masksel_core.transfer.client.RemoteDataset` then fetches up
to 2,000 samples (the training split, then the test split) in pages of 500, with the mask and
without, and the run's `model.ts` predicts on what arrived. Goal (issue 6): bytes received within
2% of what the mask predicts plus the headers, and wall time falling with the bytes.

    python benchmarks/transfer.py [--samples 2000] [--page 500] [--only digits]
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare_page import free_port  # noqa: E402

CASES = {
    "digits": ["pixel-any", "block-any", "jpeg-xor"],
    "synthetic-remote": ["channel-any", "pixel-any", "block-any", "channel-xor", "pixel-xor", "jpeg-xor"],
}
FAST = {"model": "mlp", "epochs": 6, "batch_size": 64, "lambda_init": 1.0, "lambda_factor": 1.5,
        "lambda_patience": 0, "device": "cpu", "extend_costs": "bytes", "warmup_epochs": 5, "finalize_epochs": 5}


def train_runs(cases: dict[str, list[str]]) -> list[dict[str, object]]:
    """Train each (data, mask) and store it as a succeeded run with its artifacts."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    import masksel_core
    from jobs import dataset_services, worker_services
    from jobs.models import Run

    call_command("migrate", verbosity=0)
    datasets = {d.builtin: d for d in dataset_services.dataset_seed_builtins()}
    user = User.objects.create_user("bench", password="bench-password-1")
    runs = []
    for name, masks in cases.items():
        data = masksel_core.load_dataset(name)
        for mask in masks:
            config = masksel_core.TrainConfig(mask_type=mask, **FAST)
            result = masksel_core.train(config, data)
            run = Run.objects.create(owner=user, dataset=datasets[name], config=config.to_dict(), status="running",
                                     total_epochs=config.epochs, epoch=len(result.records),
                                     val_accuracy=result.records[-1].val_accuracy,
                                     test_accuracy=result.test_accuracy)
            worker_services.run_finish(run, result)
            runs.append({"id": run.pk, "dataset": datasets[name].pk, "data": name, "mask": mask,
                         "test_accuracy": result.test_accuracy, "transfer": result.transfer})
            print(f"trained {name} {mask}: test accuracy {result.test_accuracy:.3f}, "
                  f"{result.transfer['bytes_per_sample']:.0f} of {result.transfer['raw_bytes_per_sample']} bytes",
                  file=sys.stderr, flush=True)
    return runs


def fetch(base: str, token: str, run: dict[str, object], with_mask: bool, samples: int, page: int,
          model: torch.nn.Module) -> dict[str, float]:
    from masksel_core.transfer.client import RemoteDataset

    started = time.perf_counter()
    got = correct = header = 0
    received = 0
    for split in ("train", "test"):
        remote = RemoteDataset(base, token, int(run["dataset"]), int(run["id"]) if with_mask else None,  # type: ignore[arg-type]
                               split=split, page=page)
        with torch.no_grad():
            for batch in remote.iter(limit=samples - got):
                correct += int((model(batch.x).argmax(dim=1) == batch.labels).sum())
                got += batch.x.shape[0]
        received += remote.bytes_received
        header += remote.requests
        if got >= samples:
            break
    return {"samples": got, "bytes": received, "requests": header, "seconds": time.perf_counter() - started,
            "accuracy": correct / max(got, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--only", help="comma-separated data set names")
    parser.add_argument("--masks", help="comma-separated mask types (default: all of each data set's)")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cases = {k: [m for m in v if not args.masks or m in args.masks.split(",")]
             for k, v in CASES.items() if not args.only or k in args.only.split(",")}
    var = tempfile.mkdtemp(prefix="masksel-transfer-")
    os.environ["MASKSEL_VAR_DIR"] = var
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    runs = train_runs(cases)

    import httpx

    from masksel_core.transfer.packing import full_plan, pack, plan_from_mask_document

    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                            "webapp.asgi:application"], cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/accounts/login/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = httpx.post(f"{base}/api/auth/token/", data={"username": "bench", "password": "bench-password-1"}).json()
        token = token["token"]
        for run in runs:
            api = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=120)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(io.BytesIO(api.get(f"/api/runs/{run['id']}/model.ts").content)).eval()
            plan = plan_from_mask_document(api.get(f"/api/runs/{run['id']}/mask.json").json())
            for with_mask in (False, True):  # warm-up: the server loads the data set and the plan once
                fetch(base, token, run, with_mask, 10, args.page, model)
            full = fetch(base, token, run, False, args.samples, args.page, model)
            masked = fetch(base, token, run, True, args.samples, args.page, model)
            raw = full_plan(plan.shape).raw_bytes_per_sample()
            # JPEG: Q priced by the versions' mean sizes measured on the training split (extend_costs=bytes),
            # times the raw size; the other masks: exact from the plan.
            q = run["transfer"]["value_fraction"]  # type: ignore[index]
            per_sample = q * raw if plan.kind == "jpeg" else plan.predicted_bytes_per_sample()
            header = len(pack(torch.zeros(0, *plan.shape), plan))  # once per page (request)
            predicted = masked["samples"] * (per_sample + 8) + masked["requests"] * header  # 8: a label
            rows.append((run, plan, full, masked, predicted, raw))
    finally:
        web.terminate()
        web.wait(timeout=20)

    print(f"{args.samples} samples at most (train split, then test), pages of {args.page}, HTTP on loopback")
    print("| data | mask | share of raw bytes | full bytes | masked bytes | predicted | masked/predicted "
          "| full s | masked s | accuracy full | accuracy masked |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run, _plan, full, masked, predicted, raw in rows:
        share = run["transfer"]["bytes_per_sample"] / raw  # type: ignore[index]
        print(f"| {run['data']} | {run['mask']} | {share:.3f} | {full['bytes']:,} | {masked['bytes']:,} | "
              f"{predicted:,.0f} | {masked['bytes'] / predicted:.4f} | {full['seconds']:.2f} | "
              f"{masked['seconds']:.2f} | {full['accuracy']:.3f} | {masked['accuracy']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

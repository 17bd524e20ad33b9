"""What the samples endpoint reads from a bucket to serve a channel mask: bytes read against bytes kept.

A stand-in of the paper's `remote` shape (36 x 35 x 35 float32; `--samples` training and 600 test samples) is
written by `python -m masksel_core convert` into an S3 bucket (moto's server on loopback, the only S3 server that
installs here), chunked one channel per chunk; it is registered by URI, a channel-any run keeps 4 of its 36
channels, and `GET /api/datasets/<id>/samples/` serves test pages whole and for the run. The endpoint reports the
bytes it read (`X-Masksel-Bytes-Read`, chunks and metadata); the table sets them against a full sample's raw bytes
times the kept fraction. Goal: at most 1.1x that, for pages aligned with the store's chunks.

    python benchmarks/store_reads.py [--samples 1000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = (36, 35, 35)
KEPT = [3, 8, 19, 30]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    from testkit.s3 import start_s3_server

    endpoint, moto = start_s3_server(subprocess.DEVNULL)
    bucket = "bench-sets"
    os.environ.update({"MASKSEL_VAR_DIR": tempfile.mkdtemp(prefix="masksel-bench-"),
                       "DJANGO_SETTINGS_MODULE": "webapp.settings", "AWS_S3_ENDPOINT_URL": endpoint,
                       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_S3_REGION_NAME": "us-east-1", "MASKSEL_DATA_ROOTS": f"s3://{bucket}/"})
    import django

    django.setup()
    import boto3
    import numpy as np
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from masksel_core.data.convert import convert
    from webapp.celery import app

    app.conf.task_always_eager = True  # the run trains inside this process
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", password="bench-password")
    client = Client()
    client.force_login(user)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "remote.npz"
        np.savez(source, x_train=rng.random((args.samples, *SHAPE), dtype=np.float32),
                 y_train=np.arange(args.samples) % 12, x_test=rng.random((600, *SHAPE), dtype=np.float32),
                 y_test=np.arange(600) % 12)
        uri = f"s3://{bucket}/remote.zarr"
        convert(str(source), uri)
    dataset = client.post("/api/datasets/", {"uri": uri}, content_type="application/json").json()
    run = client.post("/api/runs/", {"dataset": dataset["id"], "mask_type": "channel-any", "model": "mlp",
                                     "epochs": 1, "warmup_epochs": 1, "finalize_epochs": 0, "device": "cpu",
                                     "init_selected": KEPT}, content_type="application/json").json()
    status = client.get(f"/api/runs/{run['id']}/").json()
    assert status["status"] == "succeeded", status
    from masksel_core.data.stores import load_store

    chunk = load_store(uri).chunk_samples
    fraction = client.get(f"/api/runs/{run['id']}/mask.json").json()["fraction"]
    raw = int(np.prod(SHAPE)) * 4
    print(f"samples endpoint on a zarr store in S3 (moto on loopback): {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} float32, "
          f"{chunk} samples x 1 channel per chunk; the run keeps {fraction:.4f} of the values")
    print("| page | samples | bytes read / sample | raw x kept / sample | ratio | goal <= 1.1 |")
    print("|---|---:|---:|---:|---:|---|")
    for label, start, count, with_run in (("whole, aligned", 0, chunk, False), ("mask, aligned", 0, chunk, True),
                                          ("mask, 2 aligned chunks", chunk, 2 * chunk, True),
                                          ("mask, unaligned", chunk // 2, chunk, True)):
        query = f"start={start}&count={count}" + (f"&run={run['id']}" if with_run else "")
        response = client.get(f"/api/datasets/{dataset['id']}/samples/?{query}")
        assert response.status_code == 200, response.content[:200]
        served = min(count, int(response["X-Masksel-Total"]) - start)
        read = int(response["X-Masksel-Bytes-Read"]) / served
        expected = raw * (fraction if with_run else 1.0)
        ratio = read / expected
        print(f"| {label} | {served} | {read:,.0f} | {expected:,.0f} | {ratio:.3f} | "
              f"{'yes' if ratio <= 1.1 else 'no'} |", flush=True)
    moto.terminate()


if __name__ == "__main__":
    main()

"""Files through storage: the filesystem against an S3 endpoint on loopback (moto's server: the only S3 server
that installs here; a real MinIO or S3 is its own figure).

- Artifact upload and download MB/s through Django's storage API (what a worker publishes and a download
  streams), a 64 MiB file, median of 3.
- The samples endpoint's bytes per second (`GET /api/datasets/<id>/samples/`, whole samples of an uploaded
  data set) with the data set on each storage, after a first request filled the host's cache.
Goals: >= 100 MB/s each way through S3; the samples endpoint through S3 >= 0.8x the local disk.

    python benchmarks/storage.py [--mib 64]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    from testkit.s3 import start_s3_server

    endpoint, moto = start_s3_server(subprocess.DEVNULL)
    os.environ.update({"MASKSEL_VAR_DIR": tempfile.mkdtemp(prefix="masksel-bench-"),
                       "DJANGO_SETTINGS_MODULE": "webapp.settings", "AWS_S3_ENDPOINT_URL": endpoint,
                       "AWS_STORAGE_BUCKET_NAME": "masksel-bench", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_S3_REGION_NAME": "us-east-1"})
    import django

    django.setup()
    import boto3
    import numpy as np
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                 region_name="us-east-1").create_bucket(Bucket="masksel-bench")
    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", password="bench-password")
    payload = os.urandom(args.mib * 1024**2)
    s3 = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    rng = np.random.default_rng(0)
    npz = io.BytesIO()
    np.savez(npz, x_train=rng.integers(0, 256, (4000, 3, 32, 32), dtype=np.uint8), y_train=np.arange(4000) % 10)
    print(f"storage through Django's API ({args.mib} MiB, median of 3) and the samples endpoint (4,000 samples "
          "3x32x32 uint8, 256 per request); S3 = moto's server on loopback")
    print("| storage | upload MB/s | download MB/s | samples MB/s | samples / local |")
    print("|---|---:|---:|---:|---:|")
    local_samples = None
    for label, storages, storage_kind in (("local disk", settings.STORAGES, "file"), ("S3 (moto)", s3, "s3")):
        with override_settings(STORAGES=storages, MASKSEL_STORAGE=storage_kind):
            ups, downs = [], []
            for round_ in range(3):
                started = time.perf_counter()
                name = default_storage.save(f"bench/{round_}.bin", ContentFile(payload))
                ups.append(len(payload) / (time.perf_counter() - started) / 1e6)
                started = time.perf_counter()
                with default_storage.open(name, "rb") as handle:
                    while handle.read(1024**2):
                        pass
                downs.append(len(payload) / (time.perf_counter() - started) / 1e6)
                default_storage.delete(name)
            client = Client()
            client.force_login(user)
            npz.seek(0)
            upload = ContentFile(npz.getvalue(), name="bench.npz")
            dataset = client.post("/api/datasets/", {"file": upload, "name": f"bench-{storage_kind}"}).json()["id"]
            url = f"/api/datasets/{dataset}/samples/?split=train&count=256"
            client.get(url)  # fills this host's cache (and the endpoint's own)
            times, sizes = [], []
            for start in range(0, 3072, 256):
                begin = time.perf_counter()
                response = client.get(f"{url}&start={start}")
                times.append(time.perf_counter() - begin)
                sizes.append(len(response.content))
            samples = sum(sizes) / sum(times) / 1e6
            local_samples = local_samples or samples
            print(f"| {label} | {statistics.median(ups):.0f} | {statistics.median(downs):.0f} | {samples:.0f} | "
                  f"{samples / local_samples:.2f} |", flush=True)
    moto.terminate()


if __name__ == "__main__":
    main()

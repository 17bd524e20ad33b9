"""Two hosts in one machine: a web server and two workers, each with its own empty MASKSEL_VAR_DIR, sharing
only Redis, PostgreSQL and an S3 endpoint (moto's server). One worker is SIGKILLed mid-run: its run resumes
on the other from the checkpoint in the bucket."""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from .conftest import Stack, free_port, prepared_env, start_web, start_worker, upload

pytestmark = pytest.mark.e2e


def test_two_worker_hosts_share_only_redis_postgres_and_the_bucket(redis_url: str, database: str, s3_endpoint: str,
                                                                  slow_npz: Path, tmp_path: Path) -> None:
    import boto3

    bucket = f"masksel-hosts-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    shared = {"DATABASE_URL": database, "MASKSEL_STORAGE": "s3", "AWS_S3_ENDPOINT_URL": s3_endpoint,
              "AWS_STORAGE_BUCKET_NAME": bucket, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
              "AWS_S3_REGION_NAME": "us-east-1", "MASKSEL_HEARTBEAT_SECONDS": "0.5", "MASKSEL_STALE_SECONDS": "2"}
    web_env = prepared_env(redis_url, tmp_path / "web", **shared)
    host_env = {key: web_env[key] for key in ("MASKSEL_QUEUE", "CHANNEL_PREFIX")}  # the same service
    port = free_port()
    web = Stack(f"http://127.0.0.1:{port}", web_env, tmp_path / "web", start_web(web_env, port))
    workers = []
    try:
        for name in ("host-a", "host-b"):
            env = {**web_env, **host_env, "MASKSEL_VAR_DIR": str(tmp_path / name)}
            workers.append(start_worker(env, tmp_path / f"{name}.log"))
        dataset = upload(web, slow_npz, "shared")
        options = {"dataset": dataset["id"], "mask_type": "pixel-any", "model": "lenet5", "epochs": 5,
                   "batch_size": 32, "warmup_epochs": 1, "finalize_epochs": 0}
        with web.client() as client:
            ids = [client.post("/api/runs/", json={**options, "seed": seed}).json()["id"] for seed in range(4)]
            victim = None
            deadline = time.monotonic() + 120
            while victim is None:  # a run of host A's worker, mid-way
                assert time.monotonic() < deadline, "no run started on host A"
                for run in client.get(f"/api/runs/?ids={','.join(map(str, ids))}").json():
                    if run["status"] == "running" and run["epoch"] >= 2 and run["worker"].endswith(
                            f":{workers[0].pid}"):
                        victim = run["id"]
                time.sleep(0.1)
            os.killpg(workers[0].pid, signal.SIGKILL)
            deadline = time.monotonic() + 300
            while any(client.get(f"/api/runs/{i}/").json()["status"] != "succeeded" for i in ids):
                assert time.monotonic() < deadline, [client.get(f"/api/runs/{i}/").json()["status"] for i in ids]
                time.sleep(0.5)
            for run_id in ids:
                epochs = [row["epoch"] for row in client.get(f"/api/runs/{run_id}/metrics/").json()]
                assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 2, (run_id, epochs)
                model = client.get(f"/api/runs/{run_id}/model.pt")
                assert model.status_code == 200 and len(model.content) == int(model.headers["Content-Length"])
            resumed = client.get(f"/api/runs/{victim}/").json()
            assert resumed["retries"] and resumed["worker"].endswith(f":{workers[1].pid}")
        log = (tmp_path / "host-b.log").read_text()
        assert f"resuming run {victim} from its checkpoint" in log
        assert not [p for p in (tmp_path / "web").rglob("*") if "runs" in p.parts and p.is_file()]
    finally:
        for process in workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
        web.process.terminate()
        web.process.wait(timeout=20)

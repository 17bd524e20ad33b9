"""The deployment files: compose names its four services; vendored front-end files match package.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_parses_and_names_the_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "redis", "postgres", "minio", "bucket"} <= set(services)
    assert not set(services["web"]["volumes"]) & set(services["worker"]["volumes"])  # files go to the bucket
    assert services["web"]["environment"]["MASKSEL_STORAGE"] == "s3" == services["worker"]["environment"][
        "MASKSEL_STORAGE"]
    assert "mc mb --ignore-existing" in services["bucket"]["entrypoint"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for name in ("web", "worker"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"] == "redis://redis:6379/0"
    assert services["worker"]["command"] == ["python", "-m", "webapp.worker"]  # make worker: solo pool, its queues


def test_the_workers_only_compose_file_joins_the_main_hosts_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.workers.yml").read_text())
    assert set(compose["services"]) == {"worker"}
    env = compose["services"]["worker"]["environment"]
    assert "${MASKSEL_HOST" in env["DATABASE_URL"] and env["REDIS_URL"].startswith("redis://${MASKSEL_HOST}")
    assert env["AWS_S3_ENDPOINT_URL"].startswith("http://${MASKSEL_HOST}") and env["MASKSEL_STORAGE"] == "s3"
    assert compose["services"]["worker"]["command"] == ["python", "-m", "webapp.worker"]


def test_vendored_uplot_is_the_version_package_json_pins() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["uplot"]
    header = (ROOT / "static/vendor/uplot/uPlot.iife.min.js").read_text()[:200]
    match = re.search(r"\(v([\d.]+)\)", header)
    assert match and match.group(1) == pinned


# The settings module alone, as every process reads it first (its checks raise there); `django.setup()` would load
# the apps too, and with them torch: seconds per process for nothing these tests look at.
LOAD_SETTINGS = "from django.conf import settings; settings.INSTALLED_APPS"


def test_settings_switch_to_postgresql_when_database_url_is_set(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    code = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    env = {"DJANGO_SETTINGS_MODULE": "webapp.settings", "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/test",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "django.db.backends.postgresql", done.stderr
    prod = subprocess.run([sys.executable, "-c", LOAD_SETTINGS], cwd=ROOT, env={**env, "DEBUG": "0"},
                          capture_output=True, text=True, timeout=60)
    assert prod.returncode != 0 and "SECRET_KEY must be set" in prod.stderr


def test_masksel_storage_picks_the_files_backend_and_refuses_others() -> None:
    import subprocess
    import sys

    code = "from django.conf import settings; print(settings.STORAGES['default'])"
    env = {"DJANGO_SETTINGS_MODULE": "webapp.settings", "PATH": "/usr/bin:/bin"}
    s3 = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "MASKSEL_STORAGE": "s3"},
                        capture_output=True, text=True, timeout=60)
    assert "storages.backends.s3.S3Storage" in s3.stdout, s3.stderr
    bad = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "MASKSEL_STORAGE": "nfs"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "MASKSEL_STORAGE must be file or s3, got 'nfs'" in bad.stderr


@pytest.mark.parametrize("key", ["change-me", "CHANGEME", "short-but-random-3f9a"])
def test_production_refuses_placeholder_and_short_keys(key: str) -> None:
    import subprocess
    import sys

    env = {"DJANGO_SETTINGS_MODULE": "webapp.settings", "PATH": "/usr/bin:/bin", "DEBUG": "0", "SECRET_KEY": key}
    done = subprocess.run([sys.executable, "-c", LOAD_SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "at least 50 characters" in done.stderr


def test_check_deploy_passes_with_production_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import secrets
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "0",
           "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "masksel.example.org",
           "SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_PRELOAD": "1", "SECURE_SSL_REDIRECT": "1",
           "MASKSEL_VAR_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_the_channel_layer_outwaits_its_own_blocking_reads() -> None:
    """channels_redis blocks 5 s in BZPOPMIN; a socket timeout at or below that kills consumers (code 1011)."""
    from channels_redis.core import RedisChannelLayer

    import webapp.settings as production  # the in-process tests swap in the in-memory layer

    host = production.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout * 2
    assert host["max_connections"] >= 500


def test_the_installed_packages_resolve_together() -> None:
    """s3fs pins aiobotocore, which pins botocore; boto3 and django-storages must agree with it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

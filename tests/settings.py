"""Settings for in-process tests: eager Celery and the in-memory channel layer (STYLE.md rule 6).

Integration tests under tests/e2e/ do not use these: they start real processes with the
production settings module and a real Redis.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Each test process its own folder (files, caches, SQLite): xdist's workers inherit the controller's environment,
# and two workers' run 1 would share its files.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker or "MASKSEL_VAR_DIR" not in os.environ:
    os.environ["MASKSEL_VAR_DIR"] = tempfile.mkdtemp(prefix=f"masksel-test-var-{_worker or 'main'}-")

from webapp.settings import *  # noqa: E402,F403
from webapp.settings import VAR_DIR  # noqa: E402

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
MEDIA_ROOT = Path(VAR_DIR) / "media"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# An eager run trains inside the test's transaction, which the heartbeat thread's own connection cannot see
# (PostgreSQL): on a loaded machine a beat would find no lease and stop the run. Leases are tested by calling
# the services directly (tests/jobs/test_recovery.py) and with real workers (tests/e2e/test_worker_loss.py).
MASKSEL_HEARTBEAT_SECONDS = 600.0

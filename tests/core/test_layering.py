from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_masksel_core_imports_no_django_celery_or_redis() -> None:
    code = (
        "import sys, masksel_core, masksel_core.cli, masksel_core.export\n"
        "banned = {'django', 'celery', 'redis', 'channels', 'jobs', 'webapp'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned)\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""

"""Prepare a fresh installation: built-in data sets and, on the very first start, an admin user.

The admin's password is random and written (mode 0600) to `var/admin-password`, so a local
installation never runs with a known password; `make run` prints it.
"""
from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from jobs.dataset_services import dataset_seed_builtins


class Command(BaseCommand):
    help = "Seed built-in datasets and create the first admin user."

    def handle(self, *args: Any, **options: Any) -> None:
        rows = dataset_seed_builtins()
        self.stdout.write(f"built-in datasets: {', '.join(row.name for row in rows)}")
        user_model = get_user_model()
        password_file = settings.VAR_DIR / "admin-password"
        if not user_model.objects.exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser("admin", "", password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
            self.stdout.write("created user admin")

from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the Celery tasks in every process, so services can find `jobs.train_run` by name
        in the app's registry without importing the module that imports them."""
        from . import tasks  # noqa: F401

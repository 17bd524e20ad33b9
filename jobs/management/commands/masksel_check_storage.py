"""Exit non-zero with one line saying why when the configured storage cannot be used (`make run` and
`make worker` call it before they start anything)."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.files import StorageUnreachable, check_storage


class Command(BaseCommand):
    help = "Check that the file storage (MASKSEL_STORAGE) answers."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_storage()
        except StorageUnreachable as exc:
            raise CommandError(str(exc)) from None

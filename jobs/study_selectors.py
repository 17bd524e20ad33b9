"""Reads of studies: what a user may see, and what the study page and its websocket start from."""
from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from .errors import NotFound
from .models import Study, Trial
from .selectors import User


def studies_visible_to(user: User) -> QuerySet[Study]:
    return Study.objects.filter(owner_id=user.pk).select_related("dataset").prefetch_related(
        Prefetch("trial_rows", queryset=Trial.objects.order_by("number")))


def study_get(user: User, study_id: int | str) -> Study:
    """The study if this user may see it; 404 otherwise, so other users' ids stay unknown."""
    try:
        return studies_visible_to(user).get(pk=int(study_id))
    except (Study.DoesNotExist, ValueError, TypeError):
        raise NotFound("no such study") from None


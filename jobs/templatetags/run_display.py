"""Template filters for how runs read on the pages; `static/js/format.js` writes the same text in the browser."""
from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()


def duration_text(seconds: float) -> str:
    """"43 s", "2 min 05 s", "1 h 03 min": seconds count below an hour (Django's `timesince` says "0 minutes"
    for a 40-second run)."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


PHASE_TEXT = {"warmup": "warm-up", "select": "selection", "finalize": "finalize", "final": "done"}


@register.filter
def phase_text(phase: str) -> str:
    """What a run is doing now, in words; "–" before its first epoch."""
    return PHASE_TEXT.get(phase, phase) or "–"


@register.filter
def run_duration(run: object) -> str:
    """Started to finished, or to now while it runs; empty before it started."""
    started: datetime | None = getattr(run, "started_at", None)
    if started is None:
        return ""
    finished: datetime | None = getattr(run, "finished_at", None)
    return duration_text(((finished or timezone.now()) - started).total_seconds())

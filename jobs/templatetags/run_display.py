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
SPENT_IN = {"warmup": "warm-up", "select": "selection", "swap_check": "swap check", "finalize": "finalize"}


@register.filter
def phase_seconds(seconds: dict[str, float] | None) -> str:
    """Where a finished run's time went ("warm-up 3.2 s · selection 41 s · swap check 0.4 s"): the phases that
    took any, tenths below 10 s; empty when unknown."""
    def spent(value: float) -> str:
        return "<0.1 s" if value < 0.1 else f"{value:.1f} s" if value < 10 else duration_text(value)

    # No-break spaces inside each part: a narrow column wraps between the phases, not inside one.
    parts = [f"{SPENT_IN[name]} {spent(seconds[name])}".replace(" ", "\u00a0")
             for name in SPENT_IN if (seconds or {}).get(name, 0) > 0]
    return " · ".join(parts)


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

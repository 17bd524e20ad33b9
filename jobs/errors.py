"""What can go wrong in a request, as the service's own errors: raised by services and selectors, turned into
HTTP in one place each (`api_errors` for the REST API, `views.not_found_as_404` for the pages)."""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from django.conf import settings


class ServiceError(ValueError):
    """A request that cannot be carried out; the message says why, in words the user can act on (HTTP 400)."""


class NotFound(LookupError):
    """No such thing, or not the caller's: the two look the same from outside (HTTP 404)."""


def flatten(detail: Any) -> str:
    """A serializer's errors (per field, nested lists) as one line: "field: what is wrong; other: ..."."""
    if isinstance(detail, dict):  # errors of the whole body (DRF's "non_field_errors") name no field
        return "; ".join(flatten(value) if key == "non_field_errors" else f"{key}: {flatten(value)}"
                         for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(flatten(item) for item in detail)
    return str(detail)


def public_text(text: str) -> str:
    """`text` without the server's own directories, so an error shown to a user tells nothing of where or what
    files the server keeps (uploads are named by their data set elsewhere in the message)."""
    for directory in sorted({str(settings.MEDIA_ROOT), str(settings.VAR_DIR), str(settings.BASE_DIR)},
                            key=len, reverse=True):
        text = text.replace(directory + "/", "").replace(directory, "")
    return text


def public_error(exc: BaseException) -> str:
    """What a failed run shows its owner: the error and the innermost frames by file name only (the full
    traceback goes to the worker's log)."""
    frames = traceback.extract_tb(exc.__traceback__)[-5:]
    where = "".join(f"\n  {Path(frame.filename).name}:{frame.lineno} in {frame.name}" for frame in frames)
    return public_text(f"{type(exc).__name__}: {exc}") + where

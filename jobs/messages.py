"""The websocket contract of `/ws/runs/<id>/`: every message a client receives is built here.

- `snapshot`, first on every connection: `{"type": "snapshot", "run": <the REST API's run>, "epochs": [...]}`, each
  epoch as `epoch_fields` gives it;
- `epoch`, live: `{"type": "epoch", "epoch", "phase", "metrics", "mask"}`; `mask` holds the packed bits (numpy's
  big-endian order, base64), its shape, the input's, the mask type and Q, and for a dynamic mask `frequency` (how
  often each cell is kept, 0-255) and `gallery_bits`;
- `status`, live: `{"type": "status", "status"}`, with `error` where the run failed or waits to be retried, and
  `warnings`, `test_accuracy` and `seconds_per_phase` where it ended;
- `error`: `{"type": "error", "error"}` for anything a client sends (clients send nothing).

And of `/ws/studies/<id>/`: first `{"type": "snapshot", "study": <the REST API's study>}`, then `{"type": "study",
"status", "error", "pareto", "trials": [...]}` whenever trials change (ended, or asked for): `trials` holds the
changed ones as the REST API gives them, which a client puts in place by their `number`.
`progress.broadcast` adds `sent_at` (seconds since the epoch) to the live ones.
"""
from __future__ import annotations

import base64
from typing import Any

from .models import EpochMetric, Run, Study, Trial
from .serializers import TrialSerializer


def mask_payload(mask_type: str, input_shape: list[int], shape: list[int], selected_bits: bytes,
                 fraction: float) -> dict[str, Any]:
    """The compact mask of websocket messages: packed bits (numpy's big-endian order), base64."""
    return {
        "mask_type": mask_type,
        "input_shape": list(input_shape),
        "shape": list(shape),
        "bits": base64.b64encode(selected_bits).decode("ascii"),
        "fraction": fraction,
    }


def epoch_fields(run: Run, row: EpochMetric) -> dict[str, Any]:
    """One epoch as messages carry it: its metrics and its mask (and a dynamic mask's frequency and gallery)."""
    message = {
        "epoch": row.epoch,
        "phase": row.phase,
        "metrics": row.metrics(),
        "mask": mask_payload(run.mask_type, run.dataset.input_shape, row.mask_shape, bytes(row.mask_bits),
                             row.fraction),
    }
    if row.frequency_bytes:  # a dynamic mask: how often each cell is kept (0-255), and the gallery's own cells
        message["mask"]["frequency"] = base64.b64encode(bytes(row.frequency_bytes)).decode("ascii")
        message["mask"]["gallery_bits"] = base64.b64encode(bytes(row.gallery_bits)).decode("ascii")
    return message


def epoch(run: Run, row: EpochMetric) -> dict[str, Any]:
    return {"type": "epoch", **epoch_fields(run, row)}


def snapshot(run_data: dict[str, Any], run: Run, rows: list[EpochMetric]) -> dict[str, Any]:
    """`run_data` is the run as the REST API serializes it."""
    return {"type": "snapshot", "run": run_data, "epochs": [epoch_fields(run, row) for row in rows]}


def status(value: str, *, error: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "status", "status": value}
    if error is not None:
        message["error"] = error[:2000]
    return message


def ended(value: str, *, warnings: list[str], test_accuracy: float | None,
          seconds_per_phase: dict[str, float]) -> dict[str, Any]:
    """The status of a run that ended with its outcome (succeeded, or cancelled with what it learned)."""
    return {**status(value), "warnings": list(warnings), "test_accuracy": test_accuracy,
            "seconds_per_phase": dict(seconds_per_phase)}


def refusal(text: str) -> dict[str, Any]:
    return {"type": "error", "error": text}


def study_snapshot(study_data: dict[str, Any]) -> dict[str, Any]:
    """`study_data` is the study as the REST API serializes it."""
    return {"type": "snapshot", "study": study_data}


def study_update(study: Study, changed: list[Trial]) -> dict[str, Any]:
    return {"type": "study", "status": study.status, "error": study.error, "pareto": list(study.pareto),
            "trials": [dict(row) for row in TrialSerializer(changed, many=True).data]}

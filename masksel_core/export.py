"""Writing a trained mask and model to disk in the contract's formats.

Every file is written to a temporary name in the same folder and renamed, so a reader never
sees a half-written artifact, even if the process dies mid-write.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .train import EpochRecord, TrainResult

METRIC_COLUMNS = ("epoch", "task_loss", "mask_loss", "val_accuracy", "lambda", "tau", "fraction")


def mask_document(mask_type: str, input_shape: Iterable[int], selected: np.ndarray, fraction: float,
                  stages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `mask.json` object of the contract.

    For a chain (`jpeg-xor+pixel-any`), `selected` is its last select stage and `stages` lists every
    stage (extend with its levels and costs, each select stage's selection, merges) in order.
    """
    document = {
        "mask_type": mask_type,
        "input_shape": [int(s) for s in input_shape],
        "selected": np.asarray(selected, dtype=np.uint8).tolist(),
        "fraction": float(fraction),
    }
    if stages is not None:
        document["stages"] = stages
    return document


def atomic_write(path: Path, payload: bytes) -> None:
    """Write bytes under a temporary name, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def model_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def metrics_csv(records: Iterable[EpochRecord | dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    for record in records:
        row = record.metrics() if isinstance(record, EpochRecord) else record
        writer.writerow([row[column] for column in METRIC_COLUMNS])
    return buffer.getvalue()


def write_outputs(result: TrainResult, out_dir: str | Path) -> dict[str, Path]:
    """Write `mask.json`, `mask.npy`, `model.pt`, `metrics.csv` and `config.json` into `out_dir`."""
    out = Path(out_dir)
    selected = result.selected
    stages = result.mask.describe() if "+" in result.config.mask_type or result.mask.extend else None
    document = mask_document(result.config.mask_type, result.input_shape, selected, result.fraction, stages)
    files = {
        "mask.json": json.dumps(document).encode(),
        "mask.npy": npy_bytes(selected.astype(np.uint8)),
        "model.pt": model_bytes(result.model),
        "metrics.csv": metrics_csv(result.records).encode(),
        "config.json": json.dumps(result.config.to_dict(), indent=2).encode(),
    }
    paths = {}
    for name, payload in files.items():
        paths[name] = out / name
        atomic_write(paths[name], payload)
    return paths

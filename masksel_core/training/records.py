"""One epoch's record: the `metrics.csv` row and the discrete mask after the epoch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: `metrics.csv`'s columns: the contract's seven, then the phase the epoch belongs to.
METRIC_COLUMNS = ("epoch", "task_loss", "mask_loss", "val_accuracy", "lambda", "tau", "fraction", "phase")
#: What `phase` says: the network alone on the initial mask's input, masks and network together, the network
#: alone behind the frozen mask, and (only where finalize restored an earlier epoch's network) the model written.
PHASES = ("warmup", "select", "finalize", "final")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's metrics (the `metrics.csv` columns) and the discrete mask after it.

    A dynamic mask's `selected` holds the cells kept for at least half the validation inputs; `frequency`
    says how often each cell was kept (C, GH, GW) and `gallery` the cells kept for each of a fixed few
    validation inputs (G, C, GH, GW) of 0/1 (`dynamic.gallery_indices`).
    """

    epoch: int
    task_loss: float
    mask_loss: float
    val_accuracy: float
    lambda_: float
    tau: float
    fraction: float
    selected: np.ndarray
    phase: str = "select"
    seconds: float = 0.0
    frequency: np.ndarray | None = None
    gallery: np.ndarray | None = None

    def metrics(self) -> dict[str, Any]:
        """The `metrics.csv` row (`lambda` is a Python keyword: the attribute is `lambda_`)."""
        return {column: getattr(self, "lambda_" if column == "lambda" else column) for column in METRIC_COLUMNS}

    def state(self) -> dict[str, Any]:
        arrays = {name: torch.from_numpy(value.copy()) for name, value in
                  (("frequency", self.frequency), ("gallery", self.gallery)) if value is not None}
        return {**self.metrics(), "selected": torch.from_numpy(self.selected.copy()), "seconds": self.seconds,
                **arrays}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> EpochRecord:
        arrays = {name: s[name].cpu().numpy() for name in ("frequency", "gallery") if name in s}
        return cls(s["epoch"], s["task_loss"], s["mask_loss"], s["val_accuracy"], s["lambda"], s["tau"],
                   s["fraction"], s["selected"].cpu().numpy(), s["phase"], s["seconds"], **arrays)

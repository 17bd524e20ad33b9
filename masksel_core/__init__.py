"""masksel_core: learn which parts of a network's input need to be transferred.

Pure PyTorch and numpy: no Django, Celery or Redis. The public surface is what this module exports.
"""
from __future__ import annotations

from .config import ConfigError, TrainConfig
from .data import BUILTINS, DataError, TensorDataset, load_dataset, load_digits, load_npz
from .export import METRIC_COLUMNS, mask_document, metrics_csv, write_outputs
from .masks import MASKS, SelectionMask, create_mask
from .models import MODELS, create_model
from .schedules import LambdaPlateau, PhaseSchedule, TauCooldown
from .train import EpochRecord, TrainResult, resolve_device, train

__all__ = [
    "BUILTINS", "MASKS", "METRIC_COLUMNS", "MODELS", "ConfigError", "DataError",
    "EpochRecord", "LambdaPlateau", "PhaseSchedule", "SelectionMask", "TauCooldown", "TensorDataset",
    "TrainConfig", "TrainResult", "create_mask", "create_model", "load_dataset", "load_digits", "load_npz",
    "mask_document", "metrics_csv", "resolve_device", "train", "write_outputs",
]
__version__ = "0.1.0"

"""masksel_core: learn which parts of a network's input need to be transferred.

Pure PyTorch and numpy: no Django, Celery or Redis. The public surface is what this module exports.
"""
from __future__ import annotations

from .chain import MASK_NAMES, MaskChain, build_chain
from .config import ConfigError, TrainConfig
from .data import BUILTINS, DataError, TensorDataset, load_dataset, load_digits, load_npz
from .export import METRIC_COLUMNS, mask_document, metrics_csv, write_outputs
from .masks import SELECT_STAGES
from .models import MODELS, create_model
from .schedules import LambdaPlateau, PhaseSchedule, TauCooldown
from .train import EpochRecord, TrainResult, build, resolve_device, train

__all__ = [
    "BUILTINS", "MASK_NAMES", "METRIC_COLUMNS", "MODELS", "SELECT_STAGES", "ConfigError", "DataError",
    "EpochRecord", "LambdaPlateau", "MaskChain", "PhaseSchedule", "TauCooldown", "TensorDataset", "TrainConfig",
    "TrainResult", "build", "build_chain", "create_model", "load_dataset", "load_digits", "load_npz",
    "mask_document", "metrics_csv", "resolve_device", "train", "write_outputs",
]
__version__ = "0.1.0"

"""masksel_core: learn which parts of a network's input need to be transferred.

Pure PyTorch and numpy: no Django, Celery or Redis. The public surface is what this module exports.
"""
from __future__ import annotations

from .config import ConfigError, TrainConfig
from .data.arrays import DataError, TensorDataset, load_npz
from .data.builtins import BUILTINS, load_dataset, load_digits
from .export import mask_document, metrics_csv, write_outputs
from .masks.chain import MASK_NAMES, MaskChain, build_chain, default_mask_type, spec_problem
from .masks.dynamic import DYNAMIC_MASKS, DynamicMask, is_dynamic
from .masks.stages import SELECT_STAGES
from .models import MODELS, create_model
from .training.records import METRIC_COLUMNS, PHASES, EpochRecord
from .training.schedules import EarlyStopping, LambdaPlateau, PhaseSchedule, TargetPace, TauCooldown
from .training.train import TrainResult, build, gallery_inputs, resolve_device, train

__all__ = [
    "BUILTINS", "DYNAMIC_MASKS", "MASK_NAMES", "METRIC_COLUMNS", "MODELS", "PHASES", "SELECT_STAGES", "ConfigError",
    "DataError", "DynamicMask", "EarlyStopping", "EpochRecord", "LambdaPlateau", "MaskChain", "PhaseSchedule",
    "TargetPace", "TauCooldown", "TensorDataset", "TrainConfig", "TrainResult", "build", "build_chain",
    "create_model", "default_mask_type", "gallery_inputs", "is_dynamic", "load_dataset", "load_digits", "load_npz",
    "mask_document", "metrics_csv", "resolve_device", "spec_problem", "train", "write_outputs",
]
__version__ = "0.2.0"

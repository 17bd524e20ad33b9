"""masksel_core: learn which parts of a network's input need to be transferred.

Pure PyTorch and numpy: no Django, Celery or Redis. The public surface is what this module exports.
"""
from __future__ import annotations

from .config import (
    DEVICES,
    DISCRETIZATIONS,
    EXTEND_COSTS,
    LAMBDA_MONITORS,
    LR_SCALES,
    OPTION_CHOICES,
    OPTION_RANGES,
    PRECISIONS,
    THRESHOLD_MODES,
    ConfigError,
    TrainConfig,
    parse_grid,
)
from .data.arrays import TEST_SHARE, DataError, TensorDataset, load_npz
from .data.builtins import BUILTINS, builtin_summary, load_dataset, load_digits
from .data.stores import ReadCounter, StoreDataset, StoreError, is_store_uri, load_store
from .export import mask_document, mask_png, metrics_csv, npy_bytes, write_outputs
from .masks.chain import MASK_NAMES, MaskChain, build_chain, default_mask_type, spec_problem
from .masks.dynamic import DYNAMIC_MASKS, MASK_NET_NAMES, DynamicMask, is_dynamic
from .masks.stages import SELECT_STAGES
from .models import MODELS, create_model
from .options import OPTION_HELP, OPTION_LABELS
from .training.records import METRIC_COLUMNS, PHASES, EpochRecord
from .training.schedules import EarlyStopping, LambdaPlateau, PhaseSchedule, TargetPace, TauCooldown
from .training.train import (
    CHECKPOINT_NAME,
    TrainResult,
    build,
    build_mask,
    config_problem,
    gallery_inputs,
    resolve_device,
    train,
)
from .transfer.client import MAX_PAGE_SAMPLES
from .transfer.packing import TransferError, TransferPlan, encode_channel, full_plan, pack, plan_from_mask_document

__all__ = [
    "BUILTINS", "CHECKPOINT_NAME", "DEVICES", "DISCRETIZATIONS", "DYNAMIC_MASKS", "EXTEND_COSTS", "LAMBDA_MONITORS",
    "LR_SCALES", "MASK_NAMES", "MASK_NET_NAMES", "MAX_PAGE_SAMPLES", "METRIC_COLUMNS", "MODELS", "OPTION_CHOICES",
    "OPTION_HELP",
    "OPTION_LABELS", "OPTION_RANGES", "PHASES", "PRECISIONS", "SELECT_STAGES",
    "TEST_SHARE", "THRESHOLD_MODES", "ConfigError", "DataError", "DynamicMask", "EarlyStopping", "EpochRecord",
    "LambdaPlateau", "MaskChain", "PhaseSchedule", "ReadCounter", "StoreDataset", "StoreError", "TargetPace",
    "TauCooldown", "TensorDataset", "TrainConfig", "TrainResult", "TransferError", "TransferPlan", "build",
    "build_chain", "build_mask", "builtin_summary", "config_problem", "create_model", "default_mask_type",
    "encode_channel", "full_plan", "gallery_inputs",
    "is_dynamic", "is_store_uri", "load_dataset", "load_digits", "load_npz", "load_store", "mask_document",
    "mask_png", "metrics_csv", "npy_bytes", "pack", "parse_grid", "plan_from_mask_document", "resolve_device",
    "spec_problem", "train", "write_outputs",
]
__version__ = "0.2.0"

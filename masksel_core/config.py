"""Training configuration: one frozen dataclass that round-trips through JSON.

Django stores it in a JSONField and the CLI builds it from flags, so validation lives here,
once, and every front end gets the same error messages.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .masks.chain import split_spec
from .masks.dynamic import MASK_NET_NAMES, is_dynamic
from .models import MODELS

EXTEND_COSTS = ("proxy", "bytes")
DEVICES = ("auto", "cpu", "cuda")
# "auto": bf16 autocast on a CUDA device that supports it, fp32 elsewhere (`training/precision.py`).
PRECISIONS = ("auto", "fp32", "bf16")
DISCRETIZATIONS = ("gumbel", "deterministic")
# The learning rates are given for batches of LR_REFERENCE_BATCH; "linear" multiplies them by batch_size / 128,
# "sqrt" by its square root, "none" keeps them (`TrainConfig.lr`).
LR_SCALES = ("none", "linear", "sqrt")
LR_REFERENCE_BATCH = 128
# "val_total": task loss + lambda * Q on the validation split; "total": the same on the training batches (the
# paper); "val_mask_loss": Q of the noise-free mask (the authors' later code).
LAMBDA_MONITORS = ("val_total", "total", "val_mask_loss")
THRESHOLD_MODES = ("rel", "abs")
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "device": DEVICES, "precision": PRECISIONS, "lr_scale": LR_SCALES, "discretization": DISCRETIZATIONS,
    "lambda_monitor": LAMBDA_MONITORS, "lambda_threshold_mode": THRESHOLD_MODES, "extend_costs": EXTEND_COSTS,
    "mask_net": MASK_NET_NAMES,
}


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and the problem."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run.

    A run has three phases (`docs/design.md`, "Three phases"):
    - warm-up: the network alone on the input as the initial mask passes it (everything, for the any-masks;
      the best version, for extend chains) until its validation accuracy has not improved for
      `early_stop_patience` epochs (at most `warmup_epochs`), unless `pretrained` weights are given. This is
      the paper's pre-trained starting point;
    - selection (Algorithm 1, `epochs` epochs at most): masks and network together, with the paper's
      schedules; it ends early at `target_fraction` / `target_bytes` or after `max_accuracy_drop`;
    - finalize: the network alone behind the frozen mask, again until validation accuracy stops improving (at
      most `finalize_epochs`); the best validation epoch is the model written.
    Validation is a stratified `val_share` of the training split; the test split only scores the result.

    Options of the authors' later code (SDM 2022) sit beside the paper's: `discretization="deterministic"`
    (no Gumbel noise: straight-through rounding, the same as gamma = 1), `lambda_monitor="val_mask_loss"`
    with `lambda_threshold=0.0025` and `lambda_threshold_mode="abs"`, `rescale=True` (kept inputs scaled up by
    the kept share, as dropout does) and `init_logit=3` (sigmoid 0.95). `init_selected` lists the elements
    selected at first (flat indices into the mask's elements; for xor masks the favoured choice of each group);
    `costs` are relative per-element prices.

    Dynamic masks (`dynamic-pixel-any`, `dynamic-block-any`: a selection per input, `dynamic.py`) take
    `server_view` (HxW the server's mask network looks at; None: the full input) and `mask_net` (`linear`,
    `convatt`, `hybrid`: the linear map plus a 3x3 convolution, or `auto`: hybrid while the linear map is small
    (up to 28x28), else convatt).
    """

    mask_type: str = "pixel-any"
    model: str = "mlp"
    epochs: int = 100
    lambda_init: float = 0.1
    lambda_factor: float = 1.25
    lambda_patience: int = 2
    tau_init: float = 10.0
    tau_decay: float = 0.5
    tau_min: float = 0.01
    gamma: float = 0.5
    mask_lr: float = 0.01
    model_lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    target_fraction: float | None = None
    grid: tuple[int, int] = (3, 3)
    init_sigma: float = 0.01
    init_logit: float = 1.0
    init_selected: list[int] | None = None
    costs: list[Any] | None = None
    discretization: str = "gumbel"
    lambda_monitor: str = "val_total"
    lambda_threshold: float = 0.01
    lambda_threshold_mode: str = "rel"
    rescale: bool = False
    max_accuracy_drop: float | None = None
    pretrained: str | None = None
    # "proxy": the paper's price of an extend version (q/100 for JPEG, 1/s^2 for thumbnails); "bytes": its
    # measured mean size on the wire relative to the raw input, per channel (a noisy channel's JPEG is larger),
    # so that Q is expected bytes per sample / raw.
    extend_costs: str = "proxy"
    # Stop selecting once the mask's bytes per sample (float32 values, or measured JPEG sizes) are at most this.
    target_bytes: float | None = None
    warmup_epochs: int = 100
    finalize_epochs: int = 100
    early_stop_patience: int = 10
    network_lr: float = 1e-3
    val_share: float = 0.15
    # The swap check that ends selection (`training/swap_check.py`): the dropped elements tried against each kept one,
    # and how many swaps at most; 0 candidates turn it off.
    swap_candidates: int = 4
    swap_rounds: int = 3
    server_view: tuple[int, int] | None = None
    mask_net: str = "auto"
    # Larger batches (a GPU's) with the learning rates scaled to match (LR_SCALES); off unless asked.
    lr_scale: str = "none"

    def __post_init__(self) -> None:
        _validate(self)

    def lr(self, rate: float) -> float:
        """A learning rate of this config (model_lr, mask_lr, network_lr) for its batch size, as `lr_scale` says:
        the rates are given for batches of LR_REFERENCE_BATCH. On mnist5k at 5 % of the pixels, batches of 512
        scored 0.877 with the rates of 128, 0.896 with sqrt and 0.905 with linear scaling (128: 0.911)."""
        ratio = self.batch_size / LR_REFERENCE_BATCH
        return rate * {"none": 1.0, "linear": ratio, "sqrt": ratio ** 0.5}[self.lr_scale]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["grid"] = list(self.grid)
        data["server_view"] = list(self.server_view) if self.server_view is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from JSON-like data, refusing unknown keys and wrong types by name."""
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**{name: _coerce(name, known[name].type, value) for name, value in data.items()})


def parse_grid(text: str, name: str = "grid") -> tuple[int, int]:
    """Parse the CLI's `GHxGW` spelling of a grid or a server view, e.g. `3x3`."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"{name} must look like 3x3, got {text!r}")
    return int(parts[0]), int(parts[1])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Annotation prefix -> (does a JSON value fit, what the message says it must be).
_TYPES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("bool", lambda value: isinstance(value, bool), "true or false"),
    ("list", lambda value: isinstance(value, list), "a list"),
    ("int", _is_int, "an integer"),
    ("float", lambda value: _is_int(value) or isinstance(value, float), "a number"),
    ("str", lambda value: isinstance(value, str), "a string"),
)


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    kind = str(annotation)
    if name in ("grid", "server_view"):
        if value is None and name == "server_view":
            return None
        if isinstance(value, str):
            return parse_grid(value, name)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
            return (int(value[0]), int(value[1]))
        raise ConfigError(f"{name} must be two integers, e.g. [3, 3] or '3x3'")
    if value is None and "None" in kind:
        return None
    for prefix, fits, expected in _TYPES:
        if kind.startswith(prefix):
            if not fits(value):
                raise ConfigError(f"{name} must be {expected}, got {value!r}")
            if prefix != "float":
                return value
            try:
                return float(value)
            except OverflowError:  # an integer beyond any float (10**400): no option's range holds it
                raise ConfigError(f"{name} must be a number no larger than 1e308, got {_shown(value)}") from None
    return value


# Field -> (low, high, whether low itself is refused); optional fields left at None are not checked.
#: (low, high, low end open) of each number an option may be; the web form shows some of them as its bounds.
OPTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100_000, False), "lambda_init": (0.0, 1e6, True), "lambda_factor": (1.0, 100.0, False),
    "lambda_patience": (0, 10_000, False), "tau_init": (0.0, 1e4, True), "tau_decay": (0.0, 1.0, True),
    "gamma": (0.0, 1.0, False), "mask_lr": (0.0, 10.0, True), "model_lr": (0.0, 10.0, True),
    "batch_size": (1, 1_000_000, False), "seed": (0, 2**63 - 1, False), "finalize_epochs": (0, 100_000, False),
    "warmup_epochs": (0, 100_000, False), "early_stop_patience": (1, 10_000, False), "network_lr": (0.0, 10.0, True),
    "val_share": (0.0, 0.5, True), "init_sigma": (0.0, 10.0, False), "lambda_threshold": (0.0, 1e6, False),
    "swap_candidates": (0, 10_000, False), "swap_rounds": (0, 10_000, False),
    "init_logit": (-100.0, 100.0, False), "max_accuracy_drop": (0.0, 1.0, False),
    "target_fraction": (0.0, 1.0, False), "target_bytes": (0.0, 1e12, True),
}


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    if value > high or value < low or not math.isfinite(value) or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low}, {high}], got {_shown(value)}")


def _shown(value: float) -> object:
    """A number as an error message shows it: an integer too long to read (or to print: Python refuses str() of
    one beyond 4,300 digits) by its size."""
    if isinstance(value, float) or abs(value) < 10**30:
        return value
    return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"


def _validate(cfg: TrainConfig) -> None:
    try:
        split_spec(cfg.mask_type)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.model not in MODELS:
        raise ConfigError(f"unknown model {cfg.model!r}; choose one of {', '.join(MODELS)}")
    for name, choices in OPTION_CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
    for name, (low, high, low_open) in OPTION_RANGES.items():
        if getattr(cfg, name) is not None:
            _check_range(name, getattr(cfg, name), low, high, low_open=low_open)
    _check_range("tau_min", cfg.tau_min, 0.0, cfg.tau_init, low_open=True)
    if cfg.init_selected is not None and not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in cfg.init_selected):
        raise ConfigError("init_selected must be a list of non-negative integers")
    if cfg.target_bytes is not None:
        if cfg.target_fraction is not None:
            raise ConfigError("give target_bytes or target_fraction, not both")
        extend_first = cfg.mask_type.split("+")[0].strip() in ("jpeg-xor", "thumb-xor")
        if extend_first and cfg.extend_costs != "bytes":
            raise ConfigError("target_bytes with a jpeg-xor/thumb-xor chain needs extend_costs='bytes' "
                              "(the q/100 proxy says nothing about bytes)")
    if not all(1 <= g <= 10_000 for g in cfg.grid):
        raise ConfigError(f"grid sizes must be between 1 and 10000, got {cfg.grid}")
    _validate_dynamic(cfg)


def _validate_dynamic(cfg: TrainConfig) -> None:
    """Options that only a dynamic mask takes, and those it does not."""
    if not is_dynamic(cfg.mask_type):
        if cfg.server_view is not None:
            raise ConfigError(f"server_view applies to dynamic masks only, not to {cfg.mask_type}")
        return
    if cfg.server_view is not None and not all(1 <= v <= 10_000 for v in cfg.server_view):
        raise ConfigError(f"server_view sizes must be between 1 and 10000, got {cfg.server_view}")
    for name in ("rescale", "init_selected"):
        if getattr(cfg, name):
            raise ConfigError(f"{name} is not available with dynamic masks (the selection differs per input)")

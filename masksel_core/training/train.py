"""`train`: learn a mask and a network from a config and a data set, resumable after any epoch.

Progress leaves the loop only through the `on_epoch` callback (one call per epoch, never per
batch); `should_stop` is polled between batches so a cancel takes effect within one batch. With a
`checkpoint_dir`, the whole state (network, masks, optimisers, schedules, RNG states, records)
is saved after every epoch, and a later call with the same directory resumes from it: on the CPU
with a fixed seed the resumed run gives the same numbers, bit for bit, as an uninterrupted one.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data.arrays import DataError, TensorDataset, stratified_indices
from ..data.stores import StoreDataset
from ..masks.chain import AnyMask, build_chain, spec_problem
from ..masks.dynamic import DynamicLayout, DynamicMask, gallery_indices, is_dynamic
from ..models import create_model, error_line
from ..transfer.packing import transfer_summary
from .loop import Loop, Stopped
from .precision import memory_format
from .records import EpochRecord
from .steps import Splits, eval_batch, evaluate, evaluate_batches
from .streamed import StreamedSplits, probe_count

CHECKPOINT_NAME = "checkpoint.pt"
TEST_SAMPLE = 1024  # streamed test inputs packed to measure the bytes per sample (a static mask sends the same)


@dataclass
class TrainResult:
    """The trained network and masks, every epoch's record, and what the run has to say about them."""

    config: TrainConfig
    model: nn.Module
    mask: AnyMask
    input_shape: tuple[int, int, int]
    records: list[EpochRecord] = field(default_factory=list)
    stopped_because: str = "epochs"
    start_accuracy: float = 0.0
    test_accuracy: float | None = None  # the model written, on the test split, which nothing else looks at
    warnings: list[str] = field(default_factory=list)
    swaps: list[tuple[int, int]] = field(default_factory=list)  # (dropped, taken) by the swap check
    swap_seconds: float = 0.0
    refilled: list[int] = field(default_factory=list)  # kept again after lambda overshot the target
    probe: torch.Tensor | None = None  # the validation inputs a dynamic mask's share is measured on
    # The test inputs the transfer summary packs: read only where an output asks for it.
    test_inputs: Callable[[], torch.Tensor] | None = field(default=None, repr=False)

    @property
    def selected(self) -> np.ndarray:
        return self.mask.selected(self.probe)

    @property
    def fraction(self) -> float:
        return self.mask.fraction(self.probe)

    @functools.cached_property
    def transfer(self) -> dict[str, Any]:
        """What the final mask sends per test sample (`transfer.packing.transfer_summary`): measured the first time
        an output asks (`transfer.json`, the CLI's report, the service's run), never by training itself."""
        if not self.records or self.test_inputs is None:
            return {}
        return transfer_summary(self.mask, self.test_inputs(), budget_bytes=self.config.target_bytes, probe=self.probe)

    def seconds_per_phase(self) -> dict[str, float]:
        """Where the run's time went: each phase's epochs, and the swap check that ends selection."""
        seconds = {"warmup": 0.0, "select": 0.0, "swap_check": self.swap_seconds, "finalize": 0.0}
        for record in self.records:
            if record.phase in seconds:
                seconds[record.phase] += record.seconds
        return {phase: round(value, 3) for phase, value in seconds.items()}

    def summary(self) -> dict[str, Any]:
        """What `summary.json` says: how the run ended and how good its model is."""
        return {
            "stopped_because": self.stopped_because,
            "val_accuracy": self.records[-1].val_accuracy if self.records else None,
            "test_accuracy": self.test_accuracy,
            "start_accuracy": self.start_accuracy,
            "fraction": self.fraction,
            "epochs_per_phase": dict(Counter(r.phase for r in self.records)),
            "seconds_per_phase": self.seconds_per_phase(),
            "swaps": [list(swap) for swap in self.swaps],
            "refilled": list(self.refilled),
            "warnings": list(self.warnings),
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def prepare_inputs(chain: AnyMask, data: TensorDataset) -> TensorDataset:
    """Apply the chain's `extend` (if any) to the whole data set once, before batching."""
    if chain.extend is None:
        return data
    return TensorDataset(data.name, chain.extend.apply(data.x_train), data.y_train, chain.extend.apply(data.x_test),
                         data.y_test, data.num_classes, list(data.channel_names))


def build(config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int,
          generator: torch.Generator | None = None) -> tuple[AnyMask, nn.Module]:
    """The mask chain and the network a config describes (the network takes the chain's output)."""
    mask = build_mask(config, input_shape, generator)
    return mask, create_model(config.model, mask.output_shape, num_classes, state_dict=config.pretrained)


def config_problem(config: TrainConfig, input_shape: Sequence[int]) -> str:
    """Why `config`'s mask cannot be built for inputs of `input_shape`, or "": `spec_problem`'s reason, else what
    building it refuses (an `init_selected` index beyond the mask, `costs` of another shape or not numbers, a grid
    finer than the input). Asked where a run is submitted, so that such a run is refused there, not on a worker."""
    shape = tuple(int(size) for size in input_shape)
    problem = spec_problem(config.mask_type, shape)
    if problem:
        return problem
    try:
        if is_dynamic(config.mask_type):  # its layout only: the mask network may be large, and is not needed here
            DynamicLayout.of(config.mask_type, shape, grid=config.grid, server_view=config.server_view,  # type: ignore[arg-type]
                             mask_net=config.mask_net, costs=_costs(config))
        else:  # a static chain holds a few numbers per element: built whole, as training builds it
            build_mask(config, shape)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        return str(exc)
    return ""


def _costs(config: TrainConfig) -> np.ndarray | None:
    try:
        return np.asarray(config.costs, dtype=np.float32) if config.costs is not None else None
    except (ValueError, TypeError) as exc:  # text, or rows of different lengths
        raise ValueError(f"costs must be numbers in the mask's shape: {exc}") from None


def build_mask(config: TrainConfig, input_shape: tuple[int, int, int],
               generator: torch.Generator | None = None) -> AnyMask:
    """The mask (a chain of stages, or a dynamic mask) a config describes for inputs of `input_shape`; a
    ValueError names what does not fit them."""
    costs = _costs(config)
    if is_dynamic(config.mask_type):
        return DynamicMask(config.mask_type, input_shape, grid=config.grid, server_view=config.server_view,
                           mask_net=config.mask_net, costs=costs)
    chain = build_chain(config.mask_type, input_shape, grid=config.grid, init_sigma=config.init_sigma,
                        init_logit=config.init_logit, rescale=config.rescale, costs=costs, generator=generator)
    if config.init_selected is not None:
        chain.select_stages[0].prefer(config.init_selected, config.init_logit)
    return chain


def split_validation(data: TensorDataset, share: float, seed: int, batch_size: int = 128) -> Splits:
    """A stratified, seeded `share` of the training split for validation; the rest is trained on."""
    fit, val = (torch.from_numpy(i) for i in stratified_indices(data.y_train.numpy(), share, seed))
    if len(val) == 0:
        raise DataError("the training split has a single sample of every class: nothing is left for validation")
    return Splits(data.x_train[fit], data.y_train[fit], data.x_train[val], data.y_train[val], batch_size)


def gallery_inputs(data: TensorDataset | StoreDataset, config: TrainConfig) -> torch.Tensor:
    """The validation inputs (G, C, H, W) whose cells a dynamic run's records hold (`EpochRecord.gallery`)."""
    if isinstance(data, StoreDataset):
        _, val = stratified_indices(data.y_train, config.val_share, config.seed)
        val = val[:probe_count(data.input_shape, len(val))]  # the streamed run's probe: the first validation rows
        picked = data.train_rows[val[gallery_indices(torch.from_numpy(data.y_train[val]))]]
        return torch.from_numpy(data.read_rows("x_train", picked))
    splits = split_validation(data, config.val_share, config.seed)
    return splits.x_val[gallery_indices(splits.y_val)]


def make_splits(config: TrainConfig, chain: AnyMask, data: TensorDataset | StoreDataset,
                device: torch.device) -> tuple[Splits | StreamedSplits, TensorDataset | None]:
    """The run's fit and validation splits on `device`: in memory (with the data the chain's `extend` prepared),
    or streamed from a store (extended batch by batch)."""
    if isinstance(data, StoreDataset):
        extend = chain.extend.apply if chain.extend is not None else None
        return StreamedSplits(data, val_share=config.val_share, seed=config.seed, batch_size=config.batch_size,
                              device=device, transform=extend), None
    prepared = prepare_inputs(chain, data)
    splits = split_validation(prepared, config.val_share, config.seed, config.batch_size)
    moved = (t.to(device) for t in (splits.x_fit, splits.y_fit, splits.x_val, splits.y_val))
    return Splits(*moved, batch_size=config.batch_size), prepared


def cost_sample(data: TensorDataset | StoreDataset) -> torch.Tensor:
    """Training inputs to measure a JPEG version's bytes on: all in memory, the first chunk's worth of a store."""
    if isinstance(data, StoreDataset):
        return torch.from_numpy(data.read_rows("x_train", data.train_rows[:max(data.chunk_samples, 256)]))
    return data.x_train


def train(
    config: TrainConfig,
    data: TensorDataset | StoreDataset,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    inspect: Callable[[EpochRecord, nn.Module, AnyMask], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: str | Path | None = None,
    on_checkpoint: Callable[[], None] | None = None,
) -> TrainResult:
    """Learn a mask and a network; returns both with one record per epoch.

    If `should_stop` answers True the loop ends after the current batch and the result's
    `stopped_because` is "cancelled"; the epochs recorded so far are kept. `inspect`, when given, is
    called after every epoch with the live network and masks (to read, not to change: e.g. to score
    them on data `train` never sees, or to keep a snapshot of one epoch's network). `on_checkpoint` is called
    after each epoch's checkpoint is written (e.g. to copy it where another host can resume from it).
    """
    device = resolve_device(config.device)
    problem = spec_problem(config.mask_type, data.input_shape)  # what `build` refuses, it names itself
    if problem:
        raise ValueError(problem)
    torch.manual_seed(config.seed)
    chain, model = build(config, data.input_shape, data.num_classes, torch.Generator().manual_seed(config.seed))
    if config.extend_costs == "bytes" and chain.extend is not None:
        chain.set_version_costs(chain.extend.measured_costs(cost_sample(data), per_channel=True))
    splits, prepared = make_splits(config, chain, data, device)
    try:
        return _run(config, data, splits, prepared, chain, model, device, on_epoch=on_epoch, inspect=inspect,
                    should_stop=should_stop, checkpoint_dir=checkpoint_dir, on_checkpoint=on_checkpoint)
    finally:
        splits.close()


def _run(config: TrainConfig, data: TensorDataset | StoreDataset, splits: Splits | StreamedSplits,
         prepared: TensorDataset | None, chain: AnyMask, model: nn.Module, device: torch.device, *,
         on_epoch: Callable[[EpochRecord], None] | None, inspect: Callable[[EpochRecord, nn.Module, AnyMask], None]
         | None, should_stop: Callable[[], bool] | None, checkpoint_dir: str | Path | None,
         on_checkpoint: Callable[[], None] | None) -> TrainResult:
    loop = Loop(config, splits, model.to(device, memory_format=memory_format(model, device)), chain.to(device),
                should_stop or (lambda: False), data_digest(data))
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if path is not None and path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"the checkpoint directory {path.parent} is a file")
    if path is not None and path.exists():
        # Loaded onto the CPU: the modules and optimisers move what they hold to their own devices.
        loop.load_state_dict(read_checkpoint(path))
    result = TrainResult(config, model, chain, data.input_shape, probe=loop.probe)

    def emit(record: EpochRecord) -> None:
        if on_epoch is not None:
            on_epoch(record)
        if inspect is not None:
            inspect(record, model, chain)
        if path is not None:
            _atomic_save(loop.state_dict(), path)
            if on_checkpoint is not None:
                on_checkpoint()

    try:
        result.stopped_because = loop.run(emit)
    except Stopped:
        result.stopped_because = "cancelled"
    model.to(memory_format=torch.contiguous_format)  # what is written and exported has the usual layout
    result.records = list(loop.records)
    result.start_accuracy = loop.start_accuracy or 0.0
    result.swaps = list(loop.swaps)
    result.swap_seconds = loop.swap_seconds
    result.refilled = list(loop.refilled)
    model.eval()
    if result.records and result.stopped_because != "cancelled":
        # In float32: the score of the model as it is written and downloaded.
        if prepared is not None:
            result.test_accuracy = evaluate(model, chain, prepared.x_test.to(device), prepared.y_test.to(device))[0]
        else:
            result.test_accuracy = evaluate_batches(model, chain, splits.test_batches(), device=device)[0]
        result.warnings = run_warnings(result, splits.y_val, loop.lam.value)
    result.test_inputs = test_inputs(data)
    return result


def data_digest(data: TensorDataset | StoreDataset) -> str:
    """Names the data a run trains on, so that a checkpoint resumes only on it: its shape, sizes, training labels and
    first training inputs, as stored (the same whether the run streams it or holds it in memory: a worker's memory
    budget decides that, and a retry may land on another worker)."""
    if isinstance(data, StoreDataset):
        first = data.read_rows("x_train", data.train_rows[:4])
    else:
        first = data.x_train[:4].detach().cpu().numpy()
    state = hashlib.sha256(repr((tuple(data.input_shape), len(data.y_train), data.num_classes)).encode())
    state.update(np.asarray(data.y_train, dtype=np.int64).tobytes())
    state.update(np.ascontiguousarray(first, dtype=np.float32).tobytes())
    return state.hexdigest()[:16]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint as written by `_atomic_save`; a damaged or foreign file is a ValueError that names it (torch's
    own errors for such a file are a KeyError, an EOFError or an unpickling error, depending on the damage)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch.load raises on a damaged file: named, not a traceback
        raise ValueError(f"{path} is not a masksel checkpoint ({error_line(exc)}); remove it to train from the "
                         "start") from None
    if not isinstance(state, dict) or "format" not in state:
        raise ValueError(f"{path} is not a masksel checkpoint; remove it to train from the start")
    return state


def test_inputs(data: TensorDataset | StoreDataset) -> Callable[[], torch.Tensor]:
    """The test inputs a transfer summary packs: all of an in-memory set, the first `TEST_SAMPLE` (at most a batch's
    memory) of a store's (a static mask sends the same bytes of every sample)."""
    if isinstance(data, StoreDataset):
        count = min(TEST_SAMPLE, eval_batch(data.input_shape))
        return lambda: torch.from_numpy(data.read_rows(data.test_key, data.test_rows[:count]))
    return lambda: data.x_test


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def run_warnings(result: TrainResult, y_val: torch.Tensor, final_lambda: float) -> list[str]:
    """What a user must know before trusting a finished run: an empty mask, a model near chance, a target not
    reached, a lambda that never moved."""
    config, last = result.config, result.records[-1]
    warnings = []
    if not result.mask.frequency(result.probe).any():  # by what is kept, not by its price (costs may be 0)
        warnings.append("the final mask keeps nothing, so the network sees only zeros: lower lambda_init or "
                        "lambda_factor, or set a target_fraction")
    chance = float(torch.bincount(y_val).max()) / max(len(y_val), 1)
    if last.val_accuracy < chance + 0.1 * (1 - chance):
        hint = ("; a linear mask network finds what sits at fixed places: where the object moves, choose "
                "mask_net hybrid or convatt" if getattr(result.mask, "mask_net", "") == "linear" else "")
        warnings.append(f"the final validation accuracy {last.val_accuracy:.3f} is near chance ({chance:.3f}): "
                        f"the model is not worth using{hint}")
    selection = [r for r in result.records if r.phase == "select"]
    target = config.target_fraction if config.target_fraction is not None else config.target_bytes
    if target is not None and result.stopped_because not in ("target_fraction", "target_bytes"):
        name = "target_fraction" if config.target_fraction is not None else "target_bytes"
        warnings.append(f"{name} {target:g} was not reached in {len(selection)} epochs of selection "
                        f"(Q is {result.fraction:.4f}): give more epochs or a larger lambda_factor")
    if (target is None and result.stopped_because == "epochs" and config.lambda_factor > 1
            and len(selection) > config.lambda_patience + 1 and final_lambda == config.lambda_init):
        warnings.append(f"lambda never rose in {len(selection)} epochs of selection: the monitored loss "
                        f"({config.lambda_monitor}) kept improving; give more epochs, a smaller lambda_patience "
                        "or a target_fraction for a smaller mask")
    return warnings

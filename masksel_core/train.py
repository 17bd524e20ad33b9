"""The training loop of Algorithm 1: masks and network learned jointly, resumable after any epoch.

Progress leaves the loop only through the `on_epoch` callback (one call per epoch, never per
batch); `should_stop` is polled between batches so a cancel takes effect within one batch. With a
`checkpoint_dir`, the whole state (network, masks, both optimisers, schedules, RNG states, records)
is saved after every epoch, and a later call with the same directory resumes from it: on the CPU
with a fixed seed the resumed run gives the same numbers, bit for bit, as an uninterrupted one.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .chain import MaskChain, build_chain
from .config import TrainConfig
from .data import TensorDataset
from .input_grad import InputGradTap
from .models import create_model
from .optim import MaskAdam
from .schedules import LambdaPlateau, PhaseSchedule, TauCooldown

CHECKPOINT_NAME = "checkpoint.pt"
EVAL_BATCH = 1024


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's metrics (the `metrics.csv` columns) and the discrete mask after it."""

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

    def metrics(self) -> dict[str, float | int]:
        return {
            "epoch": self.epoch,
            "task_loss": self.task_loss,
            "mask_loss": self.mask_loss,
            "val_accuracy": self.val_accuracy,
            "lambda": self.lambda_,
            "tau": self.tau,
            "fraction": self.fraction,
        }

    def state(self) -> dict[str, Any]:
        return {**self.metrics(), "selected": torch.from_numpy(self.selected.copy()), "phase": self.phase,
                "seconds": self.seconds}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> EpochRecord:
        return cls(s["epoch"], s["task_loss"], s["mask_loss"], s["val_accuracy"], s["lambda"], s["tau"],
                   s["fraction"], s["selected"].cpu().numpy(), s["phase"], s["seconds"])


@dataclass
class TrainResult:
    config: TrainConfig
    model: nn.Module
    mask: MaskChain
    input_shape: tuple[int, int, int]
    records: list[EpochRecord] = field(default_factory=list)
    stopped_because: str = "epochs"
    start_accuracy: float = 0.0
    transfer: dict[str, Any] = field(default_factory=dict)  # bytes of the final mask on the test set

    @property
    def selected(self) -> np.ndarray:
        return self.mask.selected()

    @property
    def fraction(self) -> float:
        return self.mask.fraction()


class Stopped(Exception):
    """Raised inside the loop when `should_stop` answers True."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def prepare_inputs(chain: MaskChain, data: TensorDataset) -> TensorDataset:
    """Apply the chain's `extend` (if any) to the whole data set once, before batching."""
    if chain.extend is None:
        return data
    return TensorDataset(data.name, chain.extend.apply(data.x_train), data.y_train, chain.extend.apply(data.x_test),
                         data.y_test, data.num_classes, list(data.channel_names))


def build(config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int,
          generator: torch.Generator | None = None) -> tuple[MaskChain, nn.Module]:
    """The mask chain and the network a config describes (the network takes the chain's output)."""
    costs = np.asarray(config.costs, dtype=np.float32) if config.costs is not None else None
    chain = build_chain(config.mask_type, input_shape, grid=config.grid, init_sigma=config.init_sigma,
                        init_logit=config.init_logit, rescale=config.rescale, costs=costs, generator=generator)
    if config.init_selected is not None:
        chain.select_stages[0].prefer(config.init_selected, config.init_logit)
    model = create_model(config.model, chain.output_shape, num_classes, state_dict=config.pretrained)
    return chain, model


def train(
    config: TrainConfig,
    data: TensorDataset,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    inspect: Callable[[EpochRecord, nn.Module, MaskChain], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Learn a mask and a network; returns both with one record per epoch.

    If `should_stop` answers True the loop ends after the current batch and the result's
    `stopped_because` is "cancelled"; the epochs recorded so far are kept. `inspect`, when given, is
    called after every epoch with the live network and masks (to read, not to change: e.g. to score
    them on data `train` never sees, or to keep a snapshot of one epoch's network).
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    chain, model = build(config, data.input_shape, data.num_classes, torch.Generator().manual_seed(config.seed))
    if config.extend_costs == "bytes" and chain.extend is not None:
        chain.set_version_costs(chain.extend.measured_costs(data.x_train, per_channel=True))
    prepared = prepare_inputs(chain, data).to(device)
    tap = InputGradTap(model.to(device), chain.output_shape, device)
    loop = _Loop(config, prepared, model, chain.to(device), device, should_stop or (lambda: False), tap)
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if path is not None and path.exists():
        loop.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    result = TrainResult(config, model, chain, data.input_shape)

    def emit(record: EpochRecord) -> None:
        if on_epoch is not None:
            on_epoch(record)
        if inspect is not None:
            inspect(record, model, chain)
        if path is not None:
            _atomic_save(loop.state_dict(), path)

    try:
        result.stopped_because = loop.run(emit)
    except Stopped:
        result.stopped_because = "cancelled"
    finally:
        tap.remove()  # the network is a plain module again
    result.records = list(loop.records)
    result.start_accuracy = loop.start_accuracy or 0.0
    model.eval()
    if result.records:
        from .transfer import transfer_summary

        result.transfer = transfer_summary(chain, data, budget_bytes=config.target_bytes)
    return result


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def masked_step(model: nn.Module, chain: MaskChain, tap: InputGradTap, loss_fn: nn.Module, x: torch.Tensor,
                y: torch.Tensor, model_opt: torch.optim.Optimizer, mask_opt: MaskAdam, *, lam: float, tau: float,
                explore: bool, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step of the network and the masks on `L = task + lam * Q` (Algorithm 1's inner loop);
    returns `(task, Q)`, detached.

    The masks stay out of autograd's graph: the chain masks the batch without one
    (`MaskChain.forward_manual`), the network's backward runs exactly as in plain training, and the
    masks' gradients are computed by hand from `dL/dmasked` (taken by `tap` where it is active, else
    by autograd) before either optimiser changes anything. `benchmarks/train_overhead.py` times this step.
    """
    masked, q, saved = chain.forward_manual(x, tau=tau, explore=explore, generator=generator, track=not tap.active)
    if tap.active:
        tap.expect(masked)
    task = loss_fn(model(masked), y)
    model_opt.zero_grad(set_to_none=True)
    task.backward()
    grad = tap.input_grad() if tap.active else masked.grad
    # Where it can, the chain's compiled backward takes the masks' optimiser step too; else the optimiser steps
    # here (and clears the masks' gradients). First, while the masks' code paths are warm.
    if not chain.backward_manual(saved, grad if grad is not None else torch.zeros_like(masked), lam,
                                 optimizer=mask_opt if isinstance(mask_opt, MaskAdam) else None):
        mask_opt.step()
    model_opt.step()
    return task.detach(), q


class _Loop:
    """The state of one training run; split out so each step stays short and can be saved."""

    def __init__(self, config: TrainConfig, data: TensorDataset, model: nn.Module, chain: MaskChain,
                 device: torch.device, should_stop: Callable[[], bool], tap: InputGradTap) -> None:
        self.config, self.data, self.model, self.chain, self.tap = config, data, model, chain, tap
        self.should_stop = should_stop
        self.generator = torch.Generator(device=device).manual_seed(config.seed + 1)
        self.model_opt = torch.optim.Adam(model.parameters(), lr=config.model_lr, amsgrad=True)
        self.mask_opt = MaskAdam(chain.parameters(), lr=config.mask_lr)
        self.lam = LambdaPlateau(config.lambda_init, config.lambda_factor, config.lambda_patience,
                                 threshold=config.lambda_threshold)
        self.tau = TauCooldown(config.tau_init, config.tau_decay, config.tau_min)
        self.phase = PhaseSchedule(1.0 if config.discretization == "deterministic" else config.gamma)
        self.loss_fn = nn.CrossEntropyLoss()
        self.epoch = 0
        self.stage = "select"
        self.select_end = 0
        self.stopped_because = "epochs"
        self.start_accuracy: float | None = None
        self.records: list[EpochRecord] = []
        # What one sample costs whole (float32 values of the original channels): Q is relative to it.
        self.raw_bytes = float(np.prod(chain.input_shape) * 4)

    def run(self, emit: Callable[[EpochRecord], None]) -> str:
        if self.start_accuracy is None:
            self.start_accuracy = self._evaluate()
        while self.stage != "done":
            record = self._select_epoch() if self.stage == "select" else self._finalize_epoch()
            if record is None:
                continue
            self.records.append(record)
            emit(record)
        return self.stopped_because

    def _select_epoch(self) -> EpochRecord | None:
        if self.epoch >= self.config.epochs:
            self._end_selection("epochs")
            return None
        started = time.perf_counter()
        lam, tau = self.lam.value, self.tau.value
        task_loss, mask_loss = self._train_epoch(lam, tau, train_mask=True)
        accuracy, fraction = self._evaluate(), self.chain.fraction()
        monitored = fraction if self.config.lambda_monitor == "val_mask_loss" else task_loss + lam * mask_loss
        self.tau.step(restart=self.lam.step(monitored))
        self.epoch += 1
        record = EpochRecord(self.epoch, task_loss, mask_loss, accuracy, lam, tau, fraction, self.chain.selected(),
                             "select", time.perf_counter() - started)
        reason = self._stop_reason(record)
        if reason:
            self._end_selection(reason)
        return record

    def _stop_reason(self, record: EpochRecord) -> str:
        target, drop = self.config.target_fraction, self.config.max_accuracy_drop
        if target is not None and record.fraction <= target:
            return "target_fraction"
        budget = self.config.target_bytes
        if budget is not None and record.fraction * self.raw_bytes <= budget:
            return "target_bytes"
        if drop is not None:
            reference = max([self.start_accuracy or 0.0] + [r.val_accuracy for r in self.records])
            if record.val_accuracy < reference - drop:
                return "accuracy_drop"
        return ""

    def _end_selection(self, reason: str) -> None:
        self.stopped_because, self.select_end = reason, self.epoch
        self.stage = "finalize" if self.config.finalize_epochs else "done"

    def _finalize_epoch(self) -> EpochRecord | None:
        """Train the network alone on the frozen discrete mask (App. A.3)."""
        if self.epoch >= self.select_end + self.config.finalize_epochs:
            self.stage = "done"
            return None
        started = time.perf_counter()
        task_loss, mask_loss = self._train_epoch(self.lam.value, self.tau.value, train_mask=False)
        self.epoch += 1
        return EpochRecord(self.epoch, task_loss, mask_loss, self._evaluate(), self.lam.value, self.tau.value,
                           self.chain.fraction(), self.chain.selected(), "finalize", time.perf_counter() - started)

    def _train_epoch(self, lam: float, tau: float, *, train_mask: bool) -> tuple[float, float]:
        self.model.train()
        x_all, y_all = self.data.x_train, self.data.y_train
        order = torch.randperm(x_all.shape[0], device=x_all.device, generator=self.generator)
        task_sum = torch.zeros((), device=x_all.device)
        mask_sum = torch.zeros((), device=x_all.device)
        batches = 0
        for start in range(0, x_all.shape[0], self.config.batch_size):
            if self.should_stop():
                raise Stopped
            idx = order[start:start + self.config.batch_size]
            x, y = x_all[idx], y_all[idx]  # (B, C', H, W), (B,)
            if train_mask:
                task, q = masked_step(self.model, self.chain, self.tap, self.loss_fn, x, y, self.model_opt,
                                      self.mask_opt, lam=lam, tau=tau, explore=self.phase.next_is_exploration(),
                                      generator=self.generator)
            else:
                with torch.no_grad():
                    masked, q = self.chain(x, tau=1.0, explore=False)
                task = self.loss_fn(self.model(masked), y)
                self.model_opt.zero_grad(set_to_none=True)
                task.backward()
                self.model_opt.step()
            task_sum += task.detach()
            mask_sum += q.detach()
            batches += 1
        # One device-to-host copy per epoch rather than one per batch.
        return float(task_sum) / max(batches, 1), float(mask_sum) / max(batches, 1)

    @torch.no_grad()
    def _evaluate(self) -> float:
        """Accuracy on the hold-out set through the discrete, noise-free mask."""
        self.model.eval()
        x, y = self.data.x_test, self.data.y_test
        correct = torch.zeros((), dtype=torch.long, device=x.device)
        for start in range(0, x.shape[0], EVAL_BATCH):
            masked, _ = self.chain(x[start:start + EVAL_BATCH], tau=1.0, explore=False)
            correct += (self.model(masked).argmax(dim=1) == y[start:start + EVAL_BATCH]).sum()
        return int(correct) / max(x.shape[0], 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": 1, "config": self.config.to_dict(), "epoch": self.epoch, "stage": self.stage,
            "select_end": self.select_end, "stopped_because": self.stopped_because,
            "start_accuracy": self.start_accuracy, "records": [r.state() for r in self.records],
            "model": self.model.state_dict(), "mask": self.chain.state_dict(),
            "model_opt": self.model_opt.state_dict(), "mask_opt": self.mask_opt.state_dict(),
            "lambda": self.lam.state_dict(), "tau": self.tau.state_dict(), "phase": self.phase.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_same_run(state["config"], self.config.to_dict())
        self.epoch, self.stage, self.select_end = state["epoch"], state["stage"], state["select_end"]
        self.stopped_because, self.start_accuracy = state["stopped_because"], state["start_accuracy"]
        self.records = [EpochRecord.from_state(r) for r in state["records"]]
        self.model.load_state_dict(state["model"])
        self.chain.load_state_dict(state["mask"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.mask_opt.load_state_dict(state["mask_opt"])
        self.lam.load_state_dict(state["lambda"])
        self.tau.load_state_dict(state["tau"])
        self.phase.load_state_dict(state["phase"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def _check_same_run(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """A checkpoint resumes only the run it was made by (the epoch budget may grow)."""
    ignore = {"epochs", "finalize_epochs", "device"}
    differing = sorted(k for k in set(saved) | set(current) if k not in ignore and saved.get(k) != current.get(k))
    if differing:
        raise ValueError(f"the checkpoint belongs to another configuration (differs in {', '.join(differing)})")

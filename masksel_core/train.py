"""The training loop of Algorithm 1: masks and network learned jointly.

Progress leaves the loop only through the `on_epoch` callback (one call per epoch, never per
batch); `should_stop` is polled between batches so a cancel takes effect within one batch.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .data import TensorDataset
from .masks import SelectionMask, create_mask
from .models import create_model
from .schedules import LambdaPlateau, PhaseSchedule, TauCooldown


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


@dataclass
class TrainResult:
    config: TrainConfig
    model: nn.Module
    mask: SelectionMask
    input_shape: tuple[int, int, int]
    records: list[EpochRecord] = field(default_factory=list)
    stopped_because: str = "epochs"

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


def train(
    config: TrainConfig,
    data: TensorDataset,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Learn a mask and a network; returns both with one record per epoch.

    If `should_stop` answers True the loop ends after the current batch and the result's
    `stopped_because` is "cancelled"; the epochs recorded so far are kept.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data = data.to(device)
    model = create_model(config.model, data.input_shape, data.num_classes).to(device)
    mask = create_mask(config.mask_type, data.input_shape, init_sigma=config.init_sigma, generator=generator).to(device)
    device_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    loop = _Loop(config, data, model, mask, device_gen, should_stop or (lambda: False))
    result = TrainResult(config, model, mask, data.input_shape)
    try:
        result.stopped_because = loop.run(lambda record: _emit(result, record, on_epoch))
    except Stopped:
        result.stopped_because = "cancelled"
    model.eval()
    return result


def _emit(result: TrainResult, record: EpochRecord, on_epoch: Callable[[EpochRecord], None] | None) -> None:
    result.records.append(record)
    if on_epoch is not None:
        on_epoch(record)


class _Loop:
    """The state of one training run; split out so each step stays short."""

    def __init__(self, config: TrainConfig, data: TensorDataset, model: nn.Module, mask: SelectionMask,
                 generator: torch.Generator, should_stop: Callable[[], bool]) -> None:
        self.config = config
        self.data = data
        self.model = model
        self.mask = mask
        self.generator = generator
        self.should_stop = should_stop
        self.model_opt = torch.optim.Adam(model.parameters(), lr=config.model_lr, amsgrad=True)
        self.mask_opt = torch.optim.Adam(mask.parameters(), lr=config.mask_lr)
        self.lam = LambdaPlateau(config.lambda_init, config.lambda_factor, config.lambda_patience)
        self.tau = TauCooldown(config.tau_init, config.tau_decay, config.tau_min)
        self.phase = PhaseSchedule(config.gamma)
        self.loss_fn = nn.CrossEntropyLoss()

    def run(self, emit: Callable[[EpochRecord], None]) -> str:
        for epoch in range(1, self.config.epochs + 1):
            started = time.perf_counter()
            lam, tau = self.lam.value, self.tau.value
            task_loss, mask_loss = self._train_epoch(lam, tau, train_mask=True)
            accuracy = self._evaluate()
            record = EpochRecord(epoch, task_loss, mask_loss, accuracy, lam, tau, self.mask.fraction(),
                                 self.mask.selected(), "select", time.perf_counter() - started)
            raised = self.lam.step(task_loss + lam * mask_loss)
            self.tau.step(restart=raised)
            emit(record)
            target = self.config.target_fraction
            if target is not None and record.fraction <= target:
                self._finalize(epoch, emit)
                return "target_fraction"
        self._finalize(self.config.epochs, emit)
        return "epochs"

    def _finalize(self, last_epoch: int, emit: Callable[[EpochRecord], None]) -> None:
        """Train the network alone on the frozen discrete mask (App. A.3)."""
        for epoch in range(last_epoch + 1, last_epoch + 1 + self.config.finalize_epochs):
            started = time.perf_counter()
            task_loss, mask_loss = self._train_epoch(self.lam.value, self.tau.value, train_mask=False)
            record = EpochRecord(epoch, task_loss, mask_loss, self._evaluate(), self.lam.value, self.tau.value,
                                 self.mask.fraction(), self.mask.selected(), "finalize",
                                 time.perf_counter() - started)
            emit(record)

    def _train_epoch(self, lam: float, tau: float, *, train_mask: bool) -> tuple[float, float]:
        self.model.train()
        x_all, y_all = self.data.x_train, self.data.y_train
        n = x_all.shape[0]
        order = torch.randperm(n, device=x_all.device, generator=self.generator)
        task_sum = mask_sum = 0.0
        batches = 0
        for start in range(0, n, self.config.batch_size):
            if self.should_stop():
                raise Stopped
            idx = order[start:start + self.config.batch_size]
            x, y = x_all[idx], y_all[idx]  # (B, C, H, W), (B,)
            if train_mask:
                explore = self.phase.next_is_exploration()
                selected = self.mask.sample(tau=tau, explore=explore, generator=self.generator)
            else:
                with torch.no_grad():
                    selected = self.mask.sample(tau=tau, explore=False).detach()
            task = self.loss_fn(self.model(self.mask.mask_input(x, selected)), y)
            q = self.mask.cost(selected)
            loss = task + lam * q if train_mask else task
            self.model_opt.zero_grad(set_to_none=True)
            self.mask_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.model_opt.step()
            if train_mask:
                self.mask_opt.step()
            task_sum += float(task.detach())
            mask_sum += float(q.detach())
            batches += 1
        return task_sum / max(batches, 1), mask_sum / max(batches, 1)

    @torch.no_grad()
    def _evaluate(self) -> float:
        """Accuracy on the hold-out set through the discrete, noise-free mask."""
        self.model.eval()
        selected = self.mask.sample(tau=1.0, explore=False)
        x, y = self.data.x_test, self.data.y_test
        correct = 0
        for start in range(0, x.shape[0], 1024):
            logits = self.model(self.mask.mask_input(x[start:start + 1024], selected))
            correct += int((logits.argmax(dim=1) == y[start:start + 1024]).sum())
        return correct / max(x.shape[0], 1)

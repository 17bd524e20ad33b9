"""The state of one run, epoch by epoch: warm-up, selection (Algorithm 1), finalize; saved and restored whole."""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..masks.chain import AnyMask
from .precision import resolve_precision
from .records import EpochRecord
from .schedules import EarlyStopping, LambdaPlateau, PhaseSchedule, TargetPace, TauCooldown
from .steps import Splits, adam, evaluate_split, masked_step, network_step
from .swap_check import swap_check

# The target's pace: reached after this share of the selection epochs, the rest to settle (`TargetPace`).
PACE_SHARE = 0.75
CHECKPOINT_FORMAT = 2  # the layout of `Loop.state_dict`
Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Stopped(Exception):
    """Raised inside the loop when `should_stop` answers True."""


class Loop:
    """Phases in order; each call of `_epoch` trains one epoch of the current phase (or moves to the next)."""

    def __init__(self, config: TrainConfig, splits: Splits, model: nn.Module, chain: AnyMask,
                 should_stop: Callable[[], bool], data_digest: str = "") -> None:
        self.config, self.splits, self.model, self.chain = config, splits, model, chain
        self.data_digest = data_digest  # names the data (`train.data_digest`): a checkpoint resumes only on it
        self.should_stop = should_stop
        self.generator = torch.Generator(device=splits.device).manual_seed(config.seed + 1)
        self.loss_fn = nn.CrossEntropyLoss()
        self.dtype = resolve_precision(config.precision, splits.device)  # the network's autocast (None: fp32)
        self.lam = LambdaPlateau(config.lambda_init, config.lambda_factor, config.lambda_patience,
                                 threshold=config.lambda_threshold, threshold_mode=config.lambda_threshold_mode)
        self.tau = TauCooldown(config.tau_init, config.tau_decay, config.tau_min)
        self.steps = PhaseSchedule(1.0 if config.discretization == "deterministic" else config.gamma)
        # What one sample costs whole (float32 values of the original channels): Q is relative to it.
        self.raw_bytes = float(np.prod(chain.input_shape) * 4)
        self.epoch, self.stopped_because = 0, "epochs"
        self.swaps: list[tuple[int, int]] = []  # (dropped, taken) by the swap check that ended selection
        self.swap_seconds = 0.0
        self.refilled: list[int] = []  # elements kept again after lambda overshot the target (`masks.budget`)
        self.start_accuracy: float | None = None
        self.records: list[EpochRecord] = []
        first = "select" if config.pretrained is not None or config.warmup_epochs == 0 else "warmup"
        self._enter(first)

    def run(self, emit: Callable[[EpochRecord], None]) -> str:
        try:
            while self.phase != "done":
                record = self._epoch()
                if record is not None:
                    self.records.append(record)
                    emit(record)
        except Stopped:
            if self.phase in ("warmup", "finalize") and self.best_state is not None:
                self.model.load_state_dict(self.best_state)  # a cancelled run keeps its phase's best network
            raise
        return self.stopped_because

    # --- phases ----------------------------------------------------------------------------------

    def _enter(self, phase: str) -> None:
        self.phase, self.phase_start = phase, self.epoch
        self.stopper = EarlyStopping(self.config.early_stop_patience)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.pace: TargetPace | None = None
        if phase == "select":
            lr = self.config.lr
            self.optimizers = [adam(self.model.parameters(), lr(self.config.model_lr), amsgrad=True),
                               adam(self.chain.parameters(), lr(self.config.mask_lr))]
            target = self._target_fraction()
            if target is not None:
                self.pace = TargetPace(self._fraction(), target, int(PACE_SHARE * self.config.epochs))
        else:
            self.optimizers = [adam(self.model.parameters(), self.config.lr(self.config.network_lr))]

    def _epoch(self) -> EpochRecord | None:
        if self.phase == "select":
            return self._select_epoch()
        if self.phase == "final":
            return self._final_record()
        return self._network_epoch()

    def _network_epoch(self) -> EpochRecord:
        """Warm-up or finalize: the network alone, the best validation epoch kept (early stopping)."""
        started = time.perf_counter()
        optimizer = self.optimizers[0]
        task, q = self._train_epoch(
            lambda x, y: network_step(self.model, self.chain, self.loss_fn, x, y, optimizer, self.dtype))
        accuracy, _ = evaluate_split(self.model, self.chain, self.splits, self.dtype)
        self.epoch += 1
        record = self._record(task, q, accuracy, started)
        if self.stopper.step(accuracy, self.epoch):
            self.best_state = copy.deepcopy(self.model.state_dict())
        cap = self.config.warmup_epochs if self.phase == "warmup" else self.config.finalize_epochs
        if self.stopper.exhausted or self.epoch - self.phase_start >= cap:
            self._close_network_phase()
        return record

    def _close_network_phase(self) -> None:
        assert self.best_state is not None
        self.model.load_state_dict(self.best_state)
        if self.phase == "warmup":
            self.start_accuracy = self.stopper.best
            self._enter("select")
        else:  # the model written is the best epoch's: a closing row says so where it is not the last
            self.phase = "final" if self.stopper.best_epoch != self.epoch else "done"

    def _final_record(self) -> EpochRecord:
        best = self.records[self.stopper.best_epoch - 1]
        self.epoch += 1
        self.phase = "done"
        return dataclasses.replace(best, epoch=self.epoch, phase="final", seconds=0.0)

    def _select_epoch(self) -> EpochRecord | None:
        if self.start_accuracy is None:  # pretrained weights, or no warm-up: score the starting point
            self.start_accuracy, _ = evaluate_split(self.model, self.chain, self.splits, self.dtype)
        if self.epoch - self.phase_start >= self.config.epochs:
            self._end_selection("epochs", self.records[-1].val_accuracy)
            return None
        started = time.perf_counter()
        lam, tau = self.lam.value, self.tau.value
        task, q = self._train_epoch(lambda x, y: masked_step(
            self.model, self.chain, self.loss_fn, x, y, self.optimizers, lam=lam, tau=tau,
            explore=self.steps.next_is_exploration(), generator=self.generator, dtype=self.dtype))
        accuracy, val_loss = evaluate_split(self.model, self.chain, self.splits, self.dtype)
        fraction = self._fraction()
        self.epoch += 1
        monitored = {"val_total": val_loss + lam * fraction, "total": task + lam * q,
                     "val_mask_loss": fraction}[self.config.lambda_monitor]
        if self.pace is not None and self.pace.behind(self.epoch - self.phase_start, fraction):
            # Behind the target's pace: more pressure at once. As every raise of lambda, a new cool-down: at
            # tau_min the surrogate's gradient vanishes for all but undecided elements, and the mask stops moving.
            self.lam.bump()
            self.tau.step(restart=True)
        else:
            self.tau.step(restart=self.lam.step(monitored))
        record = self._record(task, q, accuracy, started, lam=lam, tau=tau, fraction=fraction)
        reason = self._stop_reason(record)
        if reason:
            self._end_selection(reason, accuracy, record.fraction)
        return record

    def _target_fraction(self) -> float | None:
        if self.config.target_bytes is not None:
            return self.config.target_bytes / self.raw_bytes
        return self.config.target_fraction

    def _stop_reason(self, record: EpochRecord) -> str:
        target, drop = self.config.target_fraction, self.config.max_accuracy_drop
        if target is not None and record.fraction <= target + 1e-9:
            return "target_fraction"
        budget = self.config.target_bytes
        if budget is not None and record.fraction * self.raw_bytes <= budget + 1e-6:
            return "target_bytes"
        if drop is not None:
            selection = [r.val_accuracy for r in self.records if r.phase == "select"]
            if record.val_accuracy < max([self.start_accuracy or 0.0, *selection]) - drop:
                return "accuracy_drop"
        return ""

    def _end_selection(self, reason: str, accuracy: float, fraction: float | None = None) -> None:
        """The swap check, then freeze the masks and go on to finalize; `accuracy` and `fraction` are the last
        selection epoch's (under the mask it ended with)."""
        self.stopped_because = reason
        filled = False
        if reason in ("target_fraction", "target_bytes"):  # the last raise of lambda may have overshot
            self.refilled = self.chain.fill_budget(self._target_fraction(), self.probe)
            filled = self._fraction() != fraction
        started = time.perf_counter()
        self.swaps = swap_check(self.chain, self.model, self.splits, candidates=self.config.swap_candidates,
                                rounds=self.config.swap_rounds, lr=self.config.lr(self.config.network_lr),
                                seed=self.config.seed + 2, dtype=self.dtype)
        self.swap_seconds = time.perf_counter() - started
        if self.swaps or filled:
            accuracy, _ = evaluate_split(self.model, self.chain, self.splits, self.dtype)
        self.chain.freeze()
        if not self.config.finalize_epochs:
            self.phase = "done"
            return
        self._enter("finalize")
        # The network as selection left it is the first candidate: finalize only ever improves on it.
        self.stopper.step(accuracy, self.epoch)
        self.best_state = copy.deepcopy(self.model.state_dict())

    # --- epochs ----------------------------------------------------------------------------------

    def _train_epoch(self, step: Step) -> tuple[float, float]:
        self.model.train()
        task_sum = torch.zeros((), device=self.splits.device)
        mask_sum = torch.zeros((), device=self.splits.device)
        count = 0
        for x, y in self.splits.fit_batches(self.generator):
            if self.should_stop():
                raise Stopped
            task, q = step(x, y)  # (B, C', H, W), (B,)
            task_sum += task
            mask_sum += q
            count += 1
        # One device-to-host copy per epoch rather than one per batch.
        task_mean = float(task_sum) / max(count, 1)
        if not math.isfinite(task_mean):  # nothing rescales the loss (no GradScaler): a NaN network never recovers
            raise ValueError(f"the training loss became {task_mean} in epoch {self.epoch + 1} ({self.phase}): the "
                             "inputs hold NaN or infinite values, or the learning rates are too high for them")
        return task_mean, float(mask_sum) / max(count, 1)

    def _record(self, task: float, q: float, accuracy: float, started: float, *, lam: float | None = None,
                tau: float | None = None, fraction: float | None = None) -> EpochRecord:
        snapshot = self.chain.epoch_snapshot(self.probe, self.splits.probe_labels)
        return EpochRecord(self.epoch, task, q, accuracy, self.lam.value if lam is None else lam,
                           self.tau.value if tau is None else tau, self._fraction() if fraction is None else fraction,
                           phase=self.phase, seconds=time.perf_counter() - started, **snapshot)

    @property
    def probe(self) -> torch.Tensor | None:
        """The validation inputs a mask whose selection depends on the input is measured on; None for a static one
        (a streamed run reads them only where they are needed)."""
        return self.splits.probe if self.chain.per_input else None

    def _fraction(self) -> float:
        """Q of the noise-free mask (a dynamic one's on the validation inputs)."""
        return self.chain.fraction(self.probe)

    # --- saving ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "data": self.data_digest,
            "epoch": self.epoch, "phase": self.phase,
            "phase_start": self.phase_start, "stopped_because": self.stopped_because, "swaps": self.swaps,
            "swap_seconds": self.swap_seconds, "refilled": self.refilled,
            "start_accuracy": self.start_accuracy, "records": [r.state() for r in self.records],
            "model": self.model.state_dict(), "mask": self.chain.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers], "lambda": self.lam.state_dict(),
            "tau": self.tau.state_dict(), "steps": self.steps.state_dict(),
            "pace": self.pace.state_dict() if self.pace is not None else None,
            "stopper": self.stopper.state_dict(), "best_state": self.best_state,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.generator.device.type == "cuda" else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"the checkpoint was written by another version of masksel (format "
                             f"{state.get('format')}, this one reads {CHECKPOINT_FORMAT}): train the run again")
        check_same_run(state["config"], self.config.to_dict())
        if state.get("data", self.data_digest) != self.data_digest:  # absent from earlier versions' checkpoints
            raise ValueError("the checkpoint was made on other data (another input, split or set of samples): "
                             "give this run another checkpoint directory, or the data it was made on")
        self.epoch, self.stopped_because = state["epoch"], state["stopped_because"]
        self.swaps = [tuple(swap) for swap in state["swaps"]]
        self.swap_seconds = float(state.get("swap_seconds", 0.0))  # absent from checkpoints of earlier versions
        self.refilled = list(state.get("refilled", []))
        self.start_accuracy = state["start_accuracy"]
        self.records = [EpochRecord.from_state(r) for r in state["records"]]
        self.model.load_state_dict(state["model"])
        self.chain.load_state_dict(state["mask"])
        phase = state["phase"]
        if phase in ("finalize", "final", "done"):
            self.chain.freeze()
        if phase in ("warmup", "select", "finalize"):
            self._enter(phase)
            for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
                for group in saved["param_groups"]:  # a checkpoint from before every Adam was fused stays fused
                    group["fused"] = True
                optimizer.load_state_dict(saved)
            if self.pace is not None and state["pace"] is not None:
                self.pace.load_state_dict(state["pace"])
        self.phase, self.phase_start = phase, state["phase_start"]
        self.lam.load_state_dict(state["lambda"])
        self.tau.load_state_dict(state["tau"])
        self.steps.load_state_dict(state["steps"])
        self.stopper.load_state_dict(state["stopper"])
        self.best_state = state["best_state"]
        if state["generator"].numel() == self.generator.get_state().numel():
            self.generator.set_state(state["generator"].cpu())
        else:  # saved on another kind of device (a GPU worker's run resumed on a CPU one): not bit-identical
            self.generator.manual_seed(self.config.seed + 1 + self.epoch)
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def check_same_run(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """A checkpoint resumes only the run it was made by (the epoch budgets may grow)."""
    ignore = {"epochs", "finalize_epochs", "warmup_epochs", "device"}
    defaults = TrainConfig().to_dict()  # an option added since the checkpoint was written has its default there
    saved, current = {**defaults, **saved}, {**defaults, **current}
    differing = sorted(k for k in set(saved) | set(current) if k not in ignore and saved.get(k) != current.get(k))
    if differing:
        raise ValueError(f"the checkpoint belongs to another configuration (differs in {', '.join(differing)})")

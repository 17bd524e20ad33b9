"""The schedules of Algorithm 1, as small objects that save and restore their state.

- `LambdaPlateau`: raise lambda by a factor once L = Lf + lambda*Q has not decreased for
  `patience` epochs (a learning-rate plateau scheduler turned upside down).
- `TauCooldown`: tau restarts at `tau_init` whenever lambda is raised, else decays to `tau_min`.
- `PhaseSchedule`: which batches explore (Gumbel noise) and which fixate (no noise).
- `TargetPace`: where Q should be by now when the user set a target, so lambda also rises when the run
  falls behind (a target the user set is a target the run reaches within its epochs).
- `EarlyStopping`: the best validation accuracy of a phase in which the network trains alone.
"""
from __future__ import annotations

import math
from typing import Any


class LambdaPlateau:
    """Multiplies lambda by `factor` after `patience` epochs without a new best loss.

    A new best must beat the old one by more than `threshold`: relative to the best (`threshold_mode="rel"`,
    as torch's ReduceLROnPlateau; a loss that keeps creeping down, as cross-entropy does on data it separates,
    still plateaus), or absolute (`"abs"`: the paper's 0, the authors' later 0.0025 on the validation Q).
    """

    def __init__(self, init: float, factor: float, patience: int, *, threshold: float = 0.0,
                 threshold_mode: str = "abs") -> None:
        self.value = float(init)
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.relative = threshold_mode == "rel"
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, loss: float) -> bool:
        """Record one epoch's loss; returns True when lambda was raised (after `patience` epochs without a new
        best)."""
        margin = self.threshold * abs(self.best) if self.relative and math.isfinite(self.best) else self.threshold
        if loss < self.best - margin:
            self.best = loss
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.bump()
            return True
        return False

    def bump(self) -> None:
        """Raise lambda by its factor now (a run behind its target's pace, `TargetPace`)."""
        self.value *= self.factor
        self.bad_epochs = 0
        self.best = math.inf  # the loss is not comparable across lambdas: judge the next ones afresh

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


class TauCooldown:
    """Temperature of the softmax surrogate: a new cool-down for every new lambda."""

    def __init__(self, init: float, decay: float, minimum: float) -> None:
        self.init = float(init)
        self.decay = float(decay)
        self.minimum = float(minimum)
        self.value = self.init

    def step(self, *, restart: bool) -> None:
        if restart:
            self.value = self.init
        else:
            self.value = max(self.value * self.decay, self.minimum)

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class PhaseSchedule:
    """Spreads fixation steps evenly: a share `gamma` of all steps fixate, the rest explore.

    With the paper's gamma = 0.5, steps alternate, starting with fixation as Algorithm 1's
    `b = j mod 2 = 0` does for j = 1, 2, ...
    """

    def __init__(self, gamma: float) -> None:
        self.gamma = float(gamma)
        self.step_index = 0

    def next_is_exploration(self) -> bool:
        j = self.step_index
        self.step_index += 1
        fixation = math.ceil((j + 1) * self.gamma - 1e-9) > math.ceil(j * self.gamma - 1e-9)
        return not fixation

    def state_dict(self) -> dict[str, Any]:
        return {"step_index": self.step_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_index = int(state["step_index"])


class TargetPace:
    """A geometric path for Q from its value at the start of selection to the target, reached after
    `deadline` epochs (a share of the epoch budget, leaving room to settle); `behind` says whether Q is above
    it. A target of 0 (select until nothing is left) is paced towards a ten-thousandth of the start."""

    def __init__(self, start: float, target: float, deadline: int) -> None:
        self.start, self.target, self.deadline = float(start), float(target), max(int(deadline), 1)

    def planned(self, epoch: int) -> float:
        """Q the path asks for after `epoch` epochs of selection."""
        target = max(self.target, self.start * 1e-4)
        if target >= self.start:
            return self.start
        progress = min(epoch, self.deadline) / self.deadline
        return self.start * (target / self.start) ** progress

    def behind(self, epoch: int, fraction: float) -> bool:
        return fraction > self.planned(epoch) * (1 + 1e-6)

    def state_dict(self) -> dict[str, Any]:
        return {"start": self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start = float(state["start"])


class EarlyStopping:
    """Tracks the best validation accuracy of a phase; `exhausted` after `patience` epochs without a better one.

    Ties count as no improvement, so of equally good epochs the earliest is kept.
    """

    def __init__(self, patience: int) -> None:
        self.patience = int(patience)
        self.best = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def step(self, accuracy: float, epoch: int) -> bool:
        """Record one epoch; True when it is the new best (the caller keeps that epoch's network)."""
        if accuracy > self.best:
            self.best, self.best_epoch, self.bad_epochs = float(accuracy), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])

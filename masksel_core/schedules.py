"""The schedules of Algorithm 1, as small objects that save and restore their state.

- `LambdaPlateau`: raise lambda by a factor once L = Lf + lambda*Q has not decreased for
  `patience` epochs (a learning-rate plateau scheduler turned upside down).
- `TauCooldown`: tau restarts at `tau_init` whenever lambda is raised, else decays to `tau_min`.
- `PhaseSchedule`: which batches explore (Gumbel noise) and which fixate (no noise).
"""
from __future__ import annotations

import math
from typing import Any


class LambdaPlateau:
    """Multiplies lambda by `factor` after `patience` epochs without a new best loss.

    A new best must beat the old one by more than `threshold` (0 in the paper; the authors' later
    code steps on the validation mask loss with 0.0025).
    """

    def __init__(self, init: float, factor: float, patience: int, *, threshold: float = 0.0) -> None:
        self.value = float(init)
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, loss: float) -> bool:
        """Record one epoch's loss; returns True when lambda was raised."""
        if loss < self.best - self.threshold:
            self.best = loss
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.value *= self.factor
            self.bad_epochs = 0
            # The loss is not comparable across lambdas: judge the next ones afresh.
            self.best = math.inf
            return True
        return False

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

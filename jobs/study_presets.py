"""Studies that redraw the paper's accuracy-against-cost figures on the built-in data sets, one click each.

Each searches the budget (`target_fraction`, log-scaled: the steep part of a curve is at small budgets) with the
form's defaults for everything else and the models of `masksel_core.reproduce` (networks a CPU trains in a minute
or two), so a visitor sees the paper's curves come out of their own workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCURACY_AGAINST_FRACTION = [{"metric": "test_accuracy", "direction": "maximize"},
                             {"metric": "fraction", "direction": "minimize"}]


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    figure: str  # what of the paper it redraws
    dataset: str  # a built-in's name
    base: dict[str, Any]
    space: dict[str, Any]
    objectives: list[dict[str, str]] = field(default_factory=lambda: list(ACCURACY_AGAINST_FRACTION))
    trials: int = 12
    parallel: int = 2

    def request(self, dataset_id: int) -> dict[str, Any]:
        """What `study_services.study_create` takes, on the built-in's row."""
        return {"name": self.title, "dataset": dataset_id, "base": dict(self.base), "space": dict(self.space),
                "objectives": list(self.objectives), "trials": self.trials, "parallel": self.parallel}


PRESETS = (
    Preset("channels-remote", "Channels of a multispectral image", "which channels of 36 to send: accuracy against "
           "the share of channels kept (the paper's remote-sensing figure)", "synthetic-remote",
           base={"mask_type": "channel-any", "model": "mlp"},
           space={"target_fraction": {"low": 0.03, "high": 0.6, "log": True}}),
    Preset("pixels-digits", "Pixels of digits", "which of 64 pixels to send: accuracy against the share of pixels "
           "kept (the paper's pixel figure, on scikit-learn's digits)", "digits",
           base={"mask_type": "pixel-any", "model": "mlp"},
           space={"target_fraction": {"low": 0.03, "high": 0.6, "log": True}}),
    Preset("pixels-mnist", "Pixels of MNIST", "which of 784 pixels to send: accuracy against the share kept (the "
           "paper's MNIST figure, on 5,000 of its images)", "mnist5k",
           base={"mask_type": "pixel-any", "model": "mlp"},
           space={"target_fraction": {"low": 0.01, "high": 0.3, "log": True}}),
    Preset("jpeg-pixels-digits", "JPEG quality, then pixels", "one JPEG quality per channel, then which pixels: "
           "accuracy against bytes per sample on the wire (the paper's compression figure)", "digits",
           base={"mask_type": "jpeg-xor+pixel-any", "model": "lenet5", "extend_costs": "bytes"},
           space={"target_fraction": {"low": 0.02, "high": 0.5, "log": True}},
           objectives=[{"metric": "test_accuracy", "direction": "maximize"},
                       {"metric": "bytes_per_sample", "direction": "minimize"}]),
)
PRESETS_BY_KEY = {preset.key: preset for preset in PRESETS}

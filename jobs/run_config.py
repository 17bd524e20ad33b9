"""A run's options as a `TrainConfig` for a data set's input: the one check that a run request and a study's
options (its base, each choice, each end of a range) both pass, so a study never proposes what a run refuses."""
from __future__ import annotations

from typing import Any

import masksel_core
from masksel_core import TrainConfig


def config_for(options: dict[str, Any], input_shape: list[int]) -> tuple[TrainConfig, str | None]:
    """The config (ConfigError names a bad option) and why its mask cannot fit this input, or None. Where no mask is
    given, the one that fits the data: a channel mask on a one-channel data set could only keep all or nothing."""
    config = TrainConfig.from_dict({"mask_type": masksel_core.default_mask_type(input_shape), **options})
    return config, masksel_core.config_problem(config, input_shape) or None

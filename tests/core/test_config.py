from __future__ import annotations

import json

import pytest

from masksel_core.config import ConfigError, TrainConfig, parse_grid


def test_config_round_trips_through_json() -> None:
    config = TrainConfig(mask_type="pixel-any", model="lenet5", epochs=7, target_fraction=0.2, grid=(4, 2))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_defaults_follow_the_paper() -> None:
    config = TrainConfig()
    assert (config.tau_init, config.tau_decay, config.tau_min) == (10.0, 0.5, 0.01)
    assert (config.mask_lr, config.model_lr, config.batch_size, config.gamma) == (0.01, 1e-4, 128, 0.5)
    assert (config.lambda_init, config.lambda_factor) == (0.1, 1.1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mask_type": "pixel-all"}, "unknown mask type 'pixel-all'"),
        ({"model": "vgg"}, "unknown model 'vgg'"),
        ({"epochs": 0}, "epochs must be in"),
        ({"epochs": "ten"}, "epochs must be an integer"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"tau_init": -1}, "tau_init must be in"),
        ({"lambda_factor": 0.5}, "lambda_factor must be in"),
        ({"lambda_init": float("nan")}, "lambda_init must be in"),
        ({"learning_rate": 1}, "unknown option(s): learning_rate"),
        ({"grid": "3by3"}, "grid must look like 3x3"),
    ],
)
def test_bad_values_are_refused_with_their_name(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert message in str(info.value)


def test_grid_parses_the_cli_spelling() -> None:
    assert parse_grid("12x7") == (12, 7)

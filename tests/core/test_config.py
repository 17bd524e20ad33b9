from __future__ import annotations

import dataclasses
import json

import pytest

from masksel_core.config import ConfigError, TrainConfig, parse_grid


def test_config_round_trips_through_json() -> None:
    config = TrainConfig(mask_type="pixel-any", model="lenet5", epochs=7, target_fraction=0.2, grid=(4, 2))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_the_schedules_default_to_the_papers_and_a_run_has_all_three_phases() -> None:
    config = TrainConfig()
    assert (config.tau_init, config.tau_decay, config.tau_min) == (10.0, 0.5, 0.01)
    assert (config.batch_size, config.gamma, config.discretization) == (128, 0.5, "gumbel")
    assert config.warmup_epochs > 0 and config.finalize_epochs > 0 and config.pretrained is None


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
        ({"lambda_init": 0}, "lambda_init must be in (0.0"),
        ({"learning_rate": 1}, "unknown option(s): learning_rate"),
        ({"grid": "3by3"}, "grid must look like 3x3"),
        ({"early_stop_patience": 0}, "early_stop_patience must be in"),
        ({"val_share": 0.9}, "val_share must be in"),
        ({"lambda_monitor": "loss"}, "lambda_monitor must be one of"),
        ({"lambda_threshold_mode": "pct"}, "lambda_threshold_mode must be one of"),
        # Beyond any float (float() overflows) and beyond what str() prints (4,300 digits): named by their size.
        ({"lambda_init": 10**400}, "lambda_init must be a number no larger than 1e308, got an integer of about 401"),
        ({"epochs": 10**5000}, "epochs must be in [1, 100000], got an integer of about 5001 digits"),
    ],
)
def test_bad_values_are_refused_with_their_name(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert message in str(info.value)


def test_grid_parses_the_cli_spelling() -> None:
    assert parse_grid("12x7") == (12, 7)


def test_learning_rates_follow_the_batch_size_only_when_asked() -> None:
    from masksel_core import ConfigError, TrainConfig

    assert TrainConfig(batch_size=512).lr(1e-3) == 1e-3
    assert TrainConfig(batch_size=512, lr_scale="linear").lr(1e-3) == pytest.approx(4e-3)
    assert TrainConfig(batch_size=512, lr_scale="sqrt").lr(1e-3) == pytest.approx(2e-3)
    assert TrainConfig(batch_size=32, lr_scale="linear").lr(1e-2) == pytest.approx(2.5e-3)
    with pytest.raises(ConfigError, match="lr_scale"):
        TrainConfig.from_dict({"lr_scale": "quadratic"})


def test_the_scaled_rates_reach_the_optimisers() -> None:
    """At the reference batch every scaling trains alike, bit for bit; at another batch, linear scaling trains
    another network than the rates as given."""
    import torch

    from masksel_core import TrainConfig, load_dataset, train

    data = load_dataset("digits")
    quick = {"mask_type": "pixel-any", "model": "mlp", "epochs": 1, "warmup_epochs": 1, "finalize_epochs": 0,
             "swap_candidates": 0}

    def weights(**options: object) -> torch.Tensor:
        model = train(TrainConfig.from_dict({**quick, **options}), data).model
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(batch_size=128), weights(batch_size=128, lr_scale="linear"))
    assert not torch.allclose(weights(batch_size=256), weights(batch_size=256, lr_scale="linear"))


def test_every_option_is_explained_once_for_the_cli_the_api_and_the_form() -> None:
    from masksel_core import OPTION_HELP, OPTION_LABELS, OPTION_RANGES

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(OPTION_HELP) == names
    assert set(OPTION_LABELS) <= names and set(OPTION_RANGES) <= names
    defaults = TrainConfig()
    for name, (low, high, _) in OPTION_RANGES.items():  # the defaults sit inside their own bounds
        value = getattr(defaults, name)
        if value is not None:
            assert low <= value <= high, name


@pytest.mark.parametrize(("data", "shape", "message"), [
    ({"init_selected": [64]}, (1, 8, 8), "pixel-any has 64 elements; init_selected index out of range"),
    ({"costs": [[1.0], [1.0, 2.0]]}, (1, 8, 8), "costs must be numbers in the mask's shape"),
    ({"mask_type": "block-any", "grid": [9, 9]}, (1, 8, 8), "block grid 9x9 is finer than the 8x8 input"),
    ({"mask_type": "channel-any"}, (1, 8, 8), "this data has a single channel"),
    # A linear mask network asked for by name on a large input would take 7.8 GB: refused before it is built.
    ({"mask_type": "dynamic-pixel-any", "mask_net": "linear"}, (36, 35, 35), "1,944,810,000 weights"),
])
def test_a_config_that_cannot_be_built_for_an_input_says_why(data: dict, shape: tuple, message: str) -> None:
    from masksel_core import config_problem

    assert message in config_problem(TrainConfig.from_dict(data), shape)
    assert config_problem(TrainConfig.from_dict({**data, "init_selected": None, "costs": None, "grid": [2, 2],
                                                  "mask_type": "pixel-any", "mask_net": "auto"}), shape) == ""

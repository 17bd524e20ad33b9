from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masksel_core import EpochRecord, TrainConfig, load_digits, load_npz, train
from tests.conftest import make_npz

FAST = {"model_lr": 1e-3, "batch_size": 32, "seed": 1}


@pytest.fixture(scope="module")
def informative_first_channel(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_npz(make_npz(tmp_path_factory.mktemp("d") / "d.npz", n=300, channels=4, size=6, classes=3))


def test_channel_selection_keeps_the_informative_channel_and_drops_noise(informative_first_channel) -> None:  # type: ignore[no-untyped-def]
    result = train(TrainConfig(mask_type="channel-any", model="mlp", epochs=25, lambda_init=0.5, **FAST),
                   informative_first_channel)
    assert result.selected.tolist() == [1, 0, 0, 0]
    assert result.fraction == pytest.approx(0.25)
    assert result.records[-1].val_accuracy >= 0.95


def test_every_epoch_is_reported_once_in_order_with_the_contract_metrics() -> None:
    seen: list[EpochRecord] = []
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=3, **FAST)
    result = train(config, load_digits(), on_epoch=seen.append)
    assert [r.epoch for r in seen] == [1, 2, 3] and seen == result.records
    for record in seen:
        metrics = record.metrics()
        assert set(metrics) == {"epoch", "task_loss", "mask_loss", "val_accuracy", "lambda", "tau", "fraction"}
        assert all(np.isfinite(v) for v in metrics.values())
        assert record.selected.shape == (1, 8, 8)
        assert record.fraction == pytest.approx(record.selected.mean())
    assert [r.tau for r in seen] == [10.0, 5.0, 2.5]  # paper's cool-down, no raise in 3 epochs (patience 2)


def test_a_fixed_seed_gives_the_same_run() -> None:
    config = TrainConfig(mask_type="pixel-any", model="lenet5", epochs=2, **FAST)
    first, second = train(config, load_digits()), train(config, load_digits())
    assert [r.metrics() for r in first.records] == [r.metrics() for r in second.records]
    assert np.array_equal(first.selected, second.selected)


def test_should_stop_ends_training_within_one_batch() -> None:
    calls = []

    def stop_on_fifth_batch() -> bool:
        calls.append(1)
        return len(calls) >= 5

    result = train(TrainConfig(mask_type="channel-any", model="mlp", epochs=5, **FAST), load_digits(),
                   should_stop=stop_on_fifth_batch)
    assert result.stopped_because == "cancelled"
    assert len(calls) == 5 and result.records == []


def test_target_fraction_stops_early_then_finalize_trains_the_frozen_mask(informative_first_channel) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=40, lambda_init=0.5, target_fraction=0.3,
                         finalize_epochs=2, **FAST)
    result = train(config, informative_first_channel)
    assert result.stopped_because == "target_fraction"
    select = [r for r in result.records if r.phase == "select"]
    final = [r for r in result.records if r.phase == "finalize"]
    assert len(select) < 40 and select[-1].fraction <= 0.3 and len(final) == 2
    assert [r.epoch for r in result.records] == list(range(1, len(result.records) + 1))
    assert all(np.array_equal(r.selected, select[-1].selected) for r in final)


def test_lambda_rises_when_the_loss_plateaus(informative_first_channel) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=30, lambda_init=0.5, lambda_patience=0,
                         lambda_factor=1.5, **FAST)
    records = train(config, informative_first_channel).records
    lambdas = [r.lambda_ for r in records]
    assert lambdas == sorted(lambdas) and lambdas[-1] > lambdas[0]
    raised = [i for i in range(1, len(records)) if lambdas[i] > lambdas[i - 1]]
    assert all(records[i].tau == 10.0 for i in raised)  # every raise restarts the cool-down


def test_cuda_is_refused_clearly_when_absent(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; this checks the message on machines without one")
    with pytest.raises(ValueError, match="no CUDA device"):
        train(TrainConfig(device="cuda", epochs=1), load_digits())

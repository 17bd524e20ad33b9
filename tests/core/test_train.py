from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from masksel_core import EpochRecord, TrainConfig, load_digits, load_npz, train
from tests.conftest import make_npz

# On the CPU: the bit-identical resume is a CPU promise (cuDNN and CUDA atomics reorder sums); GPU runs are
# covered by test_gpu.py.
FAST = {"model_lr": 1e-3, "batch_size": 32, "seed": 1, "device": "cpu"}


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


def test_inspect_sees_the_live_network_and_masks_after_every_epoch() -> None:
    seen: list[tuple[int, float, float]] = []
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=2, **FAST)

    def look(record: EpochRecord, model: torch.nn.Module, chain: torch.nn.Module) -> None:
        first = next(model.parameters())
        seen.append((record.epoch, float(first.detach().sum()), chain.fraction()))

    result = train(config, load_digits(), inspect=look)
    assert [epoch for epoch, _, _ in seen] == [1, 2]
    assert seen[0][1] != seen[1][1]  # the network it is shown is the one being trained, not a copy
    assert seen[-1][1] == pytest.approx(float(next(result.model.parameters()).detach().sum()))
    assert [fraction for _, _, fraction in seen] == pytest.approx([r.fraction for r in result.records])


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


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("mask_type", ["pixel-any", "jpeg-xor+channel-any"])
def test_a_run_resumed_from_its_checkpoint_is_bit_identical(tmp_path: Path, mask_type: str) -> None:
    config = TrainConfig(mask_type=mask_type, model="lenet5", epochs=4, finalize_epochs=1, **FAST)
    data = load_digits()
    straight = train(config, data)

    def die_after_second(record: EpochRecord) -> None:
        if record.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, data, on_epoch=die_after_second, checkpoint_dir=tmp_path)
    seen: list[int] = []
    resumed = train(config, data, on_epoch=lambda r: seen.append(r.epoch), checkpoint_dir=tmp_path)
    assert seen == [2, 3, 4, 5]  # the interrupted epoch is redone, nothing else
    assert [r.metrics() for r in resumed.records] == [r.metrics() for r in straight.records]
    assert all(np.array_equal(a.selected, b.selected) for a, b in zip(resumed.records, straight.records, strict=True))
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(resumed.mask.state_dict().values(), straight.mask.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the masks' logits too, not only their discrete selection


def test_a_checkpoint_refuses_another_configuration(tmp_path: Path) -> None:
    train(TrainConfig(mask_type="channel-any", epochs=1, **FAST), load_digits(), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="differs in lambda_init"):
        train(TrainConfig(mask_type="channel-any", epochs=2, lambda_init=1.0, **FAST), load_digits(),
              checkpoint_dir=tmp_path)


def test_deterministic_discretisation_never_explores() -> None:
    base = {"mask_type": "pixel-any", "model": "mlp", "epochs": 2, **FAST}
    deterministic = train(TrainConfig(discretization="deterministic", **base), load_digits())
    all_fixation = train(TrainConfig(gamma=1.0, **base), load_digits())
    assert [r.metrics() for r in deterministic.records] == [r.metrics() for r in all_fixation.records]


def test_the_validation_mask_loss_monitor_raises_lambda_when_q_stalls(informative_first_channel) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=12, lambda_init=0.5, lambda_patience=1,
                         lambda_monitor="val_mask_loss", lambda_threshold=0.0025, **FAST)
    records = train(config, informative_first_channel).records
    assert records[-1].lambda_ > records[0].lambda_
    assert records[-1].fraction == pytest.approx(0.25)  # once Q stops falling, lambda rises


def test_an_accuracy_drop_beyond_the_tolerance_stops_selection(informative_first_channel) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=60, lambda_init=20.0, lambda_factor=2.0,
                         lambda_patience=0, max_accuracy_drop=0.05, **FAST)
    result = train(config, informative_first_channel)
    assert result.stopped_because == "accuracy_drop"
    best = max(r.val_accuracy for r in result.records)
    assert result.records[-1].val_accuracy < best - 0.05 and len(result.records) < 60


def test_a_jpeg_chain_moves_to_lower_qualities_as_lambda_grows() -> None:
    config = TrainConfig(mask_type="jpeg-xor", model="mlp", epochs=12, lambda_init=1.0, lambda_factor=2.0,
                         lambda_patience=0, **FAST)
    result = train(config, load_digits())
    first, last = result.records[0], result.records[-1]
    assert last.lambda_ > first.lambda_
    assert last.fraction < 0.9 and last.fraction < first.fraction  # quality 90 costs 0.9
    assert result.selected.reshape(1, 5).argmax() > 0


def test_a_pretrained_state_dict_is_the_starting_point(tmp_path: Path) -> None:
    import torch as t

    first = train(TrainConfig(mask_type="channel-any", model="mlp", epochs=3, **FAST), load_digits())
    t.save(first.model.state_dict(), tmp_path / "pre.pt")
    again = train(TrainConfig(mask_type="channel-any", model="mlp", epochs=1, pretrained=str(tmp_path / "pre.pt"),
                              **FAST), load_digits())
    assert again.start_accuracy == pytest.approx(first.records[-1].val_accuracy)

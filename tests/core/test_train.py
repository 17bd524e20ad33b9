from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from masksel_core import EpochRecord, TensorDataset, TrainConfig, load_digits, load_npz, train
from masksel_core.training.train import split_validation
from tests.conftest import make_npz

# On the CPU: the bit-identical resume is a CPU promise (cuDNN and CUDA atomics reorder sums); GPU runs are
# covered by test_gpu.py. Short phases keep every run here within a few seconds.
FAST = {"model_lr": 1e-3, "batch_size": 32, "seed": 1, "device": "cpu", "warmup_epochs": 3, "finalize_epochs": 2}


@pytest.fixture(scope="module")
def informative_first_channel(tmp_path_factory: pytest.TempPathFactory) -> TensorDataset:
    return load_npz(make_npz(tmp_path_factory.mktemp("d") / "d.npz", n=300, channels=4, size=6, classes=3))


def test_channel_selection_keeps_the_informative_channel_and_drops_noise(
        informative_first_channel: TensorDataset) -> None:
    result = train(TrainConfig(mask_type="channel-any", model="mlp", epochs=25, lambda_init=0.5, **FAST),
                   informative_first_channel)
    assert result.selected.tolist() == [1, 0, 0, 0]
    assert result.fraction == pytest.approx(0.25)
    assert result.records[-1].val_accuracy >= 0.95 and result.test_accuracy is not None
    assert result.test_accuracy >= 0.95 and result.warnings == []


def test_every_epoch_is_reported_once_in_order_with_its_phase() -> None:
    seen: list[EpochRecord] = []
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=3, **FAST)
    result = train(config, load_digits(), on_epoch=seen.append)
    assert [r.epoch for r in seen] == list(range(1, len(seen) + 1)) and seen == result.records
    phases = [r.phase for r in seen]
    assert phases[:3] == ["warmup"] * 3 and phases[3:6] == ["select"] * 3
    assert set(phases[6:]) <= {"finalize", "final"} and phases[-1] in ("finalize", "final")
    for record in seen:
        metrics = record.metrics()
        assert list(metrics) == ["epoch", "task_loss", "mask_loss", "val_accuracy", "lambda", "tau", "fraction",
                                 "phase"]
        assert all(np.isfinite(v) for k, v in metrics.items() if k != "phase")
        assert record.selected.shape == (1, 8, 8)
        assert record.fraction == pytest.approx(record.selected.mean())
    assert [r.tau for r in seen if r.phase == "select"] == [10.0, 5.0, 2.5]  # the paper's cool-down


def test_warm_up_trains_the_network_alone_and_selection_starts_from_its_best_epoch() -> None:
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=1, **{**FAST, "warmup_epochs": 40},
                         early_stop_patience=2)
    records = train(config, load_digits()).records
    warmup = [r for r in records if r.phase == "warmup"]
    assert 3 <= len(warmup) < 40  # it stopped on its own: two epochs without a better validation accuracy
    best = max(r.val_accuracy for r in warmup)
    assert best > 0.85 and max(r.val_accuracy for r in warmup[-2:]) <= best
    assert all(r.fraction == 1.0 and r.lambda_ == 0.1 for r in warmup)  # nothing masked, nothing learned


def test_a_pretrained_state_dict_replaces_the_warm_up(tmp_path: Path) -> None:
    first = train(TrainConfig(mask_type="pixel-any", model="mlp", epochs=1, **FAST), load_digits())
    torch.save(first.model.state_dict(), tmp_path / "pre.pt")
    again = train(TrainConfig(mask_type="pixel-any", model="mlp", epochs=1, pretrained=str(tmp_path / "pre.pt"),
                              **FAST), load_digits())
    assert again.records[0].phase == "select"
    assert again.start_accuracy == pytest.approx(first.records[-1].val_accuracy)


@pytest.mark.slow
def test_finalize_writes_the_best_validation_epoch_and_the_last_row_describes_it() -> None:
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=4, lambda_init=2.0, **{**FAST,
                         "finalize_epochs": 12}, early_stop_patience=3)
    result = train(config, load_digits())
    final = [r for r in result.records if r.phase in ("finalize", "final")]
    select = [r for r in result.records if r.phase == "select"]
    best = max([select[-1].val_accuracy] + [r.val_accuracy for r in final])
    assert result.records[-1].val_accuracy == best  # the written model's row closes the run
    assert all(np.array_equal(r.selected, result.selected) for r in final)  # the mask is frozen
    changed = int((select[-1].selected != result.selected).sum())
    assert changed == 2 * len(result.swaps)  # only the swap check that ends selection changes it
    from masksel_core.training.steps import evaluate

    splits = split_validation(load_digits(), config.val_share, config.seed)
    assert evaluate(result.model, result.mask, splits.x_val, splits.y_val)[0] == pytest.approx(best)


@pytest.mark.slow
def test_the_test_split_never_decides_anything() -> None:
    data = load_digits()
    shuffled = TensorDataset(data.name, data.x_train, data.y_train, data.x_test,
                             data.y_test[torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))],
                             data.num_classes)
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=3, **FAST)
    a, b = train(config, data), train(config, shuffled)
    assert [r.metrics() for r in a.records] == [r.metrics() for r in b.records]
    assert a.test_accuracy is not None and b.test_accuracy is not None and a.test_accuracy > b.test_accuracy + 0.3


def test_inspect_sees_the_live_network_and_masks_after_every_epoch() -> None:
    seen: list[tuple[int, float, float]] = []
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=2, **{**FAST, "warmup_epochs": 0,
                                                                          "finalize_epochs": 0})

    def look(record: EpochRecord, model: torch.nn.Module, chain: torch.nn.Module) -> None:
        first = next(model.parameters())
        seen.append((record.epoch, float(first.detach().sum()), chain.fraction()))

    result = train(config, load_digits(), inspect=look)
    assert [epoch for epoch, _, _ in seen] == [1, 2]
    assert seen[0][1] != seen[1][1]  # the network it is shown is the one being trained, not a copy
    assert seen[-1][1] == pytest.approx(float(next(result.model.parameters()).detach().sum()))
    assert [fraction for _, _, fraction in seen] == pytest.approx([r.fraction for r in result.records])


@pytest.mark.slow
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

    result = train(TrainConfig(mask_type="pixel-any", model="mlp", epochs=5, **FAST), load_digits(),
                   should_stop=stop_on_fifth_batch)
    assert result.stopped_because == "cancelled"
    assert len(calls) == 5 and result.records == [] and result.warnings == []


def test_target_fraction_stops_early_then_finalize_trains_the_frozen_mask(
        informative_first_channel: TensorDataset) -> None:
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=40, lambda_init=0.5, target_fraction=0.3,
                         **FAST)
    result = train(config, informative_first_channel)
    assert result.stopped_because == "target_fraction"
    select = [r for r in result.records if r.phase == "select"]
    final = [r for r in result.records if r.phase in ("finalize", "final")]
    assert len(select) < 40 and select[-1].fraction <= 0.3 and len(final) >= 2
    assert all(np.array_equal(r.selected, result.selected) for r in final) and result.fraction <= 0.3


@pytest.mark.slow
def test_a_target_is_reached_within_the_epochs_even_from_a_tiny_lambda() -> None:
    """Lambda also rises whenever Q falls behind the path to the target, not only on a plateau."""
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=30, lambda_init=1e-4, lambda_patience=1000,
                         lambda_factor=1.5, target_fraction=0.25, **FAST)
    result = train(config, load_digits())
    assert result.stopped_because == "target_fraction" and result.fraction <= 0.25
    assert [r for r in result.records if r.phase == "select"][-1].lambda_ > 1e-4
    assert not any("target" in w for w in result.warnings)


def test_a_target_is_met_exactly_whatever_the_float32_sum_says() -> None:
    """3 of 10 channels is Q = 0.3 exactly (a float32 sum gives 0.30000001, which would miss the target)."""
    x = torch.rand(200, 10, 7, 7, generator=torch.Generator().manual_seed(0)) * 0.1
    y = torch.arange(200) % 2
    x[y == 1, :3] += 0.5  # channels 0-2 carry the class
    data = TensorDataset("ten", x[:160], y[:160], x[160:], y[160:], 2)
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=40, lambda_init=0.5, target_fraction=0.3,
                         **{**FAST, "finalize_epochs": 0})
    result = train(config, data)
    assert result.stopped_because == "target_fraction" and result.fraction <= 0.3


@pytest.mark.slow
def test_two_lambda_factors_give_two_lambda_paths_by_default() -> None:
    paths = []
    for factor in (1.1, 1.5):
        config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=40, lambda_factor=factor, **FAST)
        paths.append([r.lambda_ for r in train(config, load_digits()).records if r.phase == "select"])
    assert paths[0] != paths[1] and paths[1][-1] > paths[1][0]


def test_lambda_rises_when_the_loss_plateaus(informative_first_channel: TensorDataset) -> None:
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=30, lambda_init=0.5, lambda_patience=0,
                         lambda_factor=1.5, lambda_monitor="total", **FAST)
    records = [r for r in train(config, informative_first_channel).records if r.phase == "select"]
    lambdas = [r.lambda_ for r in records]
    assert lambdas == sorted(lambdas) and lambdas[-1] > lambdas[0]
    raised = [i for i in range(1, len(records)) if lambdas[i] > lambdas[i - 1]]
    assert all(records[i].tau == 10.0 for i in raised)  # every raise restarts the cool-down


def test_an_empty_mask_and_a_model_near_chance_are_warnings() -> None:
    data = load_digits()
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=15, lambda_init=50.0, mask_lr=0.2, **FAST)
    result = train(config, data)
    assert result.fraction == 0.0 and not result.selected.any()
    assert any("keeps nothing" in w for w in result.warnings)
    assert any("near chance" in w for w in result.warnings)
    assert result.summary()["warnings"] == result.warnings


def test_a_target_that_is_not_reached_is_a_warning(informative_first_channel: TensorDataset) -> None:
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=2, lambda_init=1e-4, target_fraction=0.01,
                         **FAST)
    result = train(config, informative_first_channel)
    assert result.stopped_because == "epochs"
    assert any("target_fraction 0.01 was not reached in 2 epochs" in w for w in result.warnings)


def test_a_channel_mask_on_one_channel_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="single channel"):
        train(TrainConfig(mask_type="channel-any", epochs=1, **FAST), load_digits())


def test_cuda_is_refused_clearly_when_absent() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; this checks the message on machines without one")
    with pytest.raises(ValueError, match="no CUDA device"):
        train(TrainConfig(device="cuda", epochs=1), load_digits())


class Interrupt(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize(("mask_type", "interrupt_at"), [("pixel-any", 2), ("pixel-any", 5), ("pixel-any", 8),
                                                         ("jpeg-xor+pixel-any", 5)])
def test_a_run_resumed_from_its_checkpoint_is_bit_identical(tmp_path: Path, mask_type: str,
                                                            interrupt_at: int) -> None:
    """Interrupted in warm-up (2), selection (5) or finalize (8): the same run as an uninterrupted one."""
    config = TrainConfig(mask_type=mask_type, model="lenet5", epochs=4, **{**FAST, "finalize_epochs": 3})
    data = load_digits()
    straight = train(config, data)

    def die(record: EpochRecord) -> None:
        if record.epoch == interrupt_at:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, data, on_epoch=die, checkpoint_dir=tmp_path)
    seen: list[int] = []
    resumed = train(config, data, on_epoch=lambda r: seen.append(r.epoch), checkpoint_dir=tmp_path)
    assert seen == list(range(interrupt_at, len(straight.records) + 1))  # the interrupted epoch is redone
    assert [r.metrics() for r in resumed.records] == [r.metrics() for r in straight.records]
    assert all(np.array_equal(a.selected, b.selected) for a, b in zip(resumed.records, straight.records, strict=True))
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(resumed.mask.state_dict().values(), straight.mask.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the masks' logits too, not only their discrete selection


def test_a_batch_size_of_one_trains_on_every_sample(tmp_path: Path) -> None:
    data = load_npz(make_npz(tmp_path / "d.npz", n=60))
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=1, **{**FAST, "batch_size": 1,
                         "warmup_epochs": 0, "finalize_epochs": 0})
    train(config, data, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    fit = len(split_validation(data, config.val_share, config.seed).y_fit)
    assert int(state["optimizers"][0]["state"][0]["step"]) == fit  # one step per sample, none skipped


def test_a_cancelled_warm_up_keeps_its_best_network() -> None:
    calls: list[int] = []
    data = load_digits()
    splits = split_validation(data, 0.15, FAST["seed"])
    batches = -(-len(splits.y_fit) // FAST["batch_size"])
    result = train(TrainConfig(mask_type="pixel-any", model="mlp", epochs=2, **{**FAST, "warmup_epochs": 10}), data,
                   should_stop=lambda: bool(calls.append(1)) or len(calls) > 3 * batches + 5)
    from masksel_core.training.steps import evaluate

    assert result.stopped_because == "cancelled" and len(result.records) == 3
    best = max(r.val_accuracy for r in result.records)
    assert evaluate(result.model, result.mask, splits.x_val, splits.y_val)[0] == pytest.approx(best)


def test_a_checkpoint_of_another_version_is_refused_clearly(tmp_path: Path) -> None:
    config = TrainConfig(mask_type="pixel-any", epochs=1, **{**FAST, "warmup_epochs": 0, "finalize_epochs": 0})
    train(config, load_digits(), checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    torch.save({**state, "format": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="another version of masksel"):
        train(config, load_digits(), checkpoint_dir=tmp_path)


def test_data_without_room_for_validation_is_refused_by_name() -> None:
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="nothing is left for validation"):
        train(TrainConfig(epochs=1, **FAST), TensorDataset("tiny", x, y, x, y, 3))


def test_a_checkpoint_refuses_another_configuration(tmp_path: Path) -> None:
    train(TrainConfig(mask_type="pixel-any", epochs=1, **FAST), load_digits(), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="differs in lambda_init"):
        train(TrainConfig(mask_type="pixel-any", epochs=2, lambda_init=1.0, **FAST), load_digits(),
              checkpoint_dir=tmp_path)


def test_deterministic_discretisation_never_explores() -> None:
    base = {"mask_type": "pixel-any", "model": "mlp", "epochs": 2, **FAST}
    deterministic = train(TrainConfig(discretization="deterministic", **base), load_digits())
    all_fixation = train(TrainConfig(gamma=1.0, **base), load_digits())
    assert [r.metrics() for r in deterministic.records] == [r.metrics() for r in all_fixation.records]


def test_the_validation_mask_loss_monitor_raises_lambda_when_q_stalls(
        informative_first_channel: TensorDataset) -> None:
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=12, lambda_init=0.5, lambda_patience=1,
                         lambda_monitor="val_mask_loss", lambda_threshold=0.0025, **FAST)
    records = [r for r in train(config, informative_first_channel).records if r.phase == "select"]
    assert records[-1].lambda_ > records[0].lambda_
    assert records[-1].fraction == pytest.approx(0.25)  # once Q stops falling, lambda rises


def test_an_accuracy_drop_beyond_the_tolerance_stops_selection(informative_first_channel: TensorDataset) -> None:
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=60, lambda_init=20.0, lambda_factor=2.0,
                         lambda_patience=0, max_accuracy_drop=0.05, **FAST)
    result = train(config, informative_first_channel)
    assert result.stopped_because == "accuracy_drop"
    select = [r for r in result.records if r.phase == "select"]
    assert select[-1].val_accuracy < max(r.val_accuracy for r in result.records) - 0.05 and len(select) < 60


@pytest.mark.slow
def test_a_jpeg_chain_moves_to_lower_qualities_as_lambda_grows() -> None:
    config = TrainConfig(mask_type="jpeg-xor", model="mlp", epochs=12, lambda_init=1.0, lambda_factor=2.0,
                         lambda_patience=0, **FAST)
    result = train(config, load_digits())
    select = [r for r in result.records if r.phase == "select"]
    assert select[-1].lambda_ > select[0].lambda_
    assert select[-1].fraction < 0.9 and select[-1].fraction < select[0].fraction  # quality 90 costs 0.9
    assert result.selected.reshape(1, 5).argmax() > 0


def test_the_summary_says_where_the_time_went(informative_first_channel: TensorDataset) -> None:
    """Two of four channels dropped from the start: the swap check screens exchanges, and takes time."""
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=2, init_selected=[0, 2], **FAST)
    result = train(config, informative_first_channel)
    seconds = result.summary()["seconds_per_phase"]
    assert set(seconds) == {"warmup", "select", "swap_check", "finalize"}
    assert seconds["swap_check"] > 0 and seconds["warmup"] > 0 and seconds["select"] > 0 and seconds["finalize"] > 0
    by_phase = sum(r.seconds for r in result.records if r.phase in ("warmup", "select", "finalize"))
    assert sum(seconds.values()) == pytest.approx(by_phase + result.swap_seconds, abs=0.01)

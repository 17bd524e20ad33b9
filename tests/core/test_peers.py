"""The peer selectors of the method benchmark (benchmarks/peers.py) on a tiny problem: 2 informative features
among 20. The informative ones also have the largest variance, so the variance filter must find them too."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks import peers

INFORMATIVE = [3, 11]
FAST = {"concrete": {"epochs": 60}, "stg": {"epochs": 30}, "lassonet": {"epochs": 30}}
_CACHE: dict[tuple[str, bool], dict[int, list[int]]] = {}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny networks: a second thread only slows them down (badly so on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem() -> tuple[np.ndarray, np.ndarray]:
    """4 classes = 2 bits; bit 0 shows in feature 3, bit 1 in feature 11, the other 18 are uniform noise."""
    rng = np.random.default_rng(0)
    n = 400
    bits = rng.integers(0, 2, size=(n, 2))
    x = rng.uniform(0.0, 0.3, size=(n, 20))
    x[:, INFORMATIVE] += 0.7 * bits
    return x.astype(np.float32), (2 * bits[:, 0] + bits[:, 1]).astype(np.int64)


def _chosen(name: str, grouped: bool = False) -> dict[int, list[int]]:
    """{k: indices} for k = 1, 2 (concrete: 2 only), seed 0; each selector is fitted once per module run."""
    if name == "lassonet" and peers.LASSONET_MISSING:
        pytest.skip(peers.LASSONET_MISSING)
    if (name, grouped) not in _CACHE:
        fn: Any = peers.SELECTORS[name]
        if name in FAST:
            fn = partial(fn, **FAST[name])
            fn.all_budgets = getattr(peers.SELECTORS[name], "all_budgets", False)
        x, y = _problem()
        groups = [list(range(4 * g, 4 * g + 4)) for g in range(5)] if grouped else None
        budgets = [2] if name == "concrete" else [1, 2]  # concrete trains once per budget: the slowest here
        chosen = peers.select(fn, x, y, budgets, seed=0, groups=groups)
        _CACHE[name, grouped] = {k: indices for k, (indices, _) in chosen.items()}
    return _CACHE[name, grouped]


@pytest.mark.parametrize("name", sorted(peers.SELECTORS))
def test_every_selector_returns_at_most_k_distinct_valid_indices(name: str) -> None:
    for k, indices in _chosen(name).items():
        assert len(indices) <= k
        assert len(set(indices)) == len(indices)
        assert all(isinstance(i, int) and 0 <= i < 20 for i in indices)


@pytest.mark.parametrize("name", sorted(set(peers.SELECTORS) - {"random"}))
def test_finds_the_two_informative_features(name: str) -> None:
    assert _chosen(name)[2] == INFORMATIVE


@pytest.mark.parametrize("name", sorted(set(peers.SELECTORS) - {"lassonet"}))
def test_groups_choose_group_indices(name: str) -> None:
    """5 groups of 4 features; features 3 and 11 sit in groups 0 and 2. (Group LassoNet is left to the channel
    task of benchmarks/quality.py: too slow for this test.)"""
    chosen = _chosen(name, grouped=True)
    assert all(len(indices) <= k and all(0 <= i < 5 for i in indices) for k, indices in chosen.items())
    if name != "random":
        assert chosen[2] == [0, 2]


def test_random_depends_on_the_seed() -> None:
    x, y = _problem()
    draws = {tuple(peers.SELECTORS["random"](x, y, 5, seed)) for seed in range(5)}
    assert len(draws) > 1


def test_select_counts_duplicates_once_and_rejects_too_many() -> None:
    x, y = _problem()
    assert peers.select(lambda x, y, k, seed, groups=None: [7, 5, 5], x, y, [2], 0)[2][0] == [5, 7]
    with pytest.raises(AssertionError, match="> k=2"):
        peers.select(lambda x, y, k, seed, groups=None: [1, 2, 3], x, y, [2], 0)
    with pytest.raises(AssertionError, match="out of range"):
        peers.select(lambda x, y, k, seed, groups=None: [20], x, y, [2], 0)


def test_a_selector_without_groups_serves_pixels_only() -> None:
    x, y = _problem()

    def pixels_only(x, y, k, seed):  # type: ignore[no-untyped-def]
        return [0]

    assert peers.select(pixels_only, x, y, [1], 0)[1][0] == [0]
    assert not peers.supports_groups(pixels_only)
    assert all(peers.supports_groups(fn) for fn in peers.SELECTORS.values())


def test_an_all_budgets_selector_is_fitted_once_for_every_budget() -> None:
    x, y = _problem()
    calls = []

    @peers.all_budgets
    def ranking(x, y, budgets, seed, groups=None):  # type: ignore[no-untyped-def]
        calls.append(budgets)
        return {k: list(range(k)) for k in budgets}

    chosen = peers.select(ranking, x, y, [1, 4], 0)
    assert calls == [(1, 4)]
    assert {k: indices for k, (indices, _) in chosen.items()} == {1: [0], 4: [0, 1, 2, 3]}


def test_a_selector_can_hand_over_its_jointly_trained_predictors() -> None:
    x, y = _problem()

    @peers.all_budgets
    def with_network(x, y, budgets, seed, groups=None):  # type: ignore[no-untyped-def]
        return peers.Answers({k: list(range(k)) for k in budgets}, {k: (lambda z, k=k: np.full(len(z), k))
                                                                    for k in budgets})

    joint: dict[int, Any] = {}
    chosen = peers.select(with_network, x, y, [1, 3], 0, joint=joint)
    assert chosen[3][0] == [0, 1, 2] and sorted(joint) == [1, 3]
    assert joint[3](x[:5]).tolist() == [3] * 5
    assert peers.select(with_network, x, y, [1], 0)[1][0] == [0]  # without ``joint`` the networks are dropped


def test_jpeg_task_helpers_price_and_assemble_each_policy() -> None:
    from benchmarks import jpeg_task

    x = np.random.default_rng(0).random((6, 64)).astype(np.float32)
    channels = jpeg_task.jpeg_channels(x, seed=1)
    assert channels.shape == (6, 4, 16, 32) and 0.0 <= channels.min() and channels.max() <= 1.0
    assert not np.allclose(channels[:, 2], channels[:, 3])  # each noisy copy has its own noise
    decoded, per_channel = jpeg_task.versions_and_bytes(channels)
    assert decoded.shape == (6, 4, 5, 16, 32) and per_channel.shape == (4, 5)
    assert (np.diff(per_channel, axis=1) < 0).all()  # lower quality, fewer bytes, for every channel
    assert (per_channel[2] > per_channel[0]).all()  # noise costs bytes
    choice = (0, 4, 2, 1)
    assert jpeg_task.cost(per_channel, choice) == pytest.approx(sum(per_channel[c, q] for c, q in enumerate(choice)))
    sent = jpeg_task.assemble(decoded, choice).reshape(6, 4, 16, 32)
    assert np.array_equal(sent[:, 1], decoded[:, 1, 4])
    budget = jpeg_task.cost(per_channel, (2, 2, 2, 2))
    mix = jpeg_task.mix_choice(per_channel, budget, seed=0)
    assert set(mix) <= {0, 4} and jpeg_task.cost(per_channel, mix) <= budget
    assert jpeg_task.mix_choice(per_channel, jpeg_task.cost(per_channel, (0,) * 4), seed=0) == (0,) * 4


def test_masksel_joint_predictor_keeps_only_the_chosen_pixels() -> None:
    from benchmarks.masksel_selector import joint_predictor

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            seen.append(z.clone())
            return torch.stack((z.sum(dim=(1, 2, 3)), -z.sum(dim=(1, 2, 3))), dim=1)

    keep = torch.zeros(1, 4, 4)
    keep.view(-1)[[0, 5]] = 1.0
    predict = joint_predictor(Spy(), keep)
    assert predict(np.ones((3, 16), dtype=np.float32)).tolist() == [0, 0, 0]
    assert seen[0].shape == (3, 1, 4, 4) and seen[0].reshape(3, 16)[0].nonzero().flatten().tolist() == [0, 5]


def test_masksel_chooses_at_most_k_and_finds_the_informative_channels() -> None:
    from benchmarks.masksel_selector import masksel

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=300)
    informative = (y[:, None] * 2.0 - 1.0) + rng.normal(0.0, 0.3, size=(300, 4))
    x = np.concatenate([rng.normal(size=(300, 4)), informative, rng.normal(size=(300, 8))], axis=1).astype(np.float32)
    groups = [list(range(4 * g, 4 * g + 4)) for g in range(4)]  # 4 channels of 4 values; channel 1 has the class
    answers = masksel(x, y, (1,), 0, groups=groups, epochs=40, warmup_epochs=3, finalize_epochs=2)
    assert answers[1] == [1] and answers.joint == {}


def test_the_corrected_t_widens_the_interval_for_overlapping_training_sets() -> None:
    from benchmarks.protocol import compare

    a, b = [0.80, 0.82, 0.81, 0.83, 0.80], [0.78, 0.79, 0.80, 0.80, 0.79]
    c = compare(a, b, test_share=0.2)
    diffs = np.subtract(a, b)
    naive = diffs.std(ddof=1) / np.sqrt(5)
    assert c.mean == pytest.approx(diffs.mean())
    corrected = np.sqrt((1 / 5 + 0.25) * diffs.var(ddof=1))
    assert (c.high - c.mean) == pytest.approx(2.776 * corrected, rel=1e-3) and corrected > naive
    assert c.verdict == "ahead" and compare(b, a).verdict == "behind"
    assert compare([0.5, 0.6], [0.6, 0.5]).verdict == "level"
    assert compare([0.7, 0.7], [0.7, 0.7]).p == 1.0


def test_holm_adjusts_step_down_and_keeps_the_order() -> None:
    from benchmarks.protocol import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_area_is_the_mean_accuracy_over_the_log_budget_range() -> None:
    from benchmarks.protocol import area

    assert area([10, 20, 40], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert area([10, 20, 40], [0.4, 0.6, 0.6]) == pytest.approx(0.55)
    assert area([8], [0.7]) == 0.7


def test_folds_are_stratified_disjoint_and_the_same_every_time() -> None:
    from benchmarks.protocol import folds

    y = np.repeat(np.arange(3), 20)
    first, again = folds(y), folds(y)
    assert len(first) == 10 and all(np.array_equal(a.test, b.test) for a, b in zip(first, again, strict=True))
    for fold in first:
        assert not set(fold.train) & set(fold.test) and len(fold.train) + len(fold.test) == 60
        assert np.bincount(y[fold.test]).tolist() == [4, 4, 4]


def test_the_retrain_sees_only_the_kept_features() -> None:
    from benchmarks.protocol import load, retrain_accuracy

    x, y, shape = load("digits")
    assert x.shape == (1797, 64) and shape == (1, 8, 8)
    every = retrain_accuracy(x[:1200], y[:1200], x[1200:], y[1200:], range(64), 0)
    nothing = retrain_accuracy(x[:1200], y[:1200], x[1200:], y[1200:], [], 0)
    assert every > 0.9 and nothing < 0.2


def test_the_quality_report_counts_runs_inside_their_budget_and_the_spread_over_seeds(
        capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.quality import _mean_over_seeds, print_budget_use

    def run(pixels: int, accuracy: float, written: float) -> dict[str, Any]:
        return {"accuracy": {16: accuracy}, "pixels": {16: pixels}, "joint": {16: written}, "fit_s": 1.0,
                "retrain_s": 2.0}

    folds = [[run(16, 0.90, 0.92), run(14, 0.94, 0.94)], [run(15, 0.80, 0.90), run(12, 0.80, 0.90)]]
    assert _mean_over_seeds(folds[0]) == {"accuracy": {16: pytest.approx(0.92)}, "pixels": {16: 15},
                                          "joint": {16: pytest.approx(0.93)}, "fit_s": 2.0, "retrain_s": 4.0}
    print_budget_use({"masksel": folds}, (16,), seeds=2)
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| masksel |")]
    # 16 and 15 are within 0.9-1.0 of 16 (14.4 to 16); 14 and 12 are not. Spread: (0.028 + 0) / 2, (0.014 + 0) / 2.
    assert row == ["| masksel | k=16 | 2/4 | 0.014 | 0.007 |"]

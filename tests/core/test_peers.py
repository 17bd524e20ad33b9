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


def test_masksel_joint_predictor_keeps_only_the_chosen_pixels() -> None:
    from benchmarks.masksel_selector import Path, joint_predictor
    from masksel_core import TensorDataset

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            seen.append(z.clone())
            return torch.stack((z.sum(dim=(1, 2, 3)), -z.sum(dim=(1, 2, 3))), dim=1)

    images = torch.zeros(2, 1, 4, 4)
    path = Path([], {}, TensorDataset("px", images, torch.zeros(2, dtype=torch.long), images,
                                      torch.zeros(2, dtype=torch.long), 2, ["c0"]), by_channel=False)
    predict = joint_predictor(Spy(), path.input_mask([0, 5]))
    assert predict(np.ones((3, 16), dtype=np.float32)).tolist() == [0, 0, 0]
    assert seen[0].shape == (3, 1, 4, 4) and seen[0].reshape(3, 16)[0].nonzero().flatten().tolist() == [0, 5]


def test_quality_protocol_helpers() -> None:
    from benchmarks.quality import channel_task, evaluate_pixels

    x, y, groups = channel_task(0)
    assert x.shape[1] == 8 * 32 and len(groups) == 8 and len(x) == len(y)
    top = x[:, :32]
    assert 0.05 < np.std(x[:, 64:96] - top) < 0.15 and 0.05 < np.std(x[:, 96:128] - top) < 0.15
    assert not np.allclose(x[:, 64:96], x[:, 96:128])  # the two noisy copies have their own noise
    assert evaluate_pixels(range(64), seed=0, epochs=2) > 0.5
    assert evaluate_pixels([], seed=0, epochs=1) < 0.2  # nothing to see: chance level


def test_masksel_ranks_elements_by_how_long_they_survive_the_lambda_path() -> None:
    import numpy as np

    from benchmarks.masksel_selector import survival_ranking

    path = [np.array(m, dtype=bool) for m in ([1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0])]
    assert survival_ranking(path) == [2, 3, 0, 1]
    # a tie in the last epoch goes to the element selected more often, then to the lower index
    assert survival_ranking([np.array([0, 1, 1]), np.array([1, 1, 1])]) == [1, 2, 0]


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


def test_masksel_swap_check_trades_a_noisy_copy_for_the_clean_channel() -> None:
    """The path kept a noisy copy (channel 1) of the clean channel 0 by chance: the swap check with a network
    warm-started at k elements finds the clean one; with nothing better in the pool, it keeps what it has."""
    from benchmarks.masksel_selector import Path, swap_refine
    from masksel_core import TensorDataset

    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = rng.integers(0, 2, size=n)
        clean = (labels[:, None] * 2.0 - 1.0) + rng.normal(0.0, 0.3, size=(n, 4))
        x = np.stack([clean, clean + rng.normal(0.0, 2.0, size=(n, 4)), rng.normal(size=(n, 4))], axis=1)
        return torch.as_tensor(x[:, :, None, :], dtype=torch.float32), torch.as_tensor(labels)

    (x_fit, y_fit), (x_val, y_val) = split(400), split(200)
    data = TensorDataset("swap", x_fit, y_fit, x_val, y_val, 2, ["clean", "copy", "noise"])
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    path = Path(masks=[], snapshots={1: network}, data=data, by_channel=True)
    assert path.input_mask([1]).shape == (3, 1, 4) and path.input_mask([1])[:, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert swap_refine(path, 1, [1, 0, 2], seed=0, epochs=3) == [0]
    assert swap_refine(path, 1, [0, 2, 1], seed=0, epochs=3, candidates=1) == [0]  # pure noise is no better
    assert swap_refine(path, 3, [0, 1, 2], seed=0) == [0, 1, 2]  # no candidates left: nothing to swap


def test_goal_check_compares_masksel_with_the_best_peer_in_pooled_standard_deviations(capsys) -> None:  # type: ignore[no-untyped-def]
    from benchmarks.quality import print_goal

    accuracy = {
        "random": {4: [0.99, 0.98], 8: [0.99, 0.98], 16: [0.99, 0.98]},  # never the peer to beat
        "variance": {4: [0.60, 0.62], 8: [0.80, 0.82], 16: [0.95, 0.95]},
        "stg": {4: [0.50, 0.52], 8: [0.84, 0.86], 16: [0.90, 0.90]},
        "masksel": {4: [0.64, 0.66], 8: [0.85, 0.85], 16: [0.90, 0.92]},
        "masksel[no-swap]": {4: [0.99, 0.99], 8: [0.99, 0.99], 16: [0.99, 0.99]},
    }
    print_goal(accuracy, [4, 8, 16])
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| k=")}
    assert "variance" in rows["k=4"] and rows["k=4"].rstrip(" |").endswith("ahead")
    assert "stg" in rows["k=8"] and rows["k=8"].rstrip(" |").endswith("level")
    assert "variance" in rows["k=16"] and rows["k=16"].rstrip(" |").endswith("behind")

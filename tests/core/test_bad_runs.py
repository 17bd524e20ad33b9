"""Runs that cannot give a useful result stop with the reason named, before or while training: a checkpoint of
other data, NaN past what opening a store sampled, values a JPEG cannot hold; and what a run reports stays true
(a mask that keeps everything is priced 1, free elements are not "nothing kept")."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from masksel_core import TensorDataset, TrainConfig, build_chain, load_npz, load_store, train
from masksel_core.data.arrays import DataError
from masksel_core.data.convert import convert
from tests.conftest import make_npz
from tests.core.test_stores import small_arrays, write_store

FAST = {"mask_type": "pixel-any", "model": "mlp", "epochs": 1, "warmup_epochs": 1, "finalize_epochs": 0,
        "batch_size": 32, "device": "cpu", "seed": 0}


def test_a_checkpoint_resumes_only_the_data_it_was_made_on(tmp_path: Path) -> None:
    config = TrainConfig(**FAST)
    train(config, load_npz(make_npz(tmp_path / "a.npz", seed=0)), checkpoint_dir=tmp_path / "ck")
    other = load_npz(make_npz(tmp_path / "b.npz", seed=1))  # the same shape, classes and sizes; other values
    with pytest.raises(ValueError, match="the checkpoint was made on other data"):
        train(config, other, checkpoint_dir=tmp_path / "ck")
    (tmp_path / "ck" / "checkpoint.pt").write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(ValueError, match="checkpoint.pt is not a masksel checkpoint"):
        train(config, other, checkpoint_dir=tmp_path / "ck")


def test_a_store_is_named_alike_streamed_or_in_memory(tmp_path: Path) -> None:
    """A worker's memory budget decides whether a store streams; a retry on another worker may decide otherwise and
    must still resume the run's checkpoint."""
    from masksel_core.training.train import data_digest

    store = load_store(write_store(tmp_path / "s.zarr", small_arrays(n=3000), chunks=64))
    assert data_digest(store) == data_digest(store.to_memory())
    other = load_store(write_store(tmp_path / "o.zarr", small_arrays(n=3000, size=6) | {
        "x_train": small_arrays(n=3000)["x_train"] // 2}, chunks=64))
    assert data_digest(other) != data_digest(store)


def test_nan_past_the_chunks_opening_sampled_is_refused_when_read(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = small_arrays(n=2000)
    x = arrays["x_train"].astype(np.float32) / 255
    x[1003, 1, 0, 0] = np.nan
    monkeypatch.setattr("masksel_core.data.stores.SAMPLE_BYTES", 4 * 2 * 6 * 6 * 10 * 5)  # five chunks of 200
    store = load_store(write_store(tmp_path / "nan.zarr", {**arrays, "x_train": x}, chunks=10))
    with pytest.raises(DataError, match=r"x_train contains NaN \(samples 1000 to 1009\)"):
        store.to_memory()
    np.savez(tmp_path / "nan.npz", x_train=x, y_train=arrays["y_train"])
    with pytest.raises(DataError, match=r"x_train contains NaN \(samples"):
        convert(str(tmp_path / "nan.npz"), str(tmp_path / "out.zarr"))
    with pytest.raises(DataError):
        load_store(str(tmp_path / "out.zarr"))  # what was written before the NaN does not open as a store


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_nan_training_loss_stops_the_run_naming_it(precision: str) -> None:
    x = torch.rand(64, 1, 4, 4)
    x[5, 0, 0, 0] = float("nan")  # past the loaders' checks: a data set built in Python
    y = torch.arange(64) % 2
    data = TensorDataset("nan", x, y, x[:8], y[:8], 2)
    with pytest.raises(ValueError, match="the training loss became nan in epoch 1"):
        train(TrainConfig(**{**FAST, "val_share": 0.2, "precision": precision}), data)


def test_jpeg_versions_refuse_values_a_jpeg_cannot_hold_and_thumbnails_take_any() -> None:
    chain = build_chain("jpeg-xor", (1, 8, 8))
    with pytest.raises(ValueError, match=r"jpeg-xor encodes 8-bit images, so its inputs must lie in \[0, 1\]"):
        chain.extend.apply(-torch.rand(4, 1, 8, 8))
    thumbs = build_chain("thumb-xor+channel-any", (2, 8, 8))  # float thumbnails, sent as floats: standardised data
    assert thumbs.extend.apply(torch.randn(4, 2, 8, 8)).shape[0] == 4


def test_a_mask_that_keeps_everything_costs_exactly_one_and_free_elements_are_not_nothing(tmp_path: Path) -> None:
    chain = build_chain("pixel-any", (2, 6, 6))  # 72 elements: a float32 share of 1/72 summed 1.000000007
    with torch.no_grad():
        chain.select_stages[0].logits[..., 0], chain.select_stages[0].logits[..., 1] = 10.0, -10.0
    assert chain.fraction() == 1.0
    data = load_npz(make_npz(tmp_path / "d.npz"))
    result = train(TrainConfig(**{**FAST, "costs": np.zeros((2, 6, 6)).tolist()}), data)
    assert result.selected.any() and not any("keeps nothing" in w for w in result.warnings), result.warnings

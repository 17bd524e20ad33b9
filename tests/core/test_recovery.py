"""The method recovers planted structure (issue 3): the informative channels of `synthetic-remote` with
`channel-any` and the supernova's centre with `pixel-any` on `synthetic-supernova`.

Small networks, few epochs, a fixed seed and subsets of the data keep the file within ~30 s on two CPU
cores. The channel settings were checked on seeds 0, 1 and 2 (data and training): every run kept all four
informative channels or a copy of each, and no noise channel.
"""
from __future__ import annotations

import numpy as np
import pytest

from masksel_core import TrainConfig, train
from masksel_core.data.arrays import TensorDataset
from masksel_core.data.synthetic import (
    SUPERNOVA_CENTRE,
    SYNTHETIC_REMOTE_COPIES,
    SYNTHETIC_REMOTE_INFORMATIVE,
    SYNTHETIC_REMOTE_NOISE,
    load_synthetic_remote,
    load_synthetic_supernova,
)

SEED = 0
FAST = {"model": "mlp", "model_lr": 1e-3, "batch_size": 32, "seed": SEED, "lambda_factor": 1.25,
        "lambda_patience": 1, "warmup_epochs": 3, "finalize_epochs": 2}


def _subset(data: TensorDataset, n_train: int, n_test: int) -> TensorDataset:
    return TensorDataset(data.name, data.x_train[:n_train], data.y_train[:n_train], data.x_test[:n_test],
                         data.y_test[:n_test], data.num_classes, list(data.channel_names))


@pytest.mark.slow
def test_channel_any_keeps_every_informative_source_and_drops_the_noise_channels() -> None:
    data = _subset(load_synthetic_remote(SEED), 900, 300)
    result = train(TrainConfig(mask_type="channel-any", epochs=10, lambda_init=0.5, **FAST), data)
    selected = result.selected
    assert selected.shape == (36,)
    kept = {int(c) for c in np.flatnonzero(selected)}
    for source in SYNTHETIC_REMOTE_INFORMATIVE:
        group = {source} | {copy for copy, src in SYNTHETIC_REMOTE_COPIES.items() if src == source}
        assert kept & group, f"neither channel {source} nor any of its copies was kept (kept {sorted(kept)})"
    kept_noise = kept & set(SYNTHETIC_REMOTE_NOISE)
    assert len(kept_noise) <= 2, f"noise channels kept: {sorted(kept_noise)}"
    assert result.fraction <= 14 / 36
    chance = 1 / data.num_classes
    assert result.records[-1].val_accuracy > 0.6 > 5 * chance


@pytest.mark.slow
def test_pixel_any_concentrates_the_kept_pixels_in_the_supernova_centre() -> None:
    data = _subset(load_synthetic_supernova(SEED), 800, 300)
    result = train(TrainConfig(mask_type="pixel-any", epochs=12, lambda_init=0.5, **FAST), data)
    selected = result.selected.astype(np.float64)
    assert selected.shape == (3, 50, 50)
    inside = np.zeros((50, 50), dtype=bool)
    inside[SUPERNOVA_CENTRE, SUPERNOVA_CENTRE] = True
    share_inside, share_outside = selected[:, inside].mean(), selected[:, ~inside].mean()
    assert share_inside > 3 * share_outside, (share_inside, share_outside)
    assert share_inside > 0.2
    assert result.fraction < 0.5
    assert result.fraction == pytest.approx(selected.mean())
    assert result.records[-1].val_accuracy > 0.9  # chance is 0.5

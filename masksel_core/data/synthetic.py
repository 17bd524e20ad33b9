"""Generated data sets that ship offline, seeded and deterministic (registered in `builtins`).

- `synthetic-remote`: a stand-in for the paper's remote sensing data (`load_synthetic_remote`);
- `synthetic-supernova`: a bright blob in the centre, or not (`load_synthetic_supernova`);
- `synthetic-moving`: a small pattern, which says the class, anywhere in the image (`load_synthetic_moving`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .arrays import TensorDataset

# --- synthetic-remote -------------------------------------------------------------------------

REMOTE_BANDS = 6
REMOTE_DATES = 6
REMOTE_SIZE = 35
REMOTE_CLASSES = 12
REMOTE_TRAIN = 1800
REMOTE_TEST = 600

#: Channel index = 6 * band + date (0-based); its name is f"b{band + 1}-d{date + 1}".
SYNTHETIC_REMOTE_CHANNELS: tuple[str, ...] = tuple(
    f"b{band + 1}-d{date + 1}" for band in range(REMOTE_BANDS) for date in range(REMOTE_DATES))
#: The channels that carry the class: b1-d4, b2-d3, b4-d2, b6-d1.
SYNTHETIC_REMOTE_INFORMATIVE: tuple[int, ...] = (3, 8, 19, 30)
#: Noisy copies, copy -> source: each informative channel has one copy in its own band at the next date
#: and one in another band at the same date.
SYNTHETIC_REMOTE_COPIES: dict[int, int] = {1: 19, 4: 3, 9: 8, 12: 30, 14: 8, 20: 19, 27: 3, 31: 30}
#: The 24 channels that carry no class information.
SYNTHETIC_REMOTE_NOISE: tuple[int, ...] = tuple(
    c for c in range(REMOTE_BANDS * REMOTE_DATES)
    if c not in SYNTHETIC_REMOTE_INFORMATIVE and c not in SYNTHETIC_REMOTE_COPIES)
#: Class k brightens (bit 1) or darkens (bit 0) the centre of informative channel j by CODES[k][j].
#: The 12 codes are the 4-bit numbers 1..14 without 6 and 9: every channel is bright for 6 classes and
#: dark for the other 6, and for every channel two classes differ in that channel only, so each one
#: is needed and none alone tells more than "one of these six".
SYNTHETIC_REMOTE_CODES: tuple[tuple[int, ...], ...] = tuple(
    tuple((v >> j) & 1 for j in range(4)) for v in range(1, 15) if v not in (6, 9))
#: Rows and columns of the centre patch that holds the class signal (the bump has sigma 3.5 pixels).
REMOTE_CENTRE = slice(14, 21)

# The class signal is strong and wide against a dim, quiet background so that a small network on raw pixels
# learns it within a few epochs even while the mask's exploration drops random channels (on a bright, busy
# background every dropped channel moved the input far more than the class did, and an MLP stayed near chance).
_REMOTE_BUMP_SIGMA = 3.5
_REMOTE_AMPLITUDE = 0.25  # centre shift of an informative channel: +/- this, times a jitter in [0.8, 1.2]
_REMOTE_FIELD_STD = 0.02  # smooth background texture
_REMOTE_NOISE_STD = 0.03  # independent pixel noise
_REMOTE_BASE = (0.2, 0.3)  # range of the per-channel base level
_REMOTE_COPY_WEIGHT = 0.7  # copy = 0.7 * source + 0.3 * (its own texture and noise)


def load_synthetic_remote(seed: int = 0) -> TensorDataset:
    """36 channels (6 bands x 6 dates), 35x35, 12 balanced classes; 1,800 train and 600 test samples.

    Every channel has a base level drawn once per data set, a smooth random texture (a 6x6 grid of normal
    values interpolated bilinearly) and uniform pixel noise; values are clipped to [0, 1].
    - Informative channels: a Gaussian bump at the centre pixel (17, 17), brightening or darkening it as
      `SYNTHETIC_REMOTE_CODES[label]` says (times a per-sample jitter). The class is decodable from the four
      together (e.g. from the means of the `REMOTE_CENTRE` patch), not from fewer.
    - Copies: a noisier, weaker version of their source's signal.
    - Noise: the other 24 channels, independent of the label.
    The layout is fixed; `seed` only draws the samples.
    """
    rng = np.random.default_rng(seed)
    base = rng.uniform(*_REMOTE_BASE, size=REMOTE_BANDS * REMOTE_DATES).astype(np.float32)
    x_train, y_train = _remote_split(rng, REMOTE_TRAIN, base)
    x_test, y_test = _remote_split(rng, REMOTE_TEST, base)
    return _dataset("synthetic-remote", x_train, y_train, x_test, y_test, REMOTE_CLASSES,
                    list(SYNTHETIC_REMOTE_CHANNELS))


def _remote_split(rng: np.random.Generator, n: int, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    channels, size = REMOTE_BANDS * REMOTE_DATES, REMOTE_SIZE
    y = rng.permutation(np.arange(n) % REMOTE_CLASSES)
    up = _interpolation_matrix(6, size)
    coarse = rng.standard_normal((channels, n, 6, 6), dtype=np.float32)
    noise = np.empty((n, size, size), dtype=np.float32)
    x = np.empty((n, channels, size, size), dtype=np.float32)
    for c in range(channels):  # one channel at a time keeps the temporaries small
        plane = x[:, c]
        np.matmul(up @ coarse[c], up.T, out=plane)
        plane *= _REMOTE_FIELD_STD
        plane += base[c]
        plane += _uniform_noise(rng, noise, _REMOTE_NOISE_STD)
    centre = (size - 1) / 2
    grid = np.arange(size, dtype=np.float32) - centre
    bump = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * _REMOTE_BUMP_SIGMA**2)).astype(np.float32)
    codes = np.asarray(SYNTHETIC_REMOTE_CODES, dtype=np.float32)[y]  # (n, 4)
    height = (2 * codes - 1) * _REMOTE_AMPLITUDE * rng.uniform(0.8, 1.2, size=(n, 1)).astype(np.float32)
    for j, c in enumerate(SYNTHETIC_REMOTE_INFORMATIVE):
        x[:, c] += height[:, j, None, None] * bump
    for copy, source in SYNTHETIC_REMOTE_COPIES.items():
        x[:, copy] *= 1 - _REMOTE_COPY_WEIGHT
        x[:, copy] += _REMOTE_COPY_WEIGHT * x[:, source]
    np.clip(x, 0.0, 1.0, out=x)
    return x, y.astype(np.int64)


def _uniform_noise(rng: np.random.Generator, out: np.ndarray, std: float) -> np.ndarray:
    """Fill `out` with uniform noise of mean 0 and standard deviation `std` (256 levels).

    Drawn as random bytes: several times faster than normal draws, which matters at 100M values.
    """
    levels = np.frombuffer(rng.bytes(out.size), dtype=np.uint8).reshape(out.shape)
    half_width = std * np.sqrt(3.0)
    np.multiply(levels, np.float32(2 * half_width / 255), out=out)
    out -= np.float32(half_width)
    return out


def _interpolation_matrix(coarse: int, fine: int) -> np.ndarray:
    """`(fine, coarse)` weights of linear interpolation from `coarse` knots spread over `fine` pixels."""
    position = np.linspace(0, coarse - 1, fine)
    low = np.minimum(np.floor(position).astype(int), coarse - 2)
    frac = position - low
    matrix = np.zeros((fine, coarse), dtype=np.float32)
    rows = np.arange(fine)
    matrix[rows, low] = 1 - frac
    matrix[rows, low + 1] = frac
    return matrix


# --- synthetic-supernova ----------------------------------------------------------------------

SUPERNOVA_SIZE = 50
SUPERNOVA_TRAIN = 1600
SUPERNOVA_TEST = 400
SUPERNOVA_CHANNELS: tuple[str, ...] = ("g", "r", "i")
#: Rows and columns of the 10x10 centre region: nearly all of a class-1 blob's light falls here (see
#: `load_synthetic_supernova`), and no background object is centred in it.
SUPERNOVA_CENTRE = slice(20, 30)

_SUPERNOVA_SLOTS = 6  # at most this many background objects per image, each present with p = 0.6


def load_synthetic_supernova(seed: int = 0) -> TensorDataset:
    """3 channels (g, r, i), 50x50, 2 balanced classes; 1,600 train and 400 test samples.

    Both classes: a sky level of 0.08 with pixel noise and up to six background objects (Gaussian, sigma
    0.8-2.5 px) centred 12 to 30 px from the image centre. Class 1 adds the "supernova": a Gaussian blob
    (sigma 1.0-1.8 px, in all channels) centred within 2 px of the image centre. Values are clipped to [0, 1].
    """
    rng = np.random.default_rng(seed)
    x_train, y_train = _supernova_split(rng, SUPERNOVA_TRAIN)
    x_test, y_test = _supernova_split(rng, SUPERNOVA_TEST)
    return _dataset("synthetic-supernova", x_train, y_train, x_test, y_test, 2, list(SUPERNOVA_CHANNELS))


def _supernova_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    size, channels, slots = SUPERNOVA_SIZE, len(SUPERNOVA_CHANNELS), _SUPERNOVA_SLOTS
    centre = (size - 1) / 2
    y = rng.permutation(np.arange(n) % 2)
    x = rng.standard_normal((n, channels, size, size), dtype=np.float32)
    x *= 0.03
    x += 0.08
    angle = rng.uniform(0, 2 * np.pi, size=(n, slots))
    radius = rng.uniform(12, 30, size=(n, slots))
    rows = np.clip(centre + radius * np.sin(angle), 0, size - 1)
    cols = np.clip(centre + radius * np.cos(angle), 0, size - 1)
    sigma = rng.uniform(0.8, 2.5, size=(n, slots))
    light = rng.uniform(0.1, 0.5, size=(n, slots, channels)) * (rng.random((n, slots, 1)) < 0.6)
    x += _gaussians(rows, cols, sigma, light, size)
    offset = rng.uniform(-2, 2, size=(n, 2))
    sigma = rng.uniform(1.0, 1.8, size=(n, 1))
    light = rng.uniform(0.3, 0.7, size=(n, 1, channels)) * (y == 1)[:, None, None]
    x += _gaussians(centre + offset[:, :1], centre + offset[:, 1:], sigma, light, size)
    np.clip(x, 0.0, 1.0, out=x)
    return x, y.astype(np.int64)


def _gaussians(rows: np.ndarray, cols: np.ndarray, sigma: np.ndarray, light: np.ndarray, size: int) -> np.ndarray:
    """Sum of separable Gaussians: centres `(n, m)`, sigmas `(n, m)`, peaks `(n, m, C)` -> `(n, C, H, W)`."""
    grid = np.arange(size, dtype=np.float32)
    gy = np.exp(-((grid - rows[..., None]) ** 2) / (2 * sigma[..., None] ** 2)).astype(np.float32)  # (n, m, H)
    gx = np.exp(-((grid - cols[..., None]) ** 2) / (2 * sigma[..., None] ** 2)).astype(np.float32)  # (n, m, W)
    weighted = light.astype(np.float32).transpose(0, 2, 1)[..., None] * gy[:, None]  # (n, C, m, H)
    return np.matmul(weighted.transpose(0, 1, 3, 2), gx[:, None])  # (n, C, H, m) @ (n, 1, m, W)


# --- synthetic-moving ------------------------------------------------------------------------

MOVING_SIZE = 28
MOVING_TRAIN = 2400
MOVING_TEST = 600
#: The four classes: a 5x5 "T" pointing up, right, down and left. Every one lights 9 pixels, and any row or
#: column of it alone is shared with another class: a few scattered pixels of it do not tell the class.
MOVING_PATTERNS = np.stack([np.rot90(np.array([[1, 1, 1, 1, 1],
                                               [0, 0, 1, 0, 0],
                                               [0, 0, 1, 0, 0],
                                               [0, 0, 1, 0, 0],
                                               [0, 0, 1, 0, 0]], dtype=np.float32), -k) for k in range(4)])
_MOVING_NOISE = 0.35  # background: uniform in [0, this]; a pattern's pixels are 0.75 to 1.0


def load_synthetic_moving(seed: int = 0) -> TensorDataset:
    """1 channel, 28x28, 4 balanced classes; 2,400 train and 600 test samples.

    Each image is uniform noise with one 5x5 "T" (its orientation is the class) at a random place, drawn
    uniformly over the whole image: no fixed set of pixels sees it in most images, which is what a mask
    computed per input (`dynamic-pixel-any`) is for.
    """
    rng = np.random.default_rng(seed)
    x_train, y_train = _moving_split(rng, MOVING_TRAIN)
    x_test, y_test = _moving_split(rng, MOVING_TEST)
    return _dataset("synthetic-moving", x_train, y_train, x_test, y_test, len(MOVING_PATTERNS), ["gray"])


def _moving_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    size, side = MOVING_SIZE, MOVING_PATTERNS.shape[1]
    y = rng.permutation(np.arange(n) % len(MOVING_PATTERNS))
    x = rng.uniform(0.0, _MOVING_NOISE, size=(n, 1, size, size)).astype(np.float32)
    rows = rng.integers(0, size - side + 1, size=n)
    cols = rng.integers(0, size - side + 1, size=n)
    light = rng.uniform(0.75, 1.0, size=n).astype(np.float32)
    for i in range(n):
        patch = x[i, 0, rows[i]:rows[i] + side, cols[i]:cols[i] + side]
        np.copyto(patch, light[i], where=MOVING_PATTERNS[y[i]] > 0)
    return x, y.astype(np.int64)


def _dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             num_classes: int, channel_names: list[str]) -> TensorDataset:
    """Wrap generated arrays without the copies and checks of `data.from_arrays` (they are valid by construction)."""
    return TensorDataset(name, torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test),
                         torch.from_numpy(y_test), num_classes, channel_names)


#: What `BUILTINS[name](seed).summary()` says, known without generating anything (for listings).
SYNTHETIC_SUMMARIES: dict[str, dict[str, Any]] = {
    "synthetic-remote": {
        "name": "synthetic-remote", "input_shape": [REMOTE_BANDS * REMOTE_DATES, REMOTE_SIZE, REMOTE_SIZE],
        "num_classes": REMOTE_CLASSES, "num_train": REMOTE_TRAIN, "num_test": REMOTE_TEST,
        "channel_names": list(SYNTHETIC_REMOTE_CHANNELS),
    },
    "synthetic-supernova": {
        "name": "synthetic-supernova", "input_shape": [len(SUPERNOVA_CHANNELS), SUPERNOVA_SIZE, SUPERNOVA_SIZE],
        "num_classes": 2, "num_train": SUPERNOVA_TRAIN, "num_test": SUPERNOVA_TEST,
        "channel_names": list(SUPERNOVA_CHANNELS),
    },
    "synthetic-moving": {
        "name": "synthetic-moving", "input_shape": [1, MOVING_SIZE, MOVING_SIZE], "num_classes": len(MOVING_PATTERNS),
        "num_train": MOVING_TRAIN, "num_test": MOVING_TEST, "channel_names": ["gray"],
    },
}

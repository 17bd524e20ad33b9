"""`extend`: several versions of each input channel, computed once per data set and cached.

Versions are a fixed transform of the data (no learned parameters), so they are computed for the
whole data set before training, stored as uint8 where the versions are images (JPEG), and the
masks after them work on batch slices like on any other input. Channel `c`'s version `v` lands in
channel `c * V + v`, so a `channel-xor` with one group per original channel picks one version of
each, and `merge` folds them back.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

DEFAULT_JPEG_QUALITIES = (90, 70, 50, 30, 10)
DEFAULT_THUMB_SCALES = (1, 2, 4)
ENCODE_BATCH = 4096


@dataclass(frozen=True)
class Extend:
    """`kind` is "jpeg" (versions at `levels` = qualities) or "thumb" (`levels` = downscale factors)."""

    kind: str
    levels: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("jpeg", "thumb"):
            raise ValueError(f"unknown extend kind {self.kind!r}; choose jpeg or thumb")
        if not self.levels:
            raise ValueError("extend needs at least one version")
        if self.kind == "jpeg" and not all(1 <= q <= 100 for q in self.levels):
            raise ValueError(f"JPEG qualities must be between 1 and 100, got {list(self.levels)}")
        if self.kind == "thumb" and not all(s >= 1 for s in self.levels):
            raise ValueError(f"thumbnail scales must be 1 or more, got {list(self.levels)}")

    @property
    def versions(self) -> int:
        return len(self.levels)

    def version_costs(self) -> torch.Tensor:
        """The paper's price of each version: q/100 for JPEG, the kept share 1/s^2 for thumbnails."""
        if self.kind == "jpeg":
            return torch.tensor([q / 100.0 for q in self.levels])
        return torch.tensor([1.0 / (s * s) for s in self.levels])

    def measured_costs(self, x: torch.Tensor, *, itemsize: int = 4, per_channel: bool = False) -> torch.Tensor:
        """Each version's mean bytes on the wire for one channel of one sample (as `transfer.pack` sends it),
        relative to the channel's raw values (`H * W * itemsize` bytes, float32 by default): shape (V,), or
        (C, V) with `per_channel` (a noisy channel's JPEG is larger than a smooth one's at the same quality).

        JPEG: the encoded image plus its 4-byte length, averaged over the samples of `x` (the training set)
        and, unless `per_channel`, over its channels; measured once per data set and kept under
        MASKSEL_CACHE_DIR when set. Thumbnails: exact, the same for every channel.
        """
        n, c, h, w = x.shape
        raw = float(h * w * itemsize)
        if self.kind == "thumb":
            costs = torch.tensor([-(-h // s) * -(-w // s) * itemsize / raw for s in self.levels])
            return costs.expand(c, -1).clone() if per_channel else costs
        per_channel_costs = self._measured_jpeg_costs(x, raw)
        return per_channel_costs if per_channel else per_channel_costs.mean(dim=0)

    def _measured_jpeg_costs(self, x: torch.Tensor, raw: float) -> torch.Tensor:
        """(C, V) mean encoded bytes per channel and quality over the samples of `x`, relative to `raw`."""
        n, c, h, w = x.shape
        path = _cache_path(self, x, suffix="bytes-per-channel")
        if path is not None and path.exists():
            return torch.load(path, weights_only=True)
        planes = _planes(x)
        costs = torch.zeros(c, self.versions, dtype=torch.float64)
        for v, quality in enumerate(self.levels):
            sizes = torch.empty(n * c, dtype=torch.float64)
            for start, encoded in _encoded_batches(planes, quality):
                sizes[start:start + len(encoded)] = torch.tensor([float(e.numel() + 4) for e in encoded])
            costs[:, v] = sizes.reshape(n, c).mean(dim=0) / raw if n else 0.0
        costs = costs.float()
        if path is not None:
            _save(costs, path)
        return costs

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, C, H, W)` floats in [0, 1] -> `(N, C * V, H, W)` floats, cached on disk when allowed."""
        path = _cache_path(self, x)
        if path is not None and path.exists():
            stored = torch.load(path, weights_only=True)
        else:
            stored = _jpeg_versions(x, self.levels) if self.kind == "jpeg" else _thumb_versions(x, self.levels)
            if path is not None:
                _save(stored, path)
        return stored.float() / 255.0 if stored.dtype == torch.uint8 else stored


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _planes(x: torch.Tensor) -> torch.Tensor:
    """`(N, C, H, W)` floats -> `(N * C, 1, H, W)` uint8 grayscale planes, sample-major (plane i is channel i % C)."""
    n, c, h, w = x.shape
    return to_uint8(x.detach().cpu()).reshape(n * c, 1, h, w)


def _encoded_batches(planes: torch.Tensor, quality: int) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """(first plane, their JPEGs) for every batch of `ENCODE_BATCH` planes, encoded at `quality`."""
    with warnings.catch_warnings():
        # torchvision 0.29 points to TorchCodec for image codecs; its JPEG codec is still the one we pin.
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import encode_jpeg
    for start in range(0, len(planes), ENCODE_BATCH):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield start, encode_jpeg(list(planes[start:start + ENCODE_BATCH]), quality=quality)


def _jpeg_versions(x: torch.Tensor, qualities: tuple[int, ...]) -> torch.Tensor:
    """Encode and decode every channel as a grayscale JPEG at each quality, in batches (uint8 result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg

    n, c, h, w = x.shape
    planes = _planes(x)
    out = torch.empty(n * c, len(qualities), h, w, dtype=torch.uint8)
    for v, quality in enumerate(qualities):
        for start, encoded in _encoded_batches(planes, quality):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                decoded = decode_jpeg(encoded)
            out[start:start + len(encoded), v] = torch.stack(decoded)[:, 0]
    return out.reshape(n, c * len(qualities), h, w)


def _save(tensor: torch.Tensor, path: Path) -> None:
    """Write a cache file whole or not at all (a temporary file, then an atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensor, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def _thumb_versions(x: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """Average-pool by each factor and blow back up (nearest), as a thumbnail would be shown."""
    n, c, h, w = x.shape
    versions = []
    for s in scales:
        small = F.avg_pool2d(x, kernel_size=s, stride=s, ceil_mode=True) if s > 1 else x
        versions.append(F.interpolate(small, size=(h, w), mode="nearest") if s > 1 else x)
    return torch.stack(versions, dim=2).reshape(n, c * len(scales), h, w)


def _cache_path(extend: Extend, x: torch.Tensor, suffix: str = "versions") -> Path | None:
    root = os.environ.get("MASKSEL_CACHE_DIR")
    if not root:
        return None
    digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:24]
    levels = "-".join(map(str, extend.levels))
    tail = "" if suffix == "versions" else f"-{suffix}"
    name = f"{extend.kind}-{levels}-{digest}{tail}.pt"
    return Path(root) / "extend" / name

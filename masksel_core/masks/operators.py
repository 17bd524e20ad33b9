"""`extend`: several versions of each input channel, computed once per data set and cached.

Versions are a fixed transform of the data (no learned parameters), so they are computed for the whole data set before
training, stored as uint8 where the versions are images (JPEG), and the masks after them work on batch slices like on
any other input. Channel `c`'s version `v` lands in channel `c * V + v`, so a `channel-xor` with one group per original
channel picks one version of each, and `merge` folds them back.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        return torch.tensor([q / 100.0 if self.kind == "jpeg" else 1.0 / (q * q) for q in self.levels])

    def measured_costs(self, x: torch.Tensor, *, itemsize: int = 4, per_channel: bool = False) -> torch.Tensor:
        """Each version's mean bytes on the wire for one channel of one sample (as `transfer.pack` sends it),
        relative to the channel's raw values (`H * W * itemsize` bytes): shape (V,), or (C, V) with `per_channel`
        (a noisy channel's JPEG is larger than a smooth one's at the same quality).

        JPEG: the encoded image plus its 4-byte length, averaged over the samples of `x` (the training set),
        cached under MASKSEL_CACHE_DIR when set. Thumbnails: exact, the same for every channel.
        """
        _, c, h, w = x.shape
        raw = float(h * w * itemsize)
        if self.kind == "thumb":
            costs = torch.tensor([thumb_size(h, w, s) * itemsize / raw for s in self.levels])
            return costs.expand(c, -1).clone() if per_channel else costs
        costs = _cached(_cache_path(self, x, tail="-bytes-per-channel"), lambda: _jpeg_costs(x, self.levels, raw))
        return costs if per_channel else costs.mean(dim=0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, C, H, W)` floats in [0, 1] -> `(N, C * V, H, W)` floats, cached on disk when allowed."""
        versions = _jpeg_versions if self.kind == "jpeg" else _thumb_versions
        if self.kind == "jpeg" and x.numel():  # to_uint8 would clamp values outside [0, 1] away (thumbnails: floats)
            low, high = float(x.min()), float(x.max())
            if low < -1e-6 or high > 1 + 1e-6:
                raise ValueError(f"jpeg-xor encodes 8-bit images, so its inputs must lie in [0, 1]; this data holds "
                                 f"values from {low:.4g} to {high:.4g}: scale it to [0, 1], or choose a mask without "
                                 "jpeg-xor")
        stored = _cached(_cache_path(self, x), lambda: versions(x, self.levels))
        return stored.float() / 255.0 if stored.dtype == torch.uint8 else stored


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def jpeg_codecs() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """torchvision's `encode_jpeg` and `decode_jpeg`, silenced: torchvision 0.29 points to TorchCodec for image
    codecs (a DeprecationWarning on import and on use), but its JPEG codec is the one we pin and train with."""
    with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
        from torchvision.io import decode_jpeg, encode_jpeg
    return _silenced(encode_jpeg), _silenced(decode_jpeg)


def _silenced(codec: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(action="ignore", category=DeprecationWarning):
            return codec(*args, **kwargs)

    return call


def thumb_size(h: int, w: int, scale: int) -> int:
    """Values of one channel's thumbnail at `scale` (sides rounded up)."""
    return -(-h // scale) * -(-w // scale)


def shrink(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The thumbnail of `(N, C, H, W)` at `scale`: average-pooled, sides rounded up."""
    return F.avg_pool2d(x, kernel_size=scale, stride=scale, ceil_mode=True) if scale > 1 else x


def enlarge(small: torch.Tensor, scale: int, size: tuple[int, int]) -> torch.Tensor:
    """A thumbnail blown back up to `size` (nearest), as it would be shown."""
    return F.interpolate(small, size=size, mode="nearest") if scale > 1 else small


def _planes(x: torch.Tensor) -> torch.Tensor:
    """`(N, C, H, W)` floats -> `(N * C, 1, H, W)` uint8 grayscale planes, sample-major (plane i is channel i % C)."""
    n, c, h, w = x.shape
    return to_uint8(x.detach().cpu()).reshape(n * c, 1, h, w)


def _encoded_batches(planes: torch.Tensor, quality: int) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """(first plane, their JPEGs) for every batch of `ENCODE_BATCH` planes, encoded at `quality`."""
    encode_jpeg, _ = jpeg_codecs()
    for start in range(0, len(planes), ENCODE_BATCH):
        yield start, encode_jpeg(list(planes[start:start + ENCODE_BATCH]), quality=quality)


def _jpeg_costs(x: torch.Tensor, qualities: tuple[int, ...], raw: float) -> torch.Tensor:
    """(C, V) mean encoded bytes per channel and quality over the samples of `x`, relative to `raw`."""
    n, c, h, w = x.shape
    planes = _planes(x)
    costs = torch.zeros(c, len(qualities), dtype=torch.float64)
    for v, quality in enumerate(qualities):
        sizes = torch.empty(n * c, dtype=torch.float64)
        for start, encoded in _encoded_batches(planes, quality):
            sizes[start:start + len(encoded)] = torch.tensor([float(e.numel() + 4) for e in encoded])
        costs[:, v] = sizes.reshape(n, c).mean(dim=0) / raw if n else 0.0
    return costs.float()


def _jpeg_versions(x: torch.Tensor, qualities: tuple[int, ...]) -> torch.Tensor:
    """Encode and decode every channel as a grayscale JPEG at each quality, in batches (uint8 result)."""
    _, decode_jpeg = jpeg_codecs()
    n, c, h, w = x.shape
    planes = _planes(x)
    out = torch.empty(n * c, len(qualities), h, w, dtype=torch.uint8)
    for v, quality in enumerate(qualities):
        for start, encoded in _encoded_batches(planes, quality):
            out[start:start + len(encoded), v] = torch.stack(decode_jpeg(encoded))[:, 0]
    return out.reshape(n, c * len(qualities), h, w)


def _thumb_versions(x: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    n, c, h, w = x.shape
    versions = [enlarge(shrink(x, s), s, (h, w)) for s in scales]
    return torch.stack(versions, dim=2).reshape(n, c * len(scales), h, w)


def _cached(path: Path | None, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`compute()`, kept in the cache file `path` (None: no cache); written whole or not at all."""
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    tensor = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(tensor, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    return tensor


def _cache_path(extend: Extend, x: torch.Tensor, tail: str = "") -> Path | None:
    root = os.environ.get("MASKSEL_CACHE_DIR")
    if not root:
        return None
    digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:24]
    levels = "-".join(map(str, extend.levels))
    return Path(root) / "extend" / f"{extend.kind}-{levels}-{digest}{tail}.pt"

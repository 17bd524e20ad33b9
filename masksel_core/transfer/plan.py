"""What a trained mask sends of each sample (`TransferPlan`), from a live chain or from a `mask.json`.

`transfer.pack` and `transfer.unpack` follow a plan; a plan encodes itself into every payload, so a
receiver can check that a payload was packed for the mask it holds.
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..masks.dynamic import bitmap_bytes
from ..masks.operators import thumb_size
from ..masks.stages import Merge, SelectStage, cell_index

KINDS = ("values", "jpeg", "thumb", "dynamic")
DTYPES = {"float32": (0, np.float32), "float16": (1, np.float16), "uint8": (2, np.uint8)}
_PLAN_HEAD = struct.Struct("<BHHHB")  # kind, C, H, W, number of levels
DIGEST_BYTES = 8


class TransferError(ValueError):
    """A payload that is not masksel's, is damaged, or was packed for another mask; or values that the wire type
    asked for cannot carry."""


@dataclass(frozen=True, eq=False)
class TransferPlan:
    """What is sent of each sample: `keep` (C, H, W) over the network's input channels and, for
    `jpeg`/`thumb` chains, the picked version of each original channel (`versions`, index into `levels`).

    A `dynamic` plan (`dynamic.DynamicMask`) sends per sample which cells it selected, then their values:
    `levels` is the cell grid (GH, GW) of every channel, `keep` all True (the most a sample may send), and
    `digest` names the mask network that chose (payloads of another one are refused)."""

    kind: str
    keep: np.ndarray  # bool (C, H, W)
    levels: tuple[int, ...] = ()
    versions: tuple[int, ...] = ()
    digest: bytes = b""
    _id: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown transfer kind {self.kind!r}")
        keep = np.asarray(self.keep, dtype=bool)
        if keep.ndim != 3:
            raise ValueError(f"keep must be (C, H, W), got shape {list(keep.shape)}")
        object.__setattr__(self, "keep", keep)
        if self.kind in ("jpeg", "thumb") and len(self.versions) != keep.shape[0]:
            raise ValueError(f"{self.kind} plan needs one picked version per channel ({keep.shape[0]})")
        if self.kind == "dynamic" and (len(self.levels) != 2 or len(self.digest) != DIGEST_BYTES):
            raise ValueError(f"a dynamic plan needs its cell grid (GH, GW) and a {DIGEST_BYTES}-byte digest")
        if self.kind == "dynamic" and not all(1 <= g <= s for g, s in zip(self.levels, keep.shape[1:], strict=True)):
            raise ValueError(f"a dynamic plan's cell grid {list(self.levels)} must lie within its input "
                             f"{list(keep.shape[1:])}")
        object.__setattr__(self, "_id", hashlib.sha256(self.encode()).digest()[:8])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.keep.shape)  # type: ignore[return-value]

    @property
    def plan_id(self) -> str:
        return self._id.hex()

    @property
    def kept_values(self) -> int:
        return int(self.keep.sum())

    @property
    def cell_shape(self) -> tuple[int, int, int]:
        """A dynamic plan's (C, GH, GW): one bit of each sample's bitmap per cell."""
        return (self.shape[0], *self.levels)  # type: ignore[return-value]

    def bitmap_bytes(self) -> int:
        return bitmap_bytes(self.cell_shape)

    def expand_cells(self, cells: np.ndarray) -> np.ndarray:
        """(B, C, GH, GW) selected cells to (B, C, H, W) booleans, as `DynamicMask.expand` broadcasts them."""
        _, h, w = self.shape
        gh, gw = self.levels
        return cells.astype(bool)[:, :, cell_index(h, gh).numpy()][:, :, :, cell_index(w, gw).numpy()]

    def kept_channels(self) -> list[int]:
        return [c for c in range(self.shape[0]) if self.keep[c].any()]

    def encode(self) -> bytes:
        c, h, w = self.keep.shape
        head = _PLAN_HEAD.pack(KINDS.index(self.kind), c, h, w, len(self.levels))
        levels = struct.pack(f"<{len(self.levels)}H", *self.levels)
        return head + levels + bytes(self.versions) + self.digest + np.packbits(self.keep.reshape(-1)).tobytes()

    @classmethod
    def decode(cls, blob: bytes) -> TransferPlan:
        try:
            kind, c, h, w, n_levels = _PLAN_HEAD.unpack_from(blob)
            offset = _PLAN_HEAD.size
            levels = struct.unpack_from(f"<{n_levels}H", blob, offset)
            offset += 2 * n_levels
            n_versions = c if KINDS[kind] in ("jpeg", "thumb") else 0
            versions = tuple(blob[offset:offset + n_versions])
            offset += n_versions
            digest = blob[offset:offset + DIGEST_BYTES] if KINDS[kind] == "dynamic" else b""
            offset += len(digest)
            bits = np.frombuffer(blob, dtype=np.uint8, offset=offset)
            keep = np.unpackbits(bits)[: c * h * w]
            if keep.size != c * h * w:
                raise ValueError("short keep map")
            return cls(KINDS[kind], keep.reshape(c, h, w).astype(bool), tuple(levels), versions, bytes(digest))
        except (struct.error, IndexError, ValueError) as exc:
            raise TransferError(f"the payload's mask description is damaged ({exc})") from None

    def raw_bytes_per_sample(self, dtype: str = "float32") -> int:
        """What sending the whole input costs: every value of every original channel."""
        return int(np.prod(self.shape)) * np.dtype(DTYPES[dtype][1]).itemsize

    def predicted_bytes_per_sample(self, dtype: str = "float32", version_bytes: Sequence[float] | None = None) -> float:
        """Bytes of one sample's body: kept values for plain masks; for JPEG, `version_bytes[v]` (mean
        encoded size of one channel at version v, e.g. measured on the training set) per kept channel."""
        itemsize = np.dtype(DTYPES[dtype][1]).itemsize
        if self.kind == "values":
            return float(self.kept_values * itemsize)
        if self.kind == "dynamic":
            raise ValueError("a dynamic plan's size depends on each sample: see DynamicMask.fraction")
        channels = self.kept_channels()
        if self.kind == "thumb":
            _, h, w = self.shape
            return float(sum(thumb_size(h, w, self.levels[self.versions[c]]) for c in channels) * itemsize)
        if version_bytes is None:
            raise ValueError("a JPEG plan's size needs the mean encoded bytes of each version")
        return float(sum(version_bytes[self.versions[c]] for c in channels) + 4 * len(channels))


def full_plan(shape: Sequence[int]) -> TransferPlan:
    """Every value: what is sent without a mask."""
    return TransferPlan("values", np.ones(tuple(int(s) for s in shape), dtype=bool))


def plan_from_chain(chain: Any) -> TransferPlan:
    """The plan of a trained `MaskChain`'s discrete (noise-free) mask, or of a `DynamicMask`."""
    if getattr(chain, "cell_shape", None) is not None:
        return dynamic_plan(chain.input_shape, chain.cell_shape[1:], chain.digest())
    stages = list(chain.stages)
    extend = chain.extend
    keep = np.ones(chain.input_shape, dtype=bool)
    # An extend chain's stages start with its channel-xor (the picked versions) and merge; the rest select.
    for stage in stages[2:] if extend is not None else stages:
        if isinstance(stage, SelectStage):
            # Expanded where the stage lives (its index buffers may be on a GPU), then brought to the CPU.
            keep &= stage.keep_map().cpu().numpy().astype(bool)
    if extend is None:
        return TransferPlan("values", keep)
    merge = stages[1]
    assert isinstance(merge, Merge)
    picked = stages[0].selected().reshape(merge.groups, extend.versions).argmax(axis=1)
    return TransferPlan(extend.kind, keep, tuple(extend.levels), tuple(int(v) for v in picked))


def dynamic_plan(shape: Sequence[int], grid: Sequence[int], digest: str | bytes) -> TransferPlan:
    """The plan of a dynamic mask on inputs of `shape` with a `grid` of cells, by its mask network's digest."""
    raw = bytes.fromhex(digest) if isinstance(digest, str) else digest
    return TransferPlan("dynamic", np.ones(tuple(int(s) for s in shape), dtype=bool), tuple(int(g) for g in grid),
                        digest=raw)


def plan_from_mask_document(document: dict[str, Any]) -> TransferPlan:
    """The plan of a `mask.json` (single masks and chains), as the service and clients read it."""
    try:
        shape = tuple(int(s) for s in document["input_shape"])
        dynamic = document.get("dynamic")
        if dynamic is not None:
            return dynamic_plan(shape, dynamic["cells"][1:], dynamic["digest"])
        stages = document.get("stages") or [{"mask_type": document["mask_type"], "selected": document["selected"]}]
        kind, levels, versions = "values", (), ()
        keep = np.ones(shape, dtype=bool)
        rest = list(stages)
        if rest and rest[0].get("mask_type") == "extend":
            extend, xor = rest[0], rest[1]
            kind, levels = str(extend["kind"]), tuple(int(v) for v in extend["levels"])
            picked = np.asarray(xor["selected"], dtype=np.uint8).reshape(shape[0], len(levels))
            versions = tuple(int(v) for v in picked.argmax(axis=1))
            rest = rest[3:]  # extend, channel-xor, merge
        for stage in rest:
            if stage.get("mask_type") == "merge":
                continue
            keep &= expand_selection(stage["mask_type"], np.asarray(stage["selected"], dtype=np.uint8), shape)
        return TransferPlan(kind, keep, levels, versions)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"not a mask.json this version understands ({exc})") from None


def expand_selection(mask_type: str, selected: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A contract-shaped selection broadcast to `(C, H, W)` booleans."""
    c, h, w = shape
    if mask_type in ("channel-any", "channel-xor"):
        return np.broadcast_to(selected.reshape(c, 1, 1).astype(bool), shape).copy()
    if mask_type in ("pixel-any", "pixel-xor"):
        return selected.reshape(shape).astype(bool)
    if mask_type == "block-any":
        gh, gw = selected.shape[1:]  # the cells exactly as BlockAny broadcasts them
        return selected[:, cell_index(h, gh).numpy()][:, :, cell_index(w, gw).numpy()].astype(bool)
    raise ValueError(f"unknown mask type {mask_type!r}")

"""Send only what a trained mask selects: `pack` a batch into bytes, `unpack` it into the network's input.

The paper counts the transferred share of input *values*; users pay for *bytes*. A payload holds exactly
the selected parts, so its size is what the mask predicts plus a small header. Its body holds:
- for plain masks and chains of them: the kept values, in a fixed order, as float32 (or float16 / uint8
  when asked: lossy);
- for `jpeg-xor` chains: per sample and kept channel, the JPEG at the quality the mask picked, decoded by
  the receiver (the pixels the network was trained on); select stages after the merge zero values after
  decoding (they save bytes only where they drop a whole channel: a JPEG is sent whole);
- for `thumb-xor` chains: per sample and kept channel, the thumbnail at the picked scale, blown back up by
  the receiver as in training;
- for dynamic masks (`dynamic.py`): which cells each sample sends (the server's mask network chose them:
  `pack(..., cells=)`), as every sample's count of cells, then per sample the smaller of the list of its cells'
  indices and its bitmap (`dynamic.selection_bytes`; the count says which), then the values of those cells,
  sample after sample (a variable length). Integers are as narrow as the mask's number of cells allows.

A payload carries its plan (the keep map and the picked versions), so a client with only the trained model
can rebuild the input, and `unpack(payload, plan)` checks that it was packed for `plan`. Layout (little-endian):

    b"MSEL" | u8 format | u8 kind | u8 dtype | u8 flags | 8-byte plan id | u32 count
    | u16 C | u16 H | u16 W | u32 plan length | plan | [count x i64 labels] | u64 body length | body

`flags`: 1 = body compressed with zlib (lossless; sizes then depend on the data), 2 = labels.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..masks.dynamic import count_bytes, index_bytes, listed_bytes, uses_indices
from ..masks.operators import enlarge, jpeg_codecs, shrink, thumb_size, to_uint8
from .plan import (
    DTYPES,
    KINDS,
    TransferError,
    TransferPlan,
    expand_selection,
    full_plan,
    plan_from_chain,
    plan_from_mask_document,
)

__all__ = ["TransferError", "TransferPlan", "Unpacked", "expand_selection", "full_plan", "pack", "plan_from_chain",
           "plan_from_mask_document", "transfer_summary", "unpack"]

MAGIC = b"MSEL"
# Format 2: a dynamic sample's selection is its count, then its cells' indices or its bitmap (format 1: the bitmap).
# The other kinds did not change and are still written as format 1, which older readers read.
FORMAT, DYNAMIC_FORMAT = 1, 2
FLAG_ZLIB, FLAG_LABELS = 1, 2
_HEAD = struct.Struct("<4sBBBB8sIHHHI")
JpegSource = Callable[[int, int], Sequence[bytes]]  # (channel, quality) -> the batch's encoded images


FLOAT16_MAX = 65504.0  # the largest finite float16

def pack(x: torch.Tensor, plan: TransferPlan, *, labels: torch.Tensor | None = None, dtype: str = "float32",
         compress: bool = False, encoded: JpegSource | None = None, cells: torch.Tensor | None = None) -> bytes:
    """The selected parts of a batch `(B, C, H, W)` of inputs in [0, 1] (the original channels).

    `encoded(channel, quality)`, where given, returns the batch's JPEG images of that channel already
    encoded (a server keeps them: the versions of a data set never change); otherwise they are encoded here.
    `cells` (B, C, GH, GW) of 0/1 are a dynamic plan's selection of each sample (`DynamicMask.hard_cells`).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if x.ndim != 4 or tuple(x.shape[1:]) != plan.shape:
        raise ValueError(f"batch of shape {list(x.shape)} does not fit the plan's input {list(plan.shape)}")
    x = x.detach().cpu().float()
    if plan.kind == "values":
        values = x.numpy()[:, plan.keep]  # (B, kept), C-order over (C, H, W)
        body = _as_dtype(values, dtype).tobytes()
    elif plan.kind == "dynamic":
        body = _dynamic_body(x, plan, cells, dtype)
    elif plan.kind == "jpeg":
        body = _jpeg_body(x, plan, encoded)
    else:
        body = _thumb_body(x, plan, dtype)
    flags = 0
    if compress:
        body, flags = zlib.compress(body, 6), flags | FLAG_ZLIB
    label_bytes = b""
    if labels is not None:
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels must be ({x.shape[0]},), got {list(labels.shape)}")
        label_bytes, flags = labels.detach().cpu().numpy().astype("<i8").tobytes(), flags | FLAG_LABELS
    plan_blob = plan.encode()
    c, h, w = plan.shape
    head = _HEAD.pack(MAGIC, _format(plan.kind), KINDS.index(plan.kind), DTYPES[dtype][0], flags, plan._id, x.shape[0],
                      c, h, w, len(plan_blob))
    return head + plan_blob + label_bytes + struct.pack("<Q", len(body)) + body


@dataclass(frozen=True)
class Unpacked:
    x: torch.Tensor  # (B, C, H, W) float32: kept values, zeros elsewhere (merged picked versions for extends)
    labels: torch.Tensor | None
    plan: TransferPlan


def unpack(payload: bytes, plan: TransferPlan | None = None) -> Unpacked:
    """Rebuild the network's input from a payload; with `plan`, refuse a payload packed for another mask."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TransferError("a payload is bytes")
    payload = bytes(payload)
    if len(payload) < _HEAD.size or payload[:4] != MAGIC:
        raise TransferError("not a masksel payload (no MSEL header)")
    magic, fmt, kind, dtype_code, flags, plan_id, count, c, h, w, plan_len = _HEAD.unpack_from(payload)
    if kind >= len(KINDS) or fmt != _format(KINDS[kind]):
        raise TransferError(f"payload format {fmt} is not supported for this kind of payload (this version reads "
                            f"format {FORMAT}, and {DYNAMIC_FORMAT} for dynamic masks)")
    offset = _HEAD.size
    carried = TransferPlan.decode(payload[offset:offset + plan_len])
    offset += plan_len
    if carried._id != plan_id or carried.shape != (c, h, w) or KINDS.index(carried.kind) != kind:
        raise TransferError("the payload's header and mask description disagree: it is damaged")
    if plan is not None and plan._id != plan_id:
        raise TransferError(f"the payload was packed for mask {plan_id.hex()}, not for this mask ({plan.plan_id})")
    labels = None
    if flags & FLAG_LABELS:
        raw = payload[offset:offset + 8 * count]
        if len(raw) != 8 * count:
            raise TransferError("payload truncated in its labels")
        labels = torch.from_numpy(np.frombuffer(raw, dtype="<i8").astype(np.int64))
        offset += 8 * count
    if len(payload) < offset + 8:
        raise TransferError("payload truncated before its body")
    (body_len,) = struct.unpack_from("<Q", payload, offset)
    body = payload[offset + 8:]
    if len(body) != body_len:
        raise TransferError(f"payload truncated or padded: body of {len(body)} bytes, header says {body_len}")
    if flags & FLAG_ZLIB:
        try:
            body = zlib.decompress(body)
        except zlib.error as exc:
            raise TransferError(f"the payload's compressed body is damaged ({exc})") from None
    dtype = next((name for name, (code, _) in DTYPES.items() if code == dtype_code), None)
    if dtype is None:
        raise TransferError(f"unknown value type code {dtype_code}")
    if carried.kind == "values":
        x = _values_from(body, carried, count, dtype)
    elif carried.kind == "dynamic":
        x = _dynamic_from(body, carried, count, dtype)
    elif carried.kind == "jpeg":
        x = _jpeg_from(body, carried, count)
    else:
        x = _thumb_from(body, carried, count, dtype)
    return Unpacked(x, labels, carried)


def _as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values as the wire type carries them; refused where it cannot (clipped or overflowed, they came back
    quietly wrong: a float data set of -3..7 sent as uint8 lost 0.08 of its accuracy)."""
    if dtype != "float32" and values.size:  # float32 carries whatever it is given: nothing to look at
        low, high = float(values.min()), float(values.max())
        if dtype == "uint8" and (low < -1e-6 or high > 1 + 1e-6):
            raise TransferError(f"uint8 carries values in [0, 1] (as 8-bit images); these run from {low:.4g} to "
                                f"{high:.4g}: ask for float16 or float32")
        if dtype == "float16" and max(-low, high) > FLOAT16_MAX:
            raise TransferError(f"float16 holds values up to {FLOAT16_MAX:g}; these reach {max(-low, high):.4g}: "
                                "ask for float32")
    if dtype == "uint8":
        return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    return values.astype(np.dtype(DTYPES[dtype][1]).newbyteorder("<"))


def _from_dtype(raw: bytes, dtype: str, count: int) -> np.ndarray:
    numpy_type = np.dtype(DTYPES[dtype][1]).newbyteorder("<")
    if len(raw) != count * numpy_type.itemsize:
        raise TransferError(f"payload body holds {len(raw)} bytes, the mask needs {count * numpy_type.itemsize}")
    values = np.frombuffer(raw, dtype=numpy_type).astype(np.float32)
    return values / 255.0 if dtype == "uint8" else values


def _values_from(body: bytes, plan: TransferPlan, count: int, dtype: str) -> torch.Tensor:
    values = _from_dtype(body, dtype, count * plan.kept_values).reshape(count, plan.kept_values)
    out = np.zeros((count, *plan.shape), dtype=np.float32)
    out[:, plan.keep] = values
    return torch.from_numpy(out)


def _dynamic_body(x: torch.Tensor, plan: TransferPlan, cells: torch.Tensor | None, dtype: str) -> bytes:
    if cells is None or tuple(cells.shape) != (x.shape[0], *plan.cell_shape):
        raise ValueError(f"a dynamic plan packs each sample's cells: give cells of shape "
                         f"{[x.shape[0], *plan.cell_shape]}")
    chosen = cells.detach().cpu().numpy().astype(bool)
    flat = chosen.reshape(len(chosen), int(np.prod(plan.cell_shape)))
    counts = flat.sum(axis=1)
    listed = uses_indices(counts, plan.cell_shape)
    # Every sample's selection, one after the other: the bytes of its indices, or its bitmap.
    is_index = np.repeat(listed, listed_bytes(counts, plan.cell_shape))
    selections = np.empty(len(is_index), dtype=np.uint8)
    selections[~is_index] = np.packbits(flat[~listed], axis=1).reshape(-1)
    selections[is_index] = np.nonzero(flat[listed])[1].astype(_unsigned(index_bytes(plan.cell_shape))).view(np.uint8)
    keep = plan.expand_cells(chosen)  # (B, C, H, W)
    values = _as_dtype(x.numpy()[keep], dtype).tobytes()  # sample by sample
    return counts.astype(_unsigned(count_bytes(plan.cell_shape))).tobytes() + selections.tobytes() + values


def _dynamic_from(body: bytes, plan: TransferPlan, count: int, dtype: str) -> torch.Tensor:
    cells = int(np.prod(plan.cell_shape))
    offset = count_bytes(plan.cell_shape) * count
    if len(body) < offset:
        raise TransferError("payload body truncated inside its counts of selected cells")
    counts = np.frombuffer(body[:offset], dtype=_unsigned(count_bytes(plan.cell_shape))).astype(np.int64)
    if (counts > cells).any():
        raise TransferError(f"a sample of the payload selects more than the mask's {cells} cells")
    listed = uses_indices(counts, plan.cell_shape)
    is_index = np.repeat(listed, listed_bytes(counts, plan.cell_shape))
    if len(body) < offset + len(is_index):
        raise TransferError("payload body truncated inside its selections")
    selections = np.frombuffer(body, dtype=np.uint8, count=len(is_index), offset=offset)
    chosen = np.zeros((count, cells), dtype=bool)
    bitmaps = selections[~is_index].reshape(int((~listed).sum()), plan.bitmap_bytes())
    chosen[~listed] = np.unpackbits(bitmaps, axis=1)[:, :cells].astype(bool)
    indices = selections[is_index].view(_unsigned(index_bytes(plan.cell_shape))).astype(np.int64)
    if len(indices) and int(indices.max()) >= cells:
        raise TransferError(f"a sample of the payload names a cell beyond the mask's {cells}")
    chosen[np.repeat(np.flatnonzero(listed), counts[listed]), indices] = True
    if (chosen.sum(axis=1) != counts).any():  # a bitmap with other bits set, or an index named twice
        raise TransferError("a sample's selection does not hold the count of cells it announces")
    keep = plan.expand_cells(chosen.reshape(count, *plan.cell_shape))
    out = np.zeros((count, *plan.shape), dtype=np.float32)
    out[keep] = _from_dtype(body[offset + len(is_index):], dtype, int(keep.sum()))
    return torch.from_numpy(out)


def _format(kind: str) -> int:
    return DYNAMIC_FORMAT if kind == "dynamic" else FORMAT


def _unsigned(width: int) -> np.dtype:
    return np.dtype(f"<u{width}")


def encode_channel(x: torch.Tensor, channel: int, quality: int) -> list[bytes]:
    """Channel `channel` of every sample of `x` as a grayscale JPEG, as `extend` and `pack` encode it."""
    if x.shape[0] == 0:
        return []
    encode_jpeg, _ = jpeg_codecs()
    images = encode_jpeg(list(to_uint8(x[:, channel:channel + 1].detach().cpu().float())), quality=quality)
    return [image.numpy().tobytes() for image in images]


def _jpeg_body(x: torch.Tensor, plan: TransferPlan, source: JpegSource | None) -> bytes:
    channels = plan.kept_channels()
    if x.shape[0] == 0 or not channels:
        return b""
    get = source or (lambda c, quality: encode_channel(x, c, quality))
    encoded = {c: get(c, plan.levels[plan.versions[c]]) for c in channels}
    if any(len(images) != x.shape[0] for images in encoded.values()):
        raise ValueError("the encoded images given do not match the batch")
    parts = []
    for i in range(x.shape[0]):
        for c in channels:
            parts += [struct.pack("<I", len(encoded[c][i])), encoded[c][i]]
    return b"".join(parts)


def _jpeg_from(body: bytes, plan: TransferPlan, count: int) -> torch.Tensor:
    _, decode_jpeg = jpeg_codecs()
    channels = plan.kept_channels()
    out = torch.zeros(count, *plan.shape)
    blobs, offset = [], 0
    try:
        for _ in range(count * len(channels)):
            (size,) = struct.unpack_from("<I", body, offset)
            blobs.append(torch.frombuffer(bytearray(body[offset + 4:offset + 4 + size]), dtype=torch.uint8))
            if blobs[-1].numel() != size:
                raise struct.error("short image")
            offset += 4 + size
    except struct.error:
        raise TransferError("payload body truncated inside a JPEG image") from None
    if offset != len(body):
        raise TransferError("payload body holds more than its images")
    try:
        decoded = decode_jpeg(blobs) if blobs else []
    except RuntimeError as exc:
        raise TransferError(f"a JPEG image in the payload is damaged ({exc})") from None
    for k, image in enumerate(decoded):
        i, c = divmod(k, len(channels))
        out[i, channels[c]] = image[0].float() / 255.0
    return out * torch.from_numpy(plan.keep)


def _thumb_body(x: torch.Tensor, plan: TransferPlan, dtype: str) -> bytes:
    parts = [shrink(x[:, c:c + 1], plan.levels[plan.versions[c]]).flatten(1).numpy()
             for c in plan.kept_channels()]
    if not parts:
        return b""
    return _as_dtype(np.concatenate(parts, axis=1), dtype).tobytes()


def _thumb_from(body: bytes, plan: TransferPlan, count: int, dtype: str) -> torch.Tensor:
    _, h, w = plan.shape
    channels = plan.kept_channels()
    sizes = [thumb_size(h, w, plan.levels[plan.versions[c]]) for c in channels]
    values = torch.from_numpy(_from_dtype(body, dtype, count * sum(sizes)).reshape(count, sum(sizes)))
    out = torch.zeros(count, *plan.shape)
    start = 0
    for c, size in zip(channels, sizes, strict=True):
        s = plan.levels[plan.versions[c]]
        small = values[:, start:start + size].reshape(count, 1, -(-h // s), -(-w // s))
        out[:, c:c + 1] = enlarge(small, s, (h, w))
        start += size
    return out * torch.from_numpy(plan.keep)


def transfer_summary(chain: Any, x: torch.Tensor, *, budget_bytes: float | None = None, batch: int = 1024,
                     probe: torch.Tensor | None = None) -> dict[str, Any]:
    """What the final mask sends per test sample, measured by packing the test inputs `x` (float32 values).

    `bytes_per_sample` counts the payload bodies (what grows with the samples); `header_bytes` is
    paid once per payload. `value_fraction` is the paper's Q (share of values, or priced versions); a dynamic
    mask's is measured on `probe` (the validation inputs) and counts each sample's selection, so that
    `value_fraction * raw_bytes_per_sample` predicts the bytes measured here on inputs it never saw.
    """
    plan = plan_from_chain(chain)
    device = next(iter(chain.buffers())).device

    def payload(part: torch.Tensor) -> bytes:
        cells = chain.hard_cells(part.to(device)) if plan.kind == "dynamic" else None
        return pack(part, plan, cells=cells)

    header = len(payload(x[:0]))
    body = sum(len(payload(x[start:start + batch])) - header for start in range(0, x.shape[0], batch))
    raw = plan.raw_bytes_per_sample()
    per_sample = body / max(int(x.shape[0]), 1)
    return {
        "plan_id": plan.plan_id, "kind": plan.kind, "samples": int(x.shape[0]),
        "raw_bytes_per_sample": raw, "bytes_per_sample": per_sample, "fraction_of_raw": per_sample / raw,
        "value_fraction": float(chain.fraction(probe)), "header_bytes": header,
        "budget_bytes": budget_bytes, "budget_held": None if budget_bytes is None else per_sample <= budget_bytes,
    }

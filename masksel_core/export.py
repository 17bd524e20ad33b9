"""Writing a trained mask and model to disk in the contract's formats.

Every file is written to a temporary name in the same folder and renamed, so a reader never
sees a half-written artifact, even if the process dies mid-write.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .training.records import METRIC_COLUMNS, EpochRecord
from .training.train import TrainResult


def mask_document(mask_type: str, input_shape: Iterable[int], selected: np.ndarray, fraction: float,
                  stages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `mask.json` object of the contract.

    For a chain (`jpeg-xor+pixel-any`), `selected` is its last select stage and `stages` lists every
    stage (extend with its levels and costs, each select stage's selection, merges) in order.
    """
    document = {
        "mask_type": mask_type,
        "input_shape": [int(s) for s in input_shape],
        "selected": np.asarray(selected, dtype=np.uint8).tolist(),
        "fraction": float(fraction),
    }
    if stages is not None:
        document["stages"] = stages
    return document


def atomic_write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def model_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def metrics_csv(records: Iterable[EpochRecord | dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    for record in records:
        row = record.metrics() if isinstance(record, EpochRecord) else record
        writer.writerow([row.get(column, "") for column in METRIC_COLUMNS])
    return buffer.getvalue()


def write_outputs(result: TrainResult, out_dir: str | Path) -> dict[str, Path]:
    """Write `mask.json`, `mask.npy`, `model.pt`, `metrics.csv` and `config.json` into `out_dir`, and beside
    them `model.ts` (TorchScript of network-with-mask), `mask.png` and `summary.json` (how the run ended, the
    model's test accuracy, the run's warnings). A dynamic mask adds `mask_net.ts`, the server's half: `model.ts`
    is then the client's network alone, on the input as `transfer.unpack` rebuilds it."""
    out = Path(out_dir)
    selected = result.selected  # a dynamic mask's: what at least half the validation inputs send
    document = {**mask_document(result.config.mask_type, result.input_shape, selected, result.fraction),
                **result.mask.document_fields(result.probe)}
    files = {
        "mask.json": json.dumps(document).encode(),
        "mask.npy": npy_bytes(selected.astype(np.uint8)),
        "model.pt": model_bytes(result.model),
        "metrics.csv": metrics_csv(result.records).encode(),
        "config.json": json.dumps(result.config.to_dict(), indent=2).encode(),
        "model.ts": torchscript_bytes(result),
        "mask.png": mask_png(selected),
        "summary.json": json.dumps(result.summary(), indent=2).encode(),
    }
    server = result.mask.server_half()
    if server is not None:
        files["mask_net.ts"] = server_bytes(server, result.mask.input_shape)
    if result.transfer:
        files["transfer.json"] = json.dumps(result.transfer, indent=2).encode()
    for name, payload in files.items():
        atomic_write(out / name, payload)
    return {name: out / name for name in files}


class MaskedNetwork(torch.nn.Module):
    """The trained network behind its frozen mask: takes the full input, zeroes what is not transferred.

    For chains that start with `extend` (JPEG or thumbnail versions) the input is the merged picked versions, i.e. what
    a client rebuilds from the transferred data; the select stages after the merge are applied here.
    """

    def __init__(self, network: torch.nn.Module, keep: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("keep", keep)  # (C, H, W) of 0/1
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x * self.keep * self.scale)


def torchscript_bytes(result: TrainResult) -> bytes:
    """A TorchScript module of network-with-mask: `torch.jit.load(...)(x)` needs nothing of masksel."""
    keep, scale = result.mask.client_keep()
    network = copy.deepcopy(result.model).cpu().eval()
    module = MaskedNetwork(network, keep, scale).eval()
    buffer = io.BytesIO()
    # torch 2.14 points to torch.export; TorchScript is still what users can load anywhere with torch alone.
    with warnings.catch_warnings(action="ignore", category=FutureWarning):
        try:
            scripted = torch.jit.script(module)
        except Exception:  # noqa: BLE001 - some networks only trace; the input shape is fixed anyway
            scripted = torch.jit.trace(module, torch.zeros(1, *keep.shape))
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def server_bytes(module: torch.nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """TorchScript of the server's half of a mask (a dynamic one's `ServerMask`), traced: the shape is fixed."""
    module = module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(action="ignore", category=FutureWarning), torch.no_grad():
        torch.jit.save(torch.jit.trace(module, torch.zeros(2, *input_shape)), buffer)
    return buffer.getvalue()


def mask_png(selected: np.ndarray, *, cell: int = 8) -> bytes:
    """The mask as a picture: channels side by side (a strip for channel masks), kept cells green.

    Written with the standard library (zlib) so the core needs no imaging package.
    """
    array = np.asarray(selected, dtype=np.uint8)
    if array.ndim == 1:
        array = array[:, None, None]
    c, h, w = array.shape
    gap = 1 if c > 1 else 0
    width, height = c * w * cell + (c - 1) * cell * gap, h * cell
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    kept, dropped = np.array([22, 163, 74], np.uint8), np.array([229, 231, 235], np.uint8)
    for channel in range(c):
        big = np.kron(array[channel], np.ones((cell, cell), dtype=np.uint8)).astype(bool)  # (h*cell, w*cell)
        left = channel * (w + gap) * cell
        image[:, left:left + w * cell] = np.where(big[..., None], kept, dropped)
    return _png_rgb(image)


def _png_rgb(image: np.ndarray) -> bytes:
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")

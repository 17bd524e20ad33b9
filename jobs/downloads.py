"""A run's files as the API serves them: what the core wrote, the mask of any epoch, and the bundle of all."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np

from masksel_core import mask_document, mask_png, npy_bytes

from . import run_files, selectors
from .errors import NotFound
from .models import Run

#: Files the core writes beside a finished run, served as they are.
FILES = ("model.pt", "model.ts", "mask_net.ts", "metrics.csv", "config.json", "summary.json")
# Said, not guessed from the name: the system's tables call .ts a Qt translation and .pt a SNES page table.
STORED_TYPES = {"metrics.csv": "text/csv", "config.json": "application/json", "summary.json": "application/json"}
#: Every name the API serves (the URL pattern takes these only).
NAMES = ("mask.json", "mask.npy", "mask.png", *FILES, "bundle.zip")


@dataclass(frozen=True)
class Download:
    """A file to send: bytes made now, or a stored file of the run (`stored`: its name, streamed)."""

    filename: str
    content_type: str
    payload: bytes | None = None
    run_id: int | None = None
    stored: str | None = None


def run_file(run: Run, name: str, epoch: int | None) -> Download:
    """`name` of `run` (one of `NAMES`); the masks of the last epoch, or of `epoch`. NotFound when not there."""
    prefix = f"run{run.pk}"
    final_json = run_files.read_bytes(run.pk, "mask.json") if name == "mask.json" and epoch is None and \
        run.is_final else None
    if final_json is not None:
        # The trained mask as the core wrote it: for chains it also lists every stage.
        return Download(f"{prefix}-mask.json", "application/json", payload=final_json)
    if name.startswith("mask."):
        selected, fraction, shown = selectors.epoch_selected(run, epoch)
        # One naming for every format: a finished run's mask is run<id>-mask.*; a chosen epoch's, or the latest
        # of a run still training (a snapshot), says its epoch.
        stem = f"{prefix}-mask" if epoch is None and run.is_final else f"{prefix}-epoch{shown}-mask"
        if name == "mask.png":
            return Download(f"{stem}.png", "image/png", payload=mask_png(selected))
        if name == "mask.npy":
            return Download(f"{stem}.npy", "application/octet-stream", payload=npy_bytes(selected))
        document = mask_document(run.mask_type, run.dataset.input_shape, selected, fraction)
        return Download(f"{stem}.json", "application/json", payload=json.dumps(document).encode())
    if name == "bundle.zip":
        return Download(f"{prefix}-bundle.zip", "application/zip", payload=bundle(run))
    if name not in FILES or not run_files.exists(run.pk, name):
        raise NotFound(f"{name} is not available for run {run.pk} (status {run.status})")
    return Download(f"{prefix}-{name}", STORED_TYPES.get(name, "application/octet-stream"), run_id=run.pk,
                    stored=name)


BUNDLE_README = """masksel run {run_id}: {mask_type} mask on {dataset}, model {model}.

mask.npy holds the discrete mask (uint8, 1 = transfer this element), mask.json the same with
its input shape and transferred fraction. To apply it, zero what is not selected:

    import numpy as np, torch
    from masksel_core import create_model
    mask = np.load("mask.npy")            # {shape}
    model = create_model("{model}", {input_shape}, {num_classes})
    model.load_state_dict(torch.load("model.pt", weights_only=True))
    x_masked = x * torch.from_numpy(mask).float()  # broadcast over (B, C, H, W){broadcast}

Or, with nothing but torch: model.ts is the network behind its frozen mask and takes the full input
(for JPEG/thumbnail chains: the merged picked versions):

    net = torch.jit.load("model.ts")
    prediction = net(x).argmax(dim=1)

{dynamic}mask.png shows the mask: channels side by side, transferred cells in green. summary.json says how the
run ended, the model's accuracy on the test split and any warning (an empty mask, accuracy near chance,
a target not reached); metrics.csv has one row per epoch, its phase last (warmup, select, finalize).
"""


DYNAMIC_README = """This run's mask is dynamic: each input gets its own selection, so the run has two halves.
- mask_net.ts runs on the server, where the data lives: it takes full inputs (B, C, H, W) and returns the
  cells to send (B, C, GH, GW) of 0/1. masksel_core.transfer.packing.pack(x, plan, cells=...) sends which cells
  each sample keeps (their indices or a bitmap, the smaller) and their values; the plan comes from mask.json
  (plan_from_mask_document).
- model.ts runs on the client: it takes the input as transfer.unpack rebuilds it (zeros where nothing was
  sent) and gives the class scores. It does not mask anything itself.
mask.npy and mask.png show the cells selected for at least half the validation inputs; mask.json also
lists how often each cell was selected ("dynamic": "frequency").

"""


def bundle(run: Run) -> bytes:
    """Every file of the run, its last mask in the three formats, and a README on applying the mask."""
    selected, fraction, _ = selectors.epoch_selected(run, None)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mask.npy", npy_bytes(selected))
        archive.writestr("mask.json", json.dumps(mask_document(run.mask_type, run.dataset.input_shape, selected,
                                                                fraction)))
        archive.writestr("mask.png", mask_png(selected))
        for name in FILES:
            stored = run_files.read_bytes(run.pk, name)
            if stored is not None:
                archive.writestr(name, stored)
        broadcast = "; channel masks: mask[:, None, None]" if run.mask_type.startswith("channel") else ""
        archive.writestr("README.txt", BUNDLE_README.format(
            run_id=run.pk, mask_type=run.mask_type, dataset=run.dataset.name, model=run.model_name,
            shape=list(np.shape(selected)), input_shape=tuple(run.dataset.input_shape),
            num_classes=run.dataset.num_classes, broadcast=broadcast,
            dynamic=DYNAMIC_README if run.mask_type.startswith("dynamic-") else ""))
    return buffer.getvalue()

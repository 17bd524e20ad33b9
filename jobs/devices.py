"""What a worker trains on, in words for the run and the workers page."""
from __future__ import annotations

import torch


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def this_device() -> dict[str, object]:
    """How a worker reports its device: the GPU's name and memory, or the CPU."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"device": device_label(torch.device("cuda")), "gpu_memory_mb": props.total_memory // 2**20}
    return {"device": "cpu", "gpu_memory_mb": None}

"""The paper's Table 1 shapes timed: a masksel selection epoch against a bare PyTorch loop, per precision.

Stand-ins of the paper's data (random values of the real shapes; the timing does not depend on them):
remote 36 x 35 x 35 and supernovae 3 x 50 x 50 with AllConvNet, CIFAR-10 and SVHN 3 x 32 x 32 with ResNet-101.
For each and each precision (fp32, and bf16 where the device has it): masksel's selection epoch through the real
`train()` (pixel-any, or channel-any on remote; the validation pass it makes each epoch included) and, in the same
process, a bare loop of the same network, batch, optimiser and precision over the same samples with the same
validation pass (channels_last on CUDA for both). Each is timed on its second epoch (the first warms up cuDNN and
the allocator). Printed: seconds per epoch, training samples/s, masksel/bare and, for bf16, the gain over fp32;
and the seconds an epoch of the real set would take at that rate.

    python benchmarks/paper_scale.py [--device cuda] [--steps 100] [--shapes cifar10,remote] [--precisions fp32,bf16]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TensorDataset, TrainConfig, create_model, train  # noqa: E402
from masksel_core.training.precision import autocast, memory_format, resolve_precision  # noqa: E402
from masksel_core.training.steps import adam  # noqa: E402

# name: (input shape, classes, network, mask, training samples of the real set)
SHAPES = {
    "remote": ((36, 35, 35), 12, "allconvnet", "channel-any", 25_000),  # 4.4 GB of float32 samples
    "supernovae": ((3, 50, 50), 2, "allconvnet", "pixel-any", 20_000),
    "cifar10": ((3, 32, 32), 10, "resnet101", "pixel-any", 50_000),
    "svhn": ((3, 32, 32), 10, "resnet101", "pixel-any", 73_257),
}
VAL_SHARE = TrainConfig().val_share


def stand_in(name: str, steps: int, batch: int) -> TensorDataset:
    shape, classes, *_ = SHAPES[name]
    fit = steps * batch
    n = int(round(fit / (1 - VAL_SHARE))) + classes  # the validation share comes out of these
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, *shape, generator=generator)
    y = torch.arange(n) % classes
    return TensorDataset(f"{name}-stand-in", x, y, x[:256], y[:256], classes, [f"c{i}" for i in range(shape[0])])


def masksel_epoch(data: TensorDataset, name: str, precision: str, device: str, batch: int) -> tuple[float, int]:
    """Seconds of masksel's second selection epoch, and the samples it trained on."""
    _, _, model, mask, _ = SHAPES[name]
    config = TrainConfig(mask_type=mask, model=model, epochs=2, warmup_epochs=0, finalize_epochs=0,
                         swap_candidates=0, batch_size=batch, precision=precision, device=device)
    result = train(config, data)
    select = [r for r in result.records if r.phase == "select"]
    fit = data.x_train.shape[0] - int(round(data.x_train.shape[0] * VAL_SHARE))
    return select[-1].seconds, fit


def bare_epoch(data: TensorDataset, name: str, precision: str, device_name: str, batch: int) -> float:
    """Seconds of the second epoch of a plain loop: shuffled batches, Adam, then one validation pass."""
    shape, classes, model_name, *_ = SHAPES[name]
    device = torch.device(device_name)
    dtype = resolve_precision(precision, device)
    torch.manual_seed(0)
    model = create_model(model_name, shape, classes)
    model = model.to(device, memory_format=memory_format(model, device))
    optimizer = adam(model.parameters(), 1e-3, amsgrad=True)  # as train()'s: the ratio is masksel's own cost
    n_val = int(round(data.x_train.shape[0] * VAL_SHARE))
    x_fit, y_fit = data.x_train[n_val:].to(device), data.y_train[n_val:].to(device)
    x_val, y_val = data.x_train[:n_val].to(device), data.y_train[:n_val].to(device)
    loss_fn = nn.CrossEntropyLoss()
    seconds = 0.0
    for _ in range(2):
        sync(device)
        started = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(y_fit), device=device).split(batch):
            with autocast(device, dtype):
                loss = loss_fn(model(x_fit[idx]), y_fit[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = torch.zeros((), device=device, dtype=torch.long)
        with torch.no_grad(), autocast(device, dtype):
            for start in range(0, n_val, 1024):
                correct += (model(x_val[start:start + 1024]).argmax(1) == y_val[start:start + 1024]).sum()
        int(correct)
        sync(device)
        seconds = time.perf_counter() - started
    return seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=0, help="training steps per epoch (default: 100 on CUDA, "
                                                             "12 on the CPU)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    steps = args.steps or (100 if args.device == "cuda" else 12)
    device = torch.device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device {label}, torch {torch.__version__}, batch {args.batch_size}, {steps} steps per epoch, "
          "second epoch timed\n")
    print("| shape | network | precision | masksel s/epoch | bare s/epoch | masksel samples/s | bare samples/s "
          "| masksel/bare (samples/s) | bf16/fp32 (masksel) | real set's epoch (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.shapes.split(","):
        data = stand_in(name, steps, args.batch_size)
        rates: dict[str, float] = {}
        for precision in args.precisions.split(","):
            if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
                continue
            masksel, fit = masksel_epoch(data, name, precision, args.device, args.batch_size)
            bare = bare_epoch(data, name, precision, args.device, args.batch_size)
            rates[precision] = fit / masksel
            gain = f"{rates[precision] / rates['fp32']:.2f}" if precision != "fp32" and "fp32" in rates else ""
            print(f"| {name} {'x'.join(map(str, SHAPES[name][0]))} | {SHAPES[name][2]} | {precision} "
                  f"| {masksel:.2f} | {bare:.2f} | {fit / masksel:,.0f} | {fit / bare:,.0f} | {bare / masksel:.2f} "
                  f"| {gain} | {SHAPES[name][4] / rates[precision]:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

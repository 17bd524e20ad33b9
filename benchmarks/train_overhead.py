"""Time per training step of a masked network against the same network without masks.

Same data, same batches, same process; plain and masked steps are interleaved in rounds so that
drift of the machine hits both alike. Prints a table of median milliseconds per step and the
median over rounds of each round's ratio masked/plain (goals: allconvnet on synthetic-remote <= 1.15
on the CPU, resnet18 on 32x32x3 <= 1.10 on a GPU, for every mask type; LeNet-5 on digits is reported).

    python benchmarks/train_overhead.py [--steps 30] [--rounds 5] [--device cpu] [--cases lenet5/digits]
                                        [--masks pixel-any,jpeg-xor+pixel-any]

`rgb32` is random data of CIFAR-10's shape (3x32x32, 10 classes): the timing does not depend on the values.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TensorDataset, TrainConfig, build, load_dataset, spec_problem  # noqa: E402
from masksel_core.masks.chain import MaskChain  # noqa: E402
from masksel_core.training.precision import autocast, memory_format, resolve_precision  # noqa: E402
from masksel_core.training.steps import adam, masked_step  # noqa: E402
from masksel_core.training.train import prepare_inputs  # noqa: E402

MASKS = ("channel-any", "pixel-any", "block-any", "channel-xor", "pixel-xor", "jpeg-xor", "jpeg-xor+pixel-any")
CASES = (("lenet5", "digits"), ("allconvnet", "synthetic-remote"))
TAU = TrainConfig().tau_init  # the temperature selection starts with


def make_step(model: nn.Module, chain: MaskChain | None, batches: list[tuple[torch.Tensor, torch.Tensor]],  # type: ignore[no-untyped-def]
              dtype: torch.dtype | None = None):
    """One optimiser step of the network (and the masks, when given) per call, cycling through batches.

    The masked step is `loop.masked_step`, the one `train()` takes in selection (lambda 0.1, the initial tau,
    alternating exploration); the plain step is the same network trained alone, as any plain training loop would.
    """
    model_opt = adam(model.parameters(), 1e-3, amsgrad=True)  # train()'s optimiser, fused
    loss_fn = nn.CrossEntropyLoss()
    device = batches[0][0].device
    counter = [0]
    if chain is None:
        def plain() -> None:
            x, y = batches[counter[0] % len(batches)]
            counter[0] += 1
            with autocast(device, dtype):
                loss = loss_fn(model(x), y)
            model_opt.zero_grad(set_to_none=True)
            loss.backward()
            model_opt.step()
        return plain

    optimizers = [model_opt, adam(chain.parameters(), 0.01)]
    generator = torch.Generator(device=device).manual_seed(0)

    def masked() -> None:
        x, y = batches[counter[0] % len(batches)]
        counter[0] += 1
        masked_step(model, chain, loss_fn, x, y, optimizers, lam=0.1, tau=TAU, explore=counter[0] % 2 == 0,
                    generator=generator, dtype=dtype)

    return masked


def time_steps(step, count: int, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(count):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / count * 1000.0


def load(name: str) -> TensorDataset:
    if name == "rgb32":
        generator = torch.Generator().manual_seed(0)
        x, y = torch.rand(2048, 3, 32, 32, generator=generator), torch.randint(0, 10, (2048,), generator=generator)
        return TensorDataset("rgb32", x, y, x[:256], y[:256], 10, ["red", "green", "blue"])
    return load_dataset(name)


def measure(model_name: str, data: TensorDataset, mask: str, args: argparse.Namespace) -> tuple[float, float, float]:
    device = torch.device(args.device)
    config = TrainConfig(mask_type=mask, model=model_name)
    chain, masked_model = build(config, data.input_shape, data.num_classes, torch.Generator().manual_seed(0))
    prepared = prepare_inputs(chain, data)
    _, plain_model = build(config, data.input_shape, data.num_classes, torch.Generator().manual_seed(0))
    layout = memory_format(plain_model, device)
    chain = chain.to(device)
    masked_model = masked_model.to(device, memory_format=layout)
    plain_model = plain_model.to(device, memory_format=layout)
    dtype = resolve_precision(args.precision, device)
    order = torch.randperm(prepared.x_train.shape[0])[: 8 * args.batch_size]
    masked_batches = [(prepared.x_train[i].to(device), prepared.y_train[i].to(device))
                      for i in order.split(args.batch_size)]
    plain_batches = [(data.x_train[i].to(device), data.y_train[i].to(device)) for i in order.split(args.batch_size)]
    plain = make_step(plain_model, None, plain_batches, dtype)
    masked = make_step(masked_model, chain, masked_batches, dtype)
    for step in (plain, masked):
        time_steps(step, 3, device)  # warm-up
    plain_ms, masked_ms = [], []
    for _ in range(args.rounds):
        plain_ms.append(time_steps(plain, args.steps, device))
        masked_ms.append(time_steps(masked, args.steps, device))
    # The ratio is the median of each round's own ratio: a round's two timings are seconds apart, so a
    # slow spell of the machine (a shared VM's CPU varies by 1.5x from minute to minute) cancels out.
    ratio = statistics.median(m / p for p, m in zip(plain_ms, masked_ms, strict=True))
    return statistics.median(plain_ms), statistics.median(masked_ms), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or auto, for both networks")
    parser.add_argument("--cases", default=",".join(f"{m}/{d}" for m, d in CASES),
                        help="comma-separated model/data pairs to run")
    parser.add_argument("--masks", default=",".join(MASKS), help="comma-separated mask types to run")
    args = parser.parse_args()
    print(f"device {args.device}, precision {args.precision}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, median of {args.rounds} rounds x {args.steps} steps")
    print("| model/data | mask | plain ms/step | masked ms/step | masked/plain |")
    print("|---|---|---:|---:|---:|")
    for case in args.cases.split(","):
        model_name, data_name = case.split("/")
        data = load(data_name)
        for mask in args.masks.split(","):
            if spec_problem(mask, data.input_shape):  # refused for users: a channel mask on one channel
                continue
            plain, masked, ratio = measure(model_name, data, mask, args)
            print(f"| {model_name}/{data_name} | {mask} | {plain:.2f} | {masked:.2f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()

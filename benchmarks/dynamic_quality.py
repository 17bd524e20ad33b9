"""Dynamic masks against static selectors at equal bytes, on the selection-quality protocol's folds.

For each fold of `benchmarks/protocol.py` (5 x 2 repeated stratified folds of the whole data set), every
selector gets the same budget of bytes per sample, what says which cells a dynamic mask sends included:
- static selectors (masksel's `pixel-any` run and the peers) keep k = budget / 4 pixels (float32 values);
- masksel's dynamic mask is one run with `target_fraction` = the budget's share (its Q counts those bytes);
  it is scored by the bytes its payloads measure on the fold's test part.
The same classifier is then trained from scratch on each selection's masked training inputs (zeros where
nothing is sent: a static mask's fixed pixels, or each input's own cells) and scored on the fold's test
part: the protocol's MLP for mnist5k, and for `synthetic-moving`, whose object moves, lenet5 (an MLP does
not learn that task even from the whole input). Differences against dynamic are per fold with the
corrected resampled t's 95 % interval (Nadeau & Bengio), as in `benchmarks/quality.py`.

Goals: on synthetic-moving at 0.15 of the raw bytes, dynamic >= 0.9 where the best static < 0.7; on mnist5k
at 0.05, dynamic ahead of every static selector (interval above 0) by 0.02 or more.

    python benchmarks/dynamic_quality.py [--data synthetic-moving] [--folds 2] [--workers 2] [--only a,b]
                                         [--dynamic '{"mask_type": "dynamic-block-any", "grid": [14, 14]}']
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import masksel_selector, peers, protocol  # noqa: E402 - masksel_selector registers "masksel"
from masksel_core import TensorDataset, TrainConfig, create_model, train  # noqa: E402

SETTINGS: dict[str, dict[str, Any]] = {
    "synthetic-moving": {"budget": 0.15, "classifier": "lenet5",
                         "dynamic": {"mask_type": "dynamic-pixel-any"},
                         "static": ("masksel", "anova-f", "mutual-info", "extra-trees", "variance", "random")},
    "mnist5k": {"budget": 0.05, "classifier": "mlp", "dynamic": {"mask_type": "dynamic-pixel-any"},
                "static": ("masksel", "anova-f", "mutual-info", "extra-trees", "concrete", "random")},
}
RUN = {"epochs": 100, "warmup_epochs": 40, "finalize_epochs": 30, "device": "cpu"}


@cache
def _data(name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], list[protocol.Fold]]:
    x, y, shape = protocol.load(name)
    return x, y, shape, protocol.folds(y)


def retrain(classifier: str, shape: tuple[int, int, int], x_train: torch.Tensor, y_train: np.ndarray,
            x_test: torch.Tensor, y_test: np.ndarray, seed: int) -> float:
    """Test accuracy of `classifier` trained from scratch on masked inputs, as the protocol trains its MLP
    (`protocol.fit_best`: early stopping on a stratified 15 % of the training part)."""
    fit, val = train_test_split(np.arange(len(y_train)), test_size=0.15, stratify=y_train, random_state=seed)
    torch.manual_seed(seed)
    model = create_model(classifier, shape, int(max(y_train.max(), y_test.max())) + 1)
    protocol.fit_best(model, x_train[fit], torch.as_tensor(y_train[fit]), x_train[val],
                      torch.as_tensor(y_train[val]), torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(part).argmax(dim=1) for part in x_test.split(1024)])
    return float((predicted == torch.as_tensor(y_test)).float().mean())


def fold_task(data: str, fold_index: int, name: str, dynamic: dict[str, Any]) -> dict[str, Any]:
    """One selector on one fold: its masked inputs, their bytes per sample, the retrained classifier's score."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    setting = SETTINGS[data]
    x, y, shape, folds = _data(data)
    fold = folds[fold_index]
    images = torch.as_tensor(x).reshape(len(x), *shape)
    x_train, y_train, x_test, y_test = images[fold.train], y[fold.train], images[fold.test], y[fold.test]
    raw = float(np.prod(shape) * 4)
    started = time.perf_counter()
    if name == "dynamic":
        labels = torch.as_tensor(y_train)
        config = TrainConfig.from_dict({**RUN, **dynamic, "model": setting["classifier"],
                                        "seed": fold_index, "target_fraction": setting["budget"]})
        result = train(config, TensorDataset("fold", x_train, labels, x_test, torch.as_tensor(y_test),
                                             int(labels.max()) + 1))
        mask = result.mask.eval()
        with torch.no_grad():
            masked_train, masked_test = mask(x_train)[0], mask(x_test)[0]
        bytes_per_sample = result.transfer["bytes_per_sample"]
        joint = result.test_accuracy
    else:
        k = int(setting["budget"] * raw // 4)
        options = {"model": setting["classifier"]} if name == "masksel" else {}
        selector = peers.SELECTORS[name]
        if options:
            def selector(xs: np.ndarray, ys: np.ndarray, budgets: Any, seed: int) -> Any:
                return masksel_selector.masksel(xs, ys, budgets, seed, **options)
            selector.all_budgets = True  # type: ignore[attr-defined]
        (chosen, _), = peers.select(selector, x[fold.train], y_train, [k], fold_index).values()
        keep = torch.zeros(int(np.prod(shape)))
        keep[chosen] = 1.0
        keep = keep.reshape(shape)
        masked_train, masked_test = x_train * keep, x_test * keep
        bytes_per_sample, joint = 4.0 * len(chosen), None
    selected = time.perf_counter()
    accuracy = retrain(setting["classifier"], shape, masked_train, y_train, masked_test, y_test, fold_index)
    return {"accuracy": accuracy, "bytes": bytes_per_sample / raw, "joint": joint,
            "select_s": selected - started, "retrain_s": time.perf_counter() - selected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic-moving", choices=list(SETTINGS))
    parser.add_argument("--folds", type=int, default=protocol.FOLDS * protocol.REPEATS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="comma-separated selectors (dynamic, masksel, peers)")
    parser.add_argument("--dynamic", help='the dynamic run\'s options as JSON, e.g. \'{"mask_type": '
                                          '"dynamic-block-any", "grid": [14, 14]}\'')
    args = parser.parse_args()
    if args.dynamic:
        SETTINGS[args.data]["dynamic"] = json.loads(args.dynamic)
    setting = SETTINGS[args.data]
    names = ["dynamic", *setting["static"]]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    folds = list(range(args.folds))
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {(n, f): pool.submit(fold_task, args.data, f, n, setting["dynamic"]) for n in names for f in folds}
        results = {n: [futures[(n, f)].result() for f in folds] for n in names}
    _, y, shape, all_folds = _data(args.data)
    share = len(all_folds[0].test) / len(y)
    print(f"{args.data} ({'x'.join(map(str, shape))}, {len(y)} samples), budget {setting['budget']} of the raw "
          f"bytes, classifier {setting['classifier']}, {len(folds)} folds, {time.perf_counter() - started:.0f} s; "
          f"dynamic: {json.dumps(setting['dynamic'])}")
    print("\n| selector | bytes / raw | accuracy | dynamic - it | 95 % interval | select s | retrain s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    dynamic = [r["accuracy"] for r in results.get("dynamic", [])]
    for name in names:
        rows = results[name]
        accuracy = [r["accuracy"] for r in rows]
        cell = f"{statistics.mean(accuracy):.3f} ± {statistics.stdev(accuracy) if len(rows) > 1 else 0.0:.3f}"
        difference = interval = ""
        if dynamic and name != "dynamic" and len(rows) > 1:
            c = protocol.compare(dynamic, accuracy, test_share=share)
            difference, interval = f"{c.mean:+.3f}", f"[{c.low:+.3f}, {c.high:+.3f}]"
        print(f"| {name} | {statistics.mean(r['bytes'] for r in rows):.3f} | {cell} | {difference} | {interval} | "
              f"{sum(r['select_s'] for r in rows):.0f} | {sum(r['retrain_s'] for r in rows):.0f} |")
    if dynamic:
        joint = [r["joint"] for r in results["dynamic"]]
        print(f"\nThe dynamic run's own written model (no retrain): {statistics.mean(joint):.3f}")


if __name__ == "__main__":
    main()

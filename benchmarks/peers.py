"""Peer input selectors for the method benchmark (`benchmarks/quality.py`).

Every selector here has the signature ``fn(x_train, y_train, k, seed, groups=None) -> list[int]``:
``x_train`` is ``(N, F)`` float32, ``y_train`` ``(N,)`` integer labels, ``k`` the budget. Without ``groups`` it
returns feature (pixel) indices; with ``groups`` (a partition of the F columns into equal-sized groups, e.g. the
channels of an image) it returns group indices. At most ``k`` distinct indices; duplicates do not count twice.
A selector added from outside may leave ``groups`` out: it then takes part in the pixel table only.

A selector that serves every budget from one fit (a regularisation path, a ranking) is marked with
``@all_budgets`` and has the signature ``fn(x_train, y_train, budgets, seed, groups=None) -> {k: list[int]}``;
a filter is written as ``score(x_train, y_train, seed) -> one score per feature`` and made one by ``@scored``.
Use :func:`select` to call either kind: it always answers ``{k: (indices, seconds)}``.

``SELECTORS`` is the registry (name -> function); ``quality.py`` evaluates whatever is in it, so another
method's rows are added with ``SELECTORS["mine"] = my_selector`` (or ``@register("mine")``).

Training-based selectors (concrete, stg, lassonet) read their number of epochs from ``TRAIN_EPOCHS`` unless
given ``epochs=``; ``quality.py --quick`` lowers it.
"""
from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

try:
    import lassonet as _lassonet
except ImportError as error:  # an optional benchmark dependency, see requirements-bench.txt
    _lassonet = None
    LASSONET_MISSING: str | None = f"lassonet is not importable ({error}); pip install -r requirements-bench.txt"
else:
    LASSONET_MISSING = None

Groups = Sequence[Sequence[int]] | None
SELECTORS: dict[str, Callable[..., Any]] = {}
TRAIN_EPOCHS = 100


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        SELECTORS[name] = fn
        return fn
    return add


def all_budgets(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn(x, y, budgets, seed, groups=None) -> {k: indices}``: one fit answers every budget."""
    fn.all_budgets = True  # type: ignore[attr-defined]
    return fn


class Answers(dict):
    """What an ``@all_budgets`` selector may return instead of a plain dict: ``{k: indices}`` plus, in
    ``joint``, ``{k: predict}`` where ``predict(x (N, F)) -> labels`` is the selector's own network trained
    jointly with its selection (so the benchmark can score it on the test split without a retrain)."""

    def __init__(self, chosen: dict[int, list[int]], joint: dict[int, Callable[[np.ndarray], np.ndarray]]) -> None:
        super().__init__(chosen)
        self.joint = joint


def select(fn: Callable[..., Any], x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int,
           groups: Groups = None, joint: dict[int, Any] | None = None) -> dict[int, tuple[list[int], float]]:
    """Run a selector of either kind for all ``budgets``: ``{k: (sorted unique indices, seconds)}``.

    For an ``@all_budgets`` selector the seconds are those of its one shared fit, repeated for every k.
    Checks that each answer holds at most k distinct valid indices. Where the selector returns
    :class:`Answers`, its jointly trained predictors are put into ``joint`` (when given).
    """
    n_choices = x.shape[1] if groups is None else len(groups)
    extra = {} if groups is None else {"groups": groups}  # a pixel-only selector need not take ``groups``
    if getattr(fn, "all_budgets", False):
        started = time.perf_counter()
        answers = fn(x, y, tuple(budgets), seed, **extra)
        seconds = time.perf_counter() - started
        if joint is not None:
            joint.update(getattr(answers, "joint", {}))
        timed = {k: (answers[k], seconds) for k in budgets}
    else:
        timed = {}
        for k in budgets:
            started = time.perf_counter()
            indices = fn(x, y, k, seed, **extra)
            timed[k] = (indices, time.perf_counter() - started)
    result = {}
    for k, (indices, seconds) in timed.items():
        unique = sorted({int(i) for i in indices})
        assert len(unique) <= k, f"{getattr(fn, '__name__', fn)} chose {len(unique)} > k={k}"
        assert all(0 <= i < n_choices for i in unique), f"index out of range in {unique}"
        result[k] = (unique, seconds)
    return result


def supports_groups(fn: Callable[..., Any]) -> bool:
    """Whether a selector takes ``groups`` (and so can choose channels)."""
    parameters = inspect.signature(fn).parameters.values()
    return any(p.name == "groups" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


# ----------------------------------------------------------------------------------------------- helpers
def _groups(n_features: int, groups: Groups) -> list[list[int]]:
    return [[i] for i in range(n_features)] if groups is None else [list(g) for g in groups]


def _columns(groups: list[list[int]], chosen: Sequence[int]) -> list[int]:
    return [column for g in chosen for column in groups[g]]


def _top_groups(scores: np.ndarray, k: int, groups: Groups) -> list[int]:
    """The k best groups by the mean of their features' scores (NaN counts as 0); ties go to the lower index."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    per_group = np.array([scores[g].mean() for g in _groups(len(scores), groups)])
    return [int(i) for i in np.argsort(-per_group, kind="stable")[:k]]


def _grouped(x: np.ndarray, groups: Groups) -> torch.Tensor:
    """(N, F) -> (N, G, D): a tensor of groups of equal size D (D = 1 without groups)."""
    parts = _groups(x.shape[1], groups)
    size = len(parts[0])
    assert all(len(g) == size for g in parts), "groups must have equal sizes"
    return torch.as_tensor(x[:, _columns(parts, range(len(parts)))], dtype=torch.float32).reshape(
        len(x), len(parts), size)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


# ----------------------------------------------------------------------------------------------- filters
@register("random")
def random_k(x: np.ndarray, y: np.ndarray, k: int, seed: int, groups: Groups = None) -> list[int]:
    """k features (or groups) drawn uniformly without replacement: the floor every method must beat."""
    n = x.shape[1] if groups is None else len(groups)
    return [int(i) for i in np.random.default_rng(seed).choice(n, size=k, replace=False)]


def scored(score: Callable[[np.ndarray, np.ndarray, int], np.ndarray]) -> Callable[..., Any]:
    """A filter from ``score(x, y, seed) -> one score per feature``: scored once per fit, and budget k takes the k
    best (with groups: the k groups of best mean score), so the scores are not computed again for every budget."""

    @all_budgets
    def select(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int,
               groups: Groups = None) -> dict[int, list[int]]:
        scores = score(x, y, seed)
        return {k: _top_groups(scores, k, groups) for k in budgets}

    select.__name__, select.__doc__ = score.__name__, score.__doc__  # not functools.wraps: keep `groups` seen
    return select


@register("variance")
@scored
def variance_top(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The features of largest variance (unsupervised filter; Guyon & Elisseeff 2003, JMLR 3, Sec. 2)."""
    return x.var(axis=0)


@register("anova-f")
@scored
def anova_top(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The features of largest ANOVA F statistic (scikit-learn ``f_classif``, as ``SelectKBest`` uses it)."""
    with warnings.catch_warnings():  # f_classif warns about the constant (always 0) border pixels of digits
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        from sklearn.feature_selection import f_classif  # scikit-learn where it is used: a second to import

        return f_classif(x, y)[0]


@register("mutual-info")
@scored
def mutual_info_top(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The features of largest estimated mutual information with the label (scikit-learn
    ``mutual_info_classif``, the k-NN estimator of Kraskov et al. 2004 / Ross 2014)."""
    from sklearn.feature_selection import mutual_info_classif

    return mutual_info_classif(x, y, random_state=seed)


@register("extra-trees")
@scored
def extra_trees_top(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The features of largest impurity importance in an ExtraTrees forest (Geurts et al. 2006, 200 trees)."""
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=200, random_state=seed, n_jobs=1).fit(x, y).feature_importances_


# ----------------------------------------------------------------------------------------------- wrapper
def _cheap_estimator() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5)


@register("greedy-forward")
@all_budgets
def greedy_forward(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int,
                   groups: Groups = None) -> dict[int, list[int]]:
    """Sequential forward selection (Whitney 1971; Kohavi & John 1997) scored by 3-fold CV accuracy of a 5-NN.

    Adds, max(budgets) times, the feature (or group) whose addition gives the best CV accuracy (ties: the lower
    index); the first k of that order answer budget k, as forward selection is nested. Deterministic (the seed is
    not used). 5-NN instead of logistic regression keeps 16 of 64 pixels under half a minute.
    """
    from sklearn.model_selection import cross_val_score

    parts = _groups(x.shape[1], groups)
    chosen: list[int] = []
    for _ in range(max(budgets)):
        candidates = [g for g in range(len(parts)) if g not in chosen]
        scores = [cross_val_score(_cheap_estimator(), x[:, _columns(parts, [*chosen, g])], y, cv=3).mean()
                  for g in candidates]
        chosen.append(candidates[int(np.argmax(scores))])
    return {k: chosen[:k] for k in budgets}


# ----------------------------------------------------------------------------------------------- embedded
def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


@register("concrete")
def concrete(x: np.ndarray, y: np.ndarray, k: int, seed: int, groups: Groups = None, *, epochs: int | None = None,
             hidden: int = 64, batch_size: int = 64, temperature: tuple[float, float] = (10.0, 0.01)) -> list[int]:
    """Supervised concrete selector (Abid, Balin & Zou 2019, "Concrete Autoencoders", ICML; the supervised variant
    of their Sec. 3, the decoder replaced by a classifier).

    k selection neurons, neuron j holding logits ``alpha_j`` over the F features (or G groups). In training,
    neuron j outputs ``x . softmax((alpha_j + g) / T)`` with Gumbel noise g drawn once per batch (as the
    authors' ConcreteSelect layer draws it), the
    k outputs feed a small MLP classifier, and everything is trained jointly with cross-entropy (Adam, lr 1e-3
    for the MLP, 1e-2 for the logits). T decays exponentially per step from 10 to 0.01. Finally each neuron's
    argmax is its feature; two neurons may end on the same one, so fewer than k distinct features can result.
    With groups, a neuron mixes whole groups (G, D) and passes the D-vector of its choice on.
    """
    epochs = TRAIN_EPOCHS if epochs is None else epochs
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    data, labels = _grouped(x, groups), torch.as_tensor(y, dtype=torch.long)
    n, n_choices, size = data.shape
    logits = nn.Parameter(0.01 * torch.randn(k, n_choices, generator=generator))
    classifier = _mlp(k * size, hidden, int(labels.max()) + 1)
    optimizer = torch.optim.Adam([{"params": classifier.parameters()}, {"params": [logits], "lr": 1e-2}], lr=1e-3)
    steps = epochs * math.ceil(n / batch_size)
    start, end = temperature
    step = 0
    for _ in range(epochs):
        for batch in _batches(n, batch_size, generator):
            tau = start * (end / start) ** (step / max(steps - 1, 1))
            uniform = torch.rand(*logits.shape, generator=generator).clamp_(1e-10, 1.0)
            weights = torch.softmax((logits - torch.log(-torch.log(uniform))) / tau, dim=-1)  # (k, G)
            selected = torch.einsum("ngd,kg->nkd", data[batch], weights).flatten(1)
            loss = nn.functional.cross_entropy(classifier(selected), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return [int(i) for i in logits.detach().argmax(dim=1)]


@register("stg")
@all_budgets
def stochastic_gates(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int, groups: Groups = None, *,
                     epochs: int | None = None, lam: float = 0.05, sigma: float = 0.5, hidden: int = 128,
                     batch_size: int = 64) -> dict[int, list[int]]:
    """Stochastic gates (Yamada, Lindenbaum, Negahban & Kluger 2020, "Feature Selection using Stochastic Gates",
    ICML, Sec. 3).

    One gate per feature (or group): ``z = clamp(mu + sigma * eps + 0.5, 0, 1)``, eps ~ N(0, 1) per example in
    training, ``z = clamp(mu + 0.5, 0, 1)`` at test; the input ``x * z`` feeds an MLP trained jointly with
    ``cross-entropy + lam * sum_d Phi((mu_d + 0.5) / sigma)`` (Phi: standard normal CDF; sigma 0.5, mu starts at
    0.5 = all gates open, Adam lr 1e-3 for the MLP and 1e-2 for mu).

    Budget: ONE fit with a fixed lam and the k gates of largest mu for every k; no lambda sweep per budget.
    lam = 0.05 was chosen on digits (seed 0, 100 epochs): 15 of 64 gates stay open (0.01: 41, 0.2: none).
    Open gates all end with mu ~ 2 (the clamp stops their gradient), so their order among themselves says
    little; small budgets are the weak spot of this choice.
    """
    epochs = TRAIN_EPOCHS if epochs is None else epochs
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    data, labels = _grouped(x, groups), torch.as_tensor(y, dtype=torch.long)
    n, n_choices, size = data.shape
    mu = nn.Parameter(torch.full((n_choices,), 0.5))
    classifier = _mlp(n_choices * size, hidden, int(labels.max()) + 1)
    optimizer = torch.optim.Adam([{"params": classifier.parameters()}, {"params": [mu], "lr": 1e-2}], lr=1e-3)
    normal = torch.distributions.Normal(0.0, 1.0)
    for _ in range(epochs):
        for batch in _batches(n, batch_size, generator):
            noise = torch.randn(len(batch), n_choices, generator=generator)
            gates = (mu + sigma * noise + 0.5).clamp(0.0, 1.0)
            logits = classifier((data[batch] * gates[:, :, None]).flatten(1))
            loss = nn.functional.cross_entropy(logits, labels[batch]) + lam * normal.cdf((mu + 0.5) / sigma).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    order = torch.argsort(mu.detach(), descending=True, stable=True)
    return {k: [int(i) for i in order[:k]] for k in budgets}


@register("lassonet")
@all_budgets
def lassonet(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int, groups: Groups = None, *,
             epochs: int | None = None, lambda_start: float | None = None,
             growth: tuple[float, float] = (1.2, 1.03)) -> dict[int, list[int]]:
    """LassoNet (Lemhadri, Ruan, Abraham & Tibshirani 2021, JMLR 22(127)) via the ``lassonet`` package's
    ``LassoNetClassifier.path``.

    One regularisation path per fit; for each k the path point with the most features (groups) that is still
    <= k (ties: the earliest point, smallest lambda). With ``groups`` the package's group-LassoNet. The path can
    jump (e.g. 5 -> 3 features), so a budget may get fewer than k.

    Reduced work to fit the time budget (package defaults in brackets): hidden layer (32,) [(100,)]; at most
    ``epochs`` (TRAIN_EPOCHS) dense epochs [1000] and 50 per path point [100], patience 10 / 5 [100 / 10];
    full batch [default]. Our own lambda sequence (given as ``lambda_seq``, a generator the package reads
    lazily): start at ``lambda_start`` (default 10 x group size), multiply by ``growth[0]`` = 1.2 while every
    feature is still in, by ``growth[1]`` = 1.03 once the first has dropped [auto start, x1.02 throughout].
    The package's automatic start costs ~20 s here (a bisection) and lay ~60x (pixels: first drop near
    lambda 95) to ~1000x (channel groups: near 1400) below where features start to drop, so most of its path
    would be spent on the dense model; 10 x group size leaves about 10 dense points on both tasks. The path
    stops once at most min(budgets) features (groups) are left: later points could not serve any budget.
    """
    if _lassonet is None:
        raise ImportError(LASSONET_MISSING)
    epochs = TRAIN_EPOCHS if epochs is None else epochs
    parts = _groups(x.shape[1], groups)
    model = _lassonet.LassoNetClassifier(
        hidden_dims=(32,), n_iters=(epochs, 50), patience=(10, 5), groups=groups,
        random_state=seed, torch_seed=seed, device="cpu", verbose=0)

    def groups_in() -> int:
        mask = model.model.input_mask().cpu().numpy()
        return sum(bool(mask[part].any()) for part in parts)

    def lambdas():  # read lazily by the package: the next lambda depends on the features still in
        lam = 10.0 * len(parts[0]) if lambda_start is None else lambda_start
        while True:
            yield lam
            if groups_in() <= min(budgets):  # every budget has its point: skip the rest of the path
                return
            lam *= growth[0] if model.model.selected_count() == x.shape[1] else growth[1]

    with warnings.catch_warnings():  # "lambda_start might be too large": irrelevant for the choice of features
        warnings.simplefilter("ignore")
        path = model.path(x, y, lambda_seq=lambdas(), return_state_dicts=False)
    chosen_per_point = []
    for point in path:
        selected = point.selected.numpy()
        chosen_per_point.append([g for g, part in enumerate(parts) if selected[part].any()])
    answers = {}
    for k in budgets:
        fitting = [chosen for chosen in chosen_per_point if len(chosen) <= k]
        answers[k] = max(fitting, key=len) if fitting else []  # max keeps the first of equal lengths
    return answers

"""What a study asks for, checked whole: its base options, its search space and its objectives, with every bad
field named at once; and the space as Optuna's distributions.

A choice may be any JSON value a run option takes (a grid is a list): Optuna's categorical distribution is given
each choice's JSON text, and the trial's options hold the values themselves.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from masksel_core import ConfigError, TrainConfig

from .errors import ServiceError
from .run_config import config_for

#: What a trial's run is judged on: the written model's accuracy on the test split and on validation, the share of
#: the input its mask keeps, the bytes a sample costs on the wire (`transfer.json`), and its seconds of training.
OBJECTIVE_METRICS = ("test_accuracy", "val_accuracy", "fraction", "bytes_per_sample", "seconds")
DIRECTIONS = ("maximize", "minimize")
MAX_TRIALS = 200
MAX_SPACEFIELD_TYPES = 10
MAX_CHOICES = 50
#: Options a study may not set: the server's files and a starting network belong to single runs.
NOT_SEARCHABLE = ("pretrained",)
FIELD_TYPES = {field.name: str(field.type) for field in dataclasses.fields(TrainConfig)}


class InvalidStudy(ServiceError):
    """A study request with one bad field or more; the message names each (`field: problem; ...`)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems.items()))


@dataclasses.dataclass(frozen=True)
class StudySpec:
    base: dict[str, Any]
    space: dict[str, dict[str, Any]]
    objectives: list[dict[str, str]]
    trials: int
    parallel: int


def check(data: dict[str, Any], input_shape: list[int]) -> StudySpec:
    """The request's base, space, objectives, trials and parallel, each checked; InvalidStudy names every
    problem found. `input_shape` is the data set's: each mask type (base or choice) must fit it."""
    problems: dict[str, str] = {}
    base = _check_base(data.get("base", {}), input_shape, problems)
    space = _check_space(data.get("space"), base, input_shape, problems)
    objectives = _check_objectives(data.get("objectives"), problems)
    trials = _whole(data.get("trials"), "trials", 1, MAX_TRIALS, problems)
    parallel = _whole(data.get("parallel", 1), "parallel", 1, trials or MAX_TRIALS, problems)
    if problems:
        raise InvalidStudy(problems)
    return StudySpec(base=base, space=space, objectives=objectives, trials=trials, parallel=parallel)


def _config_problem(options: dict[str, Any], input_shape: list[int]) -> str | None:
    """Why these run options cannot train on the data set, or None (the check `run_submission.run_create` makes)."""
    try:
        return config_for(options, input_shape)[1]
    except ConfigError as exc:
        return str(exc)


def _check_base(base: Any, input_shape: list[int], problems: dict[str, str]) -> dict[str, Any]:
    if not isinstance(base, dict):
        problems["base"] = "must be a JSON object of run options"
        return {}
    fixed = sorted(set(base) & {*NOT_SEARCHABLE, "pretrained_run", "dataset"})
    if fixed:
        problems["base"] = f"{', '.join(fixed)} cannot be part of a study's options"
        return {}
    problem = _config_problem(base, input_shape)
    if problem:
        problems["base"] = problem
    return dict(base)


def _check_space(space: Any, base: dict[str, Any], input_shape: list[int],
                 problems: dict[str, str]) -> dict[str, dict[str, Any]]:
    if not isinstance(space, dict) or not space:
        problems["space"] = "must map one run option or more to {low, high, log} or {choices}"
        return {}
    if len(space) > MAX_SPACEFIELD_TYPES:
        problems["space"] = f"at most {MAX_SPACEFIELD_TYPES} options, got {len(space)}"
        return {}
    checked: dict[str, dict[str, Any]] = {}
    for field, entry in space.items():
        problem = _entry_problem(field, entry, base, input_shape)
        if problem:
            problems[f"space.{field}"] = problem
        else:
            checked[field] = _normalised(field, entry)
    return checked


def _entry_problem(field: str, entry: Any, base: dict[str, Any], input_shape: list[int]) -> str | None:
    if field not in FIELD_TYPES or field in NOT_SEARCHABLE:
        return "not a run option that a study can search"
    if not isinstance(entry, dict):
        return 'must be {"low": .., "high": .., "log": false} or {"choices": [...]}'
    if "choices" in entry:
        return _choices_problem(field, entry, base, input_shape)
    return _range_problem(field, entry, base, input_shape)


def _choices_problem(field: str, entry: dict[str, Any], base: dict[str, Any], input_shape: list[int]) -> str | None:
    choices = entry["choices"]
    if set(entry) != {"choices"}:
        return "choices cannot be given with low, high or log"
    if not isinstance(choices, list) or not choices:
        return "choices must be a non-empty list"
    if len(choices) > MAX_CHOICES:
        return f"at most {MAX_CHOICES} choices"
    if len({json.dumps(choice, sort_keys=True) for choice in choices}) < len(choices):
        return "choices must differ"
    for choice in choices:
        problem = _config_problem({**base, field: choice}, input_shape)
        if problem:
            return f"choice {json.dumps(choice)}: {problem}"
    return None


def _range_problem(field: str, entry: dict[str, Any], base: dict[str, Any], input_shape: list[int]) -> str | None:
    kind = FIELD_TYPES[field]
    if not (kind.startswith("int") or kind.startswith("float")):
        return f"a range needs a numeric option; give {field} as choices"
    unknown = sorted(set(entry) - {"low", "high", "log"})
    if unknown or "low" not in entry or "high" not in entry:
        return 'a range is {"low": .., "high": .., "log": false}' + (f", not {', '.join(unknown)}" if unknown else "")
    low, high, log = entry["low"], entry["high"], entry.get("log", False)
    numbers = (int,) if kind.startswith("int") else (int, float)
    # An int is finite however long (math.isfinite overflows on 10**400); the option's own range refuses it below.
    if any(isinstance(v, bool) or not isinstance(v, numbers) or not (isinstance(v, int) or math.isfinite(v))
           for v in (low, high)):
        return f"low and high must be {'whole numbers' if numbers == (int,) else 'numbers'}"
    if not isinstance(log, bool):
        return "log must be true or false"
    if not low < high:
        return f"empty range: low ({low}) must be below high ({high})"
    if log and low <= 0:
        return f"a log-scaled range needs low above 0, got {low}"
    for end in (low, high):
        problem = _config_problem({**base, field: end}, input_shape)
        if problem:
            return problem
    return None


def _normalised(field: str, entry: dict[str, Any]) -> dict[str, Any]:
    if "choices" in entry:
        return {"choices": list(entry["choices"])}
    return {"low": entry["low"], "high": entry["high"], "log": bool(entry.get("log", False))}


def _check_objectives(objectives: Any, problems: dict[str, str]) -> list[dict[str, str]]:
    shape = 'a list of two or three {"metric": .., "direction": "maximize"|"minimize"}'
    if not isinstance(objectives, list) or not 2 <= len(objectives) <= 3 or \
            not all(isinstance(item, dict) for item in objectives):
        problems["objectives"] = f"must be {shape}"
        return []
    checked = []
    for index, item in enumerate(objectives):
        metric, direction = item.get("metric"), item.get("direction")
        if metric not in OBJECTIVE_METRICS:
            problems[f"objectives[{index}].metric"] = f"must be one of {', '.join(OBJECTIVE_METRICS)}, got {metric!r}"
        elif direction not in DIRECTIONS:
            problems[f"objectives[{index}].direction"] = f"must be maximize or minimize, got {direction!r}"
        elif set(item) - {"metric", "direction"}:
            problems[f"objectives[{index}]"] = f"must be {shape}"
        else:
            checked.append({"metric": metric, "direction": direction})
    if len({item["metric"] for item in checked}) < len(checked):
        problems["objectives"] = "each metric at most once"
    return checked


def _whole(value: Any, field: str, low: int, high: int, problems: dict[str, str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems[field] = f"must be a whole number from {low} to {high}, got {value!r}"
        return 0
    return value


def distributions(space: dict[str, dict[str, Any]]) -> dict[str, BaseDistribution]:
    """The space as Optuna's distributions: integer options as integers, choices by their JSON text."""
    found: dict[str, BaseDistribution] = {}
    for field, entry in space.items():
        if "choices" in entry:
            found[field] = CategoricalDistribution([json.dumps(choice) for choice in entry["choices"]])
        elif FIELD_TYPES[field].startswith("int"):
            found[field] = IntDistribution(int(entry["low"]), int(entry["high"]), log=entry["log"])
        else:
            found[field] = FloatDistribution(float(entry["low"]), float(entry["high"]), log=entry["log"])
    return found


def to_options(space: dict[str, dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's parameters as run options (a choice's JSON text back to its value)."""
    return {field: json.loads(value) if "choices" in space[field] else value for field, value in params.items()}


def to_params(space: dict[str, dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
    """A trial's run options as Optuna's parameters (each choice as its JSON text)."""
    return {field: json.dumps(value) if "choices" in space[field] else value for field, value in options.items()}

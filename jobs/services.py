"""Writes for users' requests: runs and sweeps (create, cancel, annotate, delete, requeue) and saved configurations.

Views, the REST API and management commands call these functions and nothing writes rows on its own, so the
rules (validation, ownership, broadcast after commit) hold everywhere. Data sets have theirs in
`dataset_services`, a run's life on a worker (start, heartbeat, epochs, finish, failure, retry, recovery) in
`worker_services`.
"""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from masksel_core import ConfigError, TrainConfig

from . import messages, progress, run_files, study_services
from .errors import ServiceError
from .models import FINAL_STATUSES, MaskConfig, Run, RunStatus
from .run_submission import (
    MAX_TAG_LENGTH,
    cancel_if_open,
    check_open_runs,
    checked_annotations,
    mask_config_get,
    parse_priority,
    run_create,
)

__all__ = ["mask_config_get", "run_create"]  # from `run_submission`, offered beside the other writes


def run_cancel(run: Run) -> Run:
    """Stop a queued or running run; a running one stops within one batch (the worker polls)."""
    if run.status in FINAL_STATUSES:
        raise ServiceError(f"run {run.pk} is already {run.status}")
    with transaction.atomic():  # a study's trial ends with its run: told, and the next asked, in one transaction
        if cancel_if_open(run.pk):
            study_services.trial_ended(run.pk, None, reason="its run was cancelled")
    run.refresh_from_db()
    progress.broadcast(run.pk, messages.status(run.status))
    return run


def run_annotate(run: Run, data: dict[str, Any]) -> Run:
    """Set a run's name, tags, notes and (while it is queued) priority: the only fields a user may change."""
    if not isinstance(data, dict):
        raise ServiceError("the body must be a JSON object")
    unknown = sorted(set(data) - {"name", "tags", "notes", "priority"})
    if unknown:
        raise ServiceError(f"only name, tags, notes and priority can be changed, not {', '.join(unknown)}")
    fields = checked_annotations(data)
    if "priority" in data:
        fields["priority"] = parse_priority(data["priority"])
        if run.status != RunStatus.QUEUED and fields["priority"] != run.priority:
            raise ServiceError(f"run {run.pk} is {run.status}; the priority of a run can only change while it "
                               "is queued")
    if "priority" in fields:
        # Guarded: a worker may have started the run since it was read.
        if not Run.objects.filter(pk=run.pk, status=run.status).update(**fields):
            raise ServiceError(f"run {run.pk} has just started; its priority can no longer change")
    else:
        Run.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def run_delete(run: Run) -> None:
    """Delete a finished or queued run with its metrics and files; a running one must be cancelled first."""
    if run.status == RunStatus.RUNNING:
        raise ServiceError(f"run {run.pk} is running; cancel it before deleting it")
    with transaction.atomic():
        if run.status == RunStatus.QUEUED:  # a study's trial would wait for it forever
            study_services.trial_ended(run.pk, None, reason="its run was deleted before it started")
        Run.objects.filter(pk=run.pk).delete()
        transaction.on_commit(lambda: run_files.delete(run.pk, ""))


MAX_SWEEP_RUNS = 200


def run_sweep(*, owner: Any, data: dict[str, Any]) -> list[Run]:
    """One run per (lambda_init, lambda_factor, seed) cell, all tagged with the sweep's name.

    `data` holds the options of a single run, except that `lambda_init` and `lambda_factor` are
    lists and `seeds` a count (the paper: {0.1, 1.0} x {1.1, 1.25} x 10 seeds). All or nothing:
    any bad cell, or the open-run limit, refuses the whole sweep.
    """
    if not isinstance(data, dict):
        raise ServiceError("the body must be a JSON object")
    options = dict(data)
    grid = {}
    for key in ("lambda_init", "lambda_factor"):
        values = options.pop(key, None)
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ServiceError(f"{key} must be a non-empty list of numbers")
        grid[key] = [float(v) for v in values]
    seeds = options.pop("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ServiceError("seeds must be a positive integer")
    name = str(options.pop("name", "") or f"sweep-{timezone.now():%Y%m%d-%H%M%S}")[:MAX_TAG_LENGTH]
    cells = [(li, lf, seed) for li in grid["lambda_init"] for lf in grid["lambda_factor"] for seed in range(seeds)]
    if len(cells) > MAX_SWEEP_RUNS:
        raise ServiceError(f"a sweep makes at most {MAX_SWEEP_RUNS} runs, this one {len(cells)}")
    base_seed = int(options.pop("seed", 0) or 0)
    with transaction.atomic():
        check_open_runs(owner, adding=len(cells))
        runs = [run_create(owner=owner, data={**options, "lambda_init": li, "lambda_factor": lf,
                                              "seed": base_seed + seed}, tags=[name])
                for li, lf, seed in cells]
    return runs


def run_requeue(run: Run) -> Run:
    """Train a failed or cancelled run again as a new run with its options, data set, name, tags, notes, priority
    and starting network; the old run keeps its epochs, files and outcome (it is history, and may be compared)."""
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise ServiceError(f"run {run.pk} is {run.status}; only failed or cancelled runs can be requeued")
    options = {key: value for key, value in run.config.items() if key != "pretrained"}
    if run.pretrained_from is not None:
        options["pretrained_run"] = run.pretrained_from
    return run_create(owner=run.owner, data={
        **options, "dataset": run.dataset_id, "name": run.name, "tags": run.tags, "notes": run.notes,
        "priority": run.priority})


BATCH_ACTIONS = {"cancel": run_cancel, "requeue": run_requeue, "delete": run_delete}


def runs_batch(runs: list[Run], action: str) -> tuple[dict[int, str], dict[int, int]]:
    """Apply one action to several runs; each answers "ok" or why not, and the others go on. Also returns, for
    requeue, the new run made from each old one."""
    if action not in BATCH_ACTIONS:
        raise ServiceError(f"unknown action {action!r}; choose one of {', '.join(BATCH_ACTIONS)}")
    outcome: dict[int, str] = {}
    created: dict[int, int] = {}
    for run in runs:
        try:
            result = BATCH_ACTIONS[action](run)
            outcome[run.pk] = "ok"
            if action == "requeue":
                created[run.pk] = result.pk
        except ServiceError as exc:
            outcome[run.pk] = str(exc)
    return outcome, created


def mask_config_create(*, owner: Any, name: str, config: Any) -> MaskConfig:
    """Save a named set of run options after checking them as a run would (dataset excluded)."""
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise ServiceError("name is required (at most 100 characters)")
    if not isinstance(config, dict) or "dataset" in config:
        raise ServiceError("config must be a JSON object of run options (without the dataset)")
    if config.get("pretrained") is not None or "pretrained_run" in config:
        raise ServiceError("a saved configuration holds options, not a starting network: give pretrained_run "
                           "with the run request")
    try:
        TrainConfig.from_dict(config)
    except ConfigError as exc:
        raise ServiceError(str(exc)) from None
    if MaskConfig.objects.filter(owner=owner, name=name).exists():
        raise ServiceError(f"you already have a configuration named {name!r}")
    return MaskConfig.objects.create(owner=owner, name=name, config=config)

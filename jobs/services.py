"""Writes for users' requests: runs and sweeps (create, cancel, annotate, delete, requeue) and saved configurations.

Views, the REST API and management commands call these functions and nothing writes rows on its own, so the
rules (validation, ownership, broadcast after commit) hold everywhere. Data sets have theirs in
`dataset_services`, a run's life on a worker (start, heartbeat, epochs, finish, failure, retry, recovery) in
`worker_services`.
"""
from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from masksel_core import ConfigError, TrainConfig

from . import messages, progress, run_files, study_services
from .errors import ServiceError
from .models import FINAL_STATUSES, MaskConfig, Run, RunStatus
from .run_submission import cancel_if_open, check_open_runs, run_create, tag_fields

__all__ = ["run_create"]  # from `run_submission`, offered beside the other writes


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


def run_annotate(run: Run, *, name: str | None = None, tags: list[str] | None = None, notes: str | None = None,
                 priority: int | None = None) -> Run:
    """Set a run's name, tags, notes and (while it is queued) priority: the only fields a user may change. The
    fields come parsed (`inputs.Annotations`); None leaves one as it is."""
    fields: dict[str, Any] = {key: value for key, value in (("name", name), ("notes", notes)) if value is not None}
    if tags is not None:
        fields.update(tag_fields(tags))
    if priority is not None:
        if run.status != RunStatus.QUEUED and priority != run.priority:
            raise ServiceError(f"run {run.pk} is {run.status}; the priority of a run can only change while it "
                               "is queued")
        fields["priority"] = priority
        # Guarded: a worker may have started the run since it was read.
        if not Run.objects.filter(pk=run.pk, status=run.status).update(**fields):
            raise ServiceError(f"run {run.pk} has just started; its priority can no longer change")
    elif fields:
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
        # A page still open on it says so (its socket would stay open and show the last status it had).
        transaction.on_commit(lambda: progress.broadcast(run.pk, messages.status(
            "deleted", error="this run was deleted: its epochs and files are gone")))


MAX_SWEEP_RUNS = 200


def run_sweep(*, owner: Any, dataset: int, lambda_init: list[float], lambda_factor: list[float], seeds: int = 1,
              name: str = "", options: dict[str, Any] | None = None, **request: Any) -> list[Run]:
    """One run per (lambda_init, lambda_factor, seed) cell, all tagged with the sweep's `name`.

    The fields come parsed (`inputs.SweepRequest`): the options of a single run, with the two lambdas as lists
    and `seeds` a count (the paper: {0.1, 1.0} x {1.1, 1.25} x 10 seeds); `request` holds the rest of a run
    request (tags, notes, priority, mask_config, pretrained_run). All or nothing: any bad cell, or the open-run
    limit, refuses the whole sweep.
    """
    options = dict(options or {})
    tag = name or f"sweep-{timezone.now():%Y%m%d-%H%M%S}"
    cells = [(li, lf, seed) for li in lambda_init for lf in lambda_factor for seed in range(seeds)]
    if len(cells) > MAX_SWEEP_RUNS:
        raise ServiceError(f"a sweep makes at most {MAX_SWEEP_RUNS} runs, this one {len(cells)}")
    base_seed = options.pop("seed", 0) or 0
    if isinstance(base_seed, bool) or not isinstance(base_seed, int):
        raise ServiceError(f"seed must be an integer, got {base_seed!r}")
    with transaction.atomic():
        check_open_runs(owner, adding=len(cells))
        runs = [run_create(owner=owner, dataset=dataset, group_tags=[tag], **request, options={
            **options, "lambda_init": li, "lambda_factor": lf, "seed": base_seed + seed}) for li, lf, seed in cells]
    return runs


def run_requeue(run: Run) -> Run:
    """Train a failed or cancelled run again as a new run with its options, data set, name, tags, notes, priority
    and starting network; the old run keeps its epochs, files and outcome (it is history, and may be compared)."""
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise ServiceError(f"run {run.pk} is {run.status}; only failed or cancelled runs can be requeued")
    options = {key: value for key, value in run.config.items() if key != "pretrained"}
    return run_create(owner=run.owner, dataset=run.dataset_id, options=options, name=run.name, tags=run.tags,
                      notes=run.notes, priority=run.priority, requeued=run)


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


def mask_config_create(*, owner: Any, name: str, config: dict[str, Any]) -> MaskConfig:
    """Save a named set of run options after checking them as a run would (dataset excluded)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ServiceError("name is required (at most 100 characters)")
    if "dataset" in config:
        raise ServiceError("config must be a JSON object of run options (without the dataset)")
    if config.get("pretrained") is not None or "pretrained_run" in config:
        raise ServiceError("a saved configuration holds options, not a starting network: give pretrained_run "
                           "with the run request")
    try:
        TrainConfig.from_dict(config)
    except ConfigError as exc:
        raise ServiceError(str(exc)) from None
    taken = ServiceError(f"you already have a configuration named {name!r}")
    if MaskConfig.objects.filter(owner=owner, name=name).exists():
        raise taken
    try:
        with transaction.atomic():  # the same name saved twice at once: the database's constraint decides
            return MaskConfig.objects.create(owner=owner, name=name, config=config)
    except IntegrityError:
        raise taken from None

"""Writes for users' requests: runs and sweeps (create, cancel, annotate, delete, requeue) and saved configurations.

Views, the REST API and management commands call these functions and nothing writes rows on its own, so the
rules (validation, ownership, broadcast after commit) hold everywhere. Data sets have theirs in
`dataset_services`, a run's life on a worker (start, heartbeat, epochs, finish, failure, retry, recovery) in
`worker_services`.
"""
from __future__ import annotations

from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

import masksel_core
from masksel_core import ConfigError, TrainConfig

from . import messages, progress, queues, run_files
from .dataset_services import check_storage
from .errors import NotFound, ServiceError
from .models import (
    FINAL_STATUSES,
    PRIORITY_RANGE,
    Dataset,
    MaskConfig,
    Run,
    RunStatus,
)
from .selectors import (
    dataset_get,
)


def run_create(*, owner: Any, data: dict[str, Any], tags: list[str] | None = None) -> Run:
    """Check a run request (dataset visible, config valid) and queue it after the commit."""
    if not isinstance(data, dict):
        raise ServiceError("the body must be a JSON object")
    options = dict(data)
    if "dataset" not in options:
        raise ServiceError("dataset is required")
    dataset_id = options.pop("dataset")
    priority = _parse_priority(options.pop("priority", 0))
    annotations = _annotations({key: options.pop(key) for key in ("name", "tags", "notes") if key in options})
    if tags is not None:  # a sweep's tag comes first
        annotations = {**annotations, **_annotations({"tags": [*tags, *annotations.get("tags", [])]})}
    if "mask_config" in options:
        # A saved configuration fills in what the request leaves out.
        options = {**mask_config_get(owner, options.pop("mask_config")).config, **options}
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, str)):
        raise ServiceError("dataset must be a dataset id")
    try:
        dataset = dataset_get(owner, dataset_id)
    except NotFound:
        raise ServiceError(f"no dataset with id {dataset_id!r}") from None
    if options.pop("pretrained", None) is not None:
        raise ServiceError(PRETRAINED_IS_CLI_ONLY)
    pretrained_run = options.pop("pretrained_run", None)
    # Defaults that fit the data: a channel mask on a one-channel data set could only keep all or nothing.
    options.setdefault("mask_type", masksel_core.default_mask_type(dataset.input_shape))
    try:
        config = TrainConfig.from_dict(options)
    except ConfigError as exc:
        raise ServiceError(str(exc)) from None
    problem = masksel_core.spec_problem(config.mask_type, dataset.input_shape)
    if problem:
        raise ServiceError(f"{dataset.name}: {problem}")
    source = None if pretrained_run is None else _pretrained_source(owner, pretrained_run, dataset, config)
    copied = 0 if source is None else run_files.size(source.pk, "model.pt")
    with transaction.atomic():
        _check_open_runs(owner)  # inside the transaction that adds the run, the owner's row locked
        check_storage(owner, extra=copied, what="the copy of pretrained_run's network")
        epochs = most_epochs(config) - (config.warmup_epochs if source is not None else 0)
        run = Run.objects.create(owner=owner, dataset=dataset, config=config.to_dict(), total_epochs=epochs,
                                 priority=priority, pretrained_from=source.pk if source else None,
                                 artifact_bytes=copied, **annotations)
        if source is not None:  # a copy: the source run may be deleted before this one starts
            run_files.copy(source.pk, "model.pt", run.pk, PRETRAINED)
        transaction.on_commit(lambda: enqueue(run.pk))
    return run


PRETRAINED = "pretrained.pt"  # a run's copy of the network it starts from
PRETRAINED_IS_CLI_ONLY = ("pretrained names a file on the server and is for the command line only; over the web, "
                          "start from one of your succeeded runs with pretrained_run (its id)")


def _pretrained_source(owner: Any, run_id: Any, dataset: Dataset, config: TrainConfig) -> Run:
    """One of the caller's succeeded runs whose network fits this run: the same model, input and classes."""
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        raise ServiceError("pretrained_run must be the id of one of your succeeded runs")
    source = Run.objects.filter(owner=owner, pk=run_id).select_related("dataset").first()
    if source is None or source.status != RunStatus.SUCCEEDED or not run_files.exists(source.pk, "model.pt"):
        raise ServiceError(f"pretrained_run {run_id} is not one of your succeeded runs")
    theirs = (source.model_name, list(source.dataset.input_shape), source.dataset.num_classes)
    ours = (config.model, list(dataset.input_shape), dataset.num_classes)
    if theirs != ours:
        raise ServiceError(f"pretrained_run {run_id} trained {theirs[0]} on input {theirs[1]} with {theirs[2]} "
                           f"classes; this run needs {ours[0]} on input {ours[1]} with {ours[2]} classes")
    return source


def most_epochs(config: TrainConfig) -> int:
    """The epochs a run takes at most: warm-up and finalize stop early once validation accuracy stops improving."""
    warmup = 0 if config.pretrained is not None else config.warmup_epochs
    return warmup + config.epochs + config.finalize_epochs + (1 if config.finalize_epochs else 0)


def _parse_priority(value: Any) -> int:
    low, high = PRIORITY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ServiceError(f"priority must be a whole number from {low} to {high} (higher starts first), "
                           f"got {value!r}")
    return value


def _check_open_runs(owner: Any, *, adding: int = 1) -> None:
    """Refuse `adding` more runs when they would take the user past the limit of open runs. Called inside the
    transaction that adds them: the owner's row is locked (on PostgreSQL) so that two requests at once cannot
    both pass the count."""
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    limit = settings.MASKSEL_MAX_OPEN_RUNS
    open_runs = Run.objects.filter(owner=owner, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).count()
    if open_runs + adding <= limit:
        return
    if adding == 1:
        raise ServiceError(f"you have {open_runs} runs queued or running, the limit is {limit}; "
                           "wait for some to finish or cancel them")
    raise ServiceError(f"the sweep's {adding} runs and your {open_runs} open ones exceed the limit of "
                       f"{limit} queued or running runs")


TRAIN_TASK = "jobs.train_run"


def enqueue(run_id: int, *, after_seconds: float = 0) -> None:
    """One message per queued run, in the queue of its device (`queues`); the worker that takes a message
    trains whichever queued run of that kind is first in QUEUE_ORDER at that moment, so priorities set or
    changed after submitting take effect. The task is looked up by name in Celery's registry (`jobs.tasks`
    calls these services: no import of it here)."""
    device = Run.objects.filter(pk=run_id).values_list("config__device", flat=True).first()
    kind = queues.kind_of(device)
    current_app.tasks[TRAIN_TASK].apply_async(args=[run_id], kwargs={"kind": kind}, queue=queues.queue_name(kind),
                                              countdown=after_seconds or None)


def run_cancel(run: Run) -> Run:
    """Stop a queued or running run; a running one stops within one batch (the worker polls)."""
    if run.status in FINAL_STATUSES:
        raise ServiceError(f"run {run.pk} is already {run.status}")
    Run.objects.filter(pk=run.pk, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now())
    run.refresh_from_db()
    progress.broadcast(run.pk, messages.status(run.status))
    return run


MAX_TAGS, MAX_TAG_LENGTH, MAX_NOTES, MAX_NAME = 20, 50, 10_000, 200


def run_annotate(run: Run, data: dict[str, Any]) -> Run:
    """Set a run's name, tags, notes and (while it is queued) priority: the only fields a user may change."""
    if not isinstance(data, dict):
        raise ServiceError("the body must be a JSON object")
    unknown = sorted(set(data) - {"name", "tags", "notes", "priority"})
    if unknown:
        raise ServiceError(f"only name, tags, notes and priority can be changed, not {', '.join(unknown)}")
    fields = _annotations(data)
    if "priority" in data:
        fields["priority"] = _parse_priority(data["priority"])
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


def _annotations(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a run's name, tags and notes given in `data`, checked (for a new run and for a change)."""
    fields: dict[str, Any] = {}
    if "name" in data:
        if not isinstance(data["name"], str) or len(data["name"].strip()) > MAX_NAME:
            raise ServiceError(f"name must be text of at most {MAX_NAME} characters")
        fields["name"] = data["name"].strip()
    if "tags" in data:
        tags = data["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
            raise ServiceError("tags must be a list of non-empty strings")
        tags = list(dict.fromkeys(t.strip() for t in tags))
        if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in tags):
            raise ServiceError(f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters")
        fields["tags"] = tags
        fields["tag_index"] = "|" + "|".join(tags) + "|" if tags else ""
    if "notes" in data:
        if not isinstance(data["notes"], str) or len(data["notes"]) > MAX_NOTES:
            raise ServiceError(f"notes must be text of at most {MAX_NOTES} characters")
        fields["notes"] = data["notes"]
    return fields


def run_delete(run: Run) -> None:
    """Delete a finished or queued run with its metrics and files; a running one must be cancelled first."""
    if run.status == RunStatus.RUNNING:
        raise ServiceError(f"run {run.pk} is running; cancel it before deleting it")
    with transaction.atomic():
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
        _check_open_runs(owner, adding=len(cells))
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


def mask_config_get(owner: Any, config_id: Any) -> MaskConfig:
    if isinstance(config_id, bool) or not isinstance(config_id, (int, str)) or not str(config_id).isdigit():
        raise ServiceError("mask_config must be the id of a saved configuration")
    found = MaskConfig.objects.filter(owner=owner, pk=int(config_id)).first()
    if found is None:
        raise ServiceError(f"no saved configuration with id {config_id}")
    return found


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

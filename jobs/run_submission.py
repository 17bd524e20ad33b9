"""Submitting a run: check the request (data set visible, options valid, the user's limits), add its row and
queue its message after the commit.

The users' requests (`services`), studies' trials (`study_services`) and retries (`worker_services`) all submit
through here, so a run is checked and queued the same way whoever asks for it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from masksel_core import ConfigError, TrainConfig

from . import queues, run_files
from .dataset_services import check_storage
from .errors import NotFound, ServiceError
from .models import MAX_NAME, MAX_TAG_LENGTH, MAX_TAGS, Dataset, MaskConfig, Run, RunStatus
from .run_config import config_for
from .selectors import dataset_get


def run_create(*, owner: Any, dataset: int, options: dict[str, Any] | None = None, name: str | None = None,
               tags: Sequence[str] = (), notes: str | None = None, priority: int = 0, mask_config: int | None = None,
               pretrained_run: int | None = None, group_tags: Sequence[str] = (), check_limit: bool = True,
               requeued: Run | None = None) -> Run:
    """Check a run request (data set visible, options valid, the user's limits) and queue it after the commit.

    Its fields come parsed (`inputs.RunRequest`); `options` are checked here, by `TrainConfig`, whoever asks.
    A sweep's or a study's tag (`group_tags`) comes before the run's own. A study's next trial skips the open-run
    limit (`check_limit=False`): it takes the place its study held since it was created. A `requeued` run that
    started from another's network starts again from its own copy of it (that run may be gone since)."""
    annotations = tag_fields([*group_tags, *tags])
    if name is not None:
        if len(name) > MAX_NAME:  # parsed requests never are; a study's trial names are made here
            raise ServiceError(f"name must be text of at most {MAX_NAME} characters")
        annotations["name"] = name
    if notes is not None:
        annotations["notes"] = notes
    options = dict(options or {})
    if mask_config is not None:  # a saved configuration fills in what the request leaves out
        options = {**mask_config_get(owner, mask_config).config, **options}
    try:
        row = dataset_get(owner, dataset)
    except NotFound:
        raise ServiceError(f"no dataset with id {dataset!r}") from None
    try:
        config, problem = config_for(options, row.input_shape)
    except ConfigError as exc:
        raise ServiceError(str(exc)) from None
    if problem:
        raise ServiceError(f"{row.name}: {problem}")
    source = None if pretrained_run is None else _pretrained_source(owner, pretrained_run, row, config)
    # The network file to copy beside the run: (run, name) of the source's model, or the requeued run's own copy.
    weights = (source.pk, "model.pt") if source is not None else None
    started_from = source.pk if source is not None else None
    if requeued is not None and requeued.pretrained_from is not None:
        if not run_files.exists(requeued.pk, PRETRAINED):
            raise ServiceError(f"run {requeued.pk} no longer holds the network it started from")
        weights, started_from = (requeued.pk, PRETRAINED), requeued.pretrained_from
    copied = 0 if weights is None else run_files.size(*weights)
    with transaction.atomic():
        if check_limit:
            check_open_runs(owner)  # inside the transaction that adds the run, the owner's row locked
        check_storage(owner, extra=copied, what="the copy of pretrained_run's network")
        epochs = most_epochs(config) - (config.warmup_epochs if weights is not None else 0)
        run = Run.objects.create(owner=owner, dataset=row, config=config.to_dict(), total_epochs=epochs,
                                 priority=priority, pretrained_from=started_from, artifact_bytes=copied, **annotations)
        if weights is not None:  # a copy: the source run may be deleted before this one starts
            run_files.copy(*weights, run.pk, PRETRAINED)
        transaction.on_commit(lambda: enqueue(run.pk))
    return run


def tag_fields(tags: Sequence[str]) -> dict[str, Any]:
    """A run's tags, each once, and the index the list's search reads; a sweep's or study's tag may add one too
    many."""
    tags = list(dict.fromkeys(tags))
    if any("|" in tag for tag in tags):  # the index's separator: "a|b" would be found as the tag "a"
        raise ServiceError("a tag may not contain '|' (nor may a sweep's or study's name, which tags its runs)")
    if len(tags) > MAX_TAGS:
        raise ServiceError(f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters")
    return {"tags": tags, "tag_index": "|" + "|".join(tags) + "|" if tags else ""}


PRETRAINED = "pretrained.pt"  # a run's copy of the network it starts from
def _pretrained_source(owner: Any, run_id: int, dataset: Dataset, config: TrainConfig) -> Run:
    """One of the caller's succeeded runs whose network fits this run: the same model, input and classes."""
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


def check_open_runs(owner: Any, *, adding: int = 1) -> None:
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


def mask_config_get(owner: Any, config_id: int) -> MaskConfig:
    """One of the owner's saved configurations (the id parsed at the edge: `RunRequest`, `NewRunQuery`)."""
    found = MaskConfig.objects.filter(owner=owner, pk=config_id).first()
    if found is None:
        raise ServiceError(f"no saved configuration with id {config_id}")
    return found


def cancel_if_open(run_id: int) -> bool:
    """Mark a queued or running run cancelled (a running one's worker sees it within a batch); False when it had
    already ended. A user's cancel (`services.run_cancel`) and a study's (`study_services.study_cancel`) both
    end runs this way."""
    return bool(Run.objects.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now()))

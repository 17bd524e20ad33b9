"""Rows of the service: data sets, runs, and one metric row per run and epoch."""
from __future__ import annotations

from typing import Any

import numpy as np
from django.conf import settings
from django.db import models

from masksel_core import METRIC_COLUMNS

from . import run_files
from .files import local_path


class Dataset(models.Model):
    """A built-in data set (`builtin` set, no owner), an uploaded `.npz` (owner and file), or a registered zarr
    store (owner and uri)."""

    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="datasets")
    builtin = models.CharField(max_length=50, blank=True, default="")
    file = models.FileField(upload_to="datasets/", blank=True)
    # A zarr store registered where it lies (a local path or s3:// URI inside MASKSEL_DATA_ROOTS): never copied.
    uri = models.CharField(max_length=1000, blank=True, default="")
    input_shape = models.JSONField(default=list)
    num_classes = models.PositiveIntegerField(default=0)
    num_train = models.PositiveIntegerField(default=0)
    num_test = models.PositiveIntegerField(default=0)
    channel_names = models.JSONField(default=list, blank=True)
    # The file had no x_test: its test split is a stratified share of x_train (masksel_core's TEST_SHARE).
    test_held_out = models.BooleanField(default=False)
    size_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["builtin"], condition=~models.Q(builtin=""), name="unique_builtin"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def source(self) -> str:
        """What `masksel_core.load_dataset` takes: the built-in name, the store's URI, or a local path of the file
        (on object storage, this host's cached copy)."""
        return self.builtin or self.uri or str(local_path(self.file))


class MaskConfig(models.Model):
    """A named, reusable set of run options (mask chain, costs, lambda/tau/gamma, model, ...)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mask_configs")
    name = models.CharField(max_length=100)
    config = models.JSONField()  # a subset of TrainConfig's fields, validated on save by the service
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_config_name")]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


PRIORITY_RANGE = (-10, 10)
MAX_TAGS, MAX_TAG_LENGTH, MAX_NOTES, MAX_NAME = 20, 50, 10_000, 200  # a run's annotations
QUEUE_ORDER = ("-priority", "id")
MAX_ID = 2**63 - 1  # the largest primary key the databases hold (64 bits): a larger one overflows the query
MAX_IDS = 1000  # run ids in one request (a compare page, a batch action): SQLite allows 32,766 in one query


def id_from_text(text: str) -> int | None:
    """A primary key written as text (`?dataset=12`), or None where the text cannot be one: ASCII digits only
    (`"²".isdigit()` is true, `int("²")` fails), from 1 to `MAX_ID`."""
    if text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= MAX_ID:
        return int(text)
    return None


class Run(models.Model):
    """One training job; `config` is a `masksel_core.TrainConfig` as JSON."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="runs")
    config = models.JSONField()
    name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    epoch = models.PositiveIntegerField(default=0)
    total_epochs = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")
    device = models.CharField(max_length=100, blank=True, default="")
    fraction = models.FloatField(null=True, blank=True)
    val_accuracy = models.FloatField(null=True, blank=True)
    artifact_bytes = models.BigIntegerField(default=0)
    tags = models.JSONField(default=list, blank=True)
    tag_index = models.CharField(max_length=1100, blank=True, default="", db_index=True)  # "|a|b|", to filter by tag
    best_accuracy = models.FloatField(null=True, blank=True)
    # What the run is doing now (`masksel_core.PHASES`: warmup, select, finalize, final), and once it ended:
    # its model's accuracy on the test split and what a user must know before trusting it.
    phase = models.CharField(max_length=16, blank=True, default="")
    test_accuracy = models.FloatField(null=True, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    # Where its time went (`TrainResult.seconds_per_phase`: warmup, select, swap_check, finalize), once it ended.
    seconds_per_phase = models.JSONField(default=dict, blank=True)
    # The run whose network this one started from (`pretrained_run`); its weights were copied at submission.
    pretrained_from = models.PositiveIntegerField(null=True, blank=True)
    notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The lease: at most one worker trains a run; a worker that stops beating loses it.
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    retries = models.JSONField(default=list, blank=True)  # [{"attempt", "reason", "at"}], why each retry happened
    # A run given back for a fault outside it (storage unreachable) waits until then before a worker takes it.
    retry_after = models.DateTimeField(null=True, blank=True)
    # A dynamic run's gallery: the validation inputs whose own masks its page shows each epoch, as 8-bit
    # grey per channel (`worker_services.run_gallery`); empty for static masks.
    gallery = models.JSONField(default=dict, blank=True)
    # Queued runs start highest priority first, then oldest first (QUEUE_ORDER); changeable while queued.
    priority = models.SmallIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "-priority", "id"], name="run_queue_order")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    @property
    def mask_type(self) -> str:
        return str(self.config.get("mask_type", ""))

    @property
    def model_name(self) -> str:
        return str(self.config.get("model", ""))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def artifact_dir(self) -> Any:
        """This host's directory of the run's files (`run_files.work_dir`: the stored one on the filesystem)."""
        return run_files.work_dir(self.pk)


class EpochMetric(models.Model):
    """One epoch of one run, with its discrete mask as packed bits (one bit per element)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="epochs")
    epoch = models.PositiveIntegerField()
    task_loss = models.FloatField()
    mask_loss = models.FloatField()
    val_accuracy = models.FloatField()
    lambda_value = models.FloatField()
    tau = models.FloatField()
    fraction = models.FloatField()
    phase = models.CharField(max_length=16, default="select")
    mask_shape = models.JSONField(default=list)
    mask_bits = models.BinaryField()
    # Dynamic masks: how often each cell was kept on validation (one byte per cell, 255 = always) and the
    # cells kept for each gallery input (packed bits, (G, *mask_shape)); empty for static masks.
    frequency_bytes = models.BinaryField(default=b"", blank=True)
    gallery_bits = models.BinaryField(default=b"", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "epoch"]
        constraints = [models.UniqueConstraint(fields=["run", "epoch"], name="unique_run_epoch")]

    def metrics(self) -> dict[str, Any]:
        """The contract's metric record: `{"epoch": n, <metrics.csv columns>...}` (`lambda` is stored as
        `lambda_value`)."""
        return {column: getattr(self, "lambda_value" if column == "lambda" else column) for column in METRIC_COLUMNS}

    def selected(self) -> np.ndarray:
        count = int(np.prod(self.mask_shape)) if self.mask_shape else 0
        bits = np.unpackbits(np.frombuffer(bytes(self.mask_bits), dtype=np.uint8), count=count)
        return bits.reshape(self.mask_shape).astype(np.uint8)


class WorkerNode(models.Model):
    """A Celery worker process as it last reported itself (every few seconds while it is up)."""

    name = models.CharField(max_length=200, unique=True)
    device = models.CharField(max_length=100, blank=True, default="")
    gpu_memory_mb = models.PositiveIntegerField(null=True, blank=True)
    queue = models.CharField(max_length=100, blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()
    current_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Since when it has held no run (None while it trains): a queued run beside a worker idle for long is a fault.
    idle_since = models.DateTimeField(null=True, blank=True)
    stopped = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    """The one row that names this installation (`jobs.queues.deployment`): its queues carry the name, so that two
    installations that share a Redis database never take each other's messages."""

    key = models.CharField(max_length=32, unique=True)

    def __str__(self) -> str:
        return self.key


class StudyStatus(models.TextChoices):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Study(models.Model):
    """A multi-objective search over run options: Optuna asks for each trial's options and is told each result
    (`study_services`), and these rows, with the trials', are the whole record: the sampler is rebuilt from them
    for every question, so nothing of a study lives outside the database."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studies")
    name = models.CharField(max_length=200)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="studies")
    base = models.JSONField(default=dict)  # run options every trial starts from
    space = models.JSONField(default=dict)  # option -> {"low", "high", "log"} or {"choices": [...]}
    objectives = models.JSONField(default=list)  # [{"metric", "direction"}]
    trials = models.PositiveIntegerField()  # how many trials in all
    parallel = models.PositiveIntegerField(default=1)  # how many may be queued or running at once
    seed = models.IntegerField(default=0)  # the sampler's, so that a study can be run again alike
    status = models.CharField(max_length=16, choices=StudyStatus.choices, default=StudyStatus.RUNNING)
    error = models.TextField(blank=True, default="")
    pareto = models.JSONField(default=list, blank=True)  # the run ids of the non-dominated trials, kept at each tell
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"study {self.pk} ({self.status})"


class TrialState(models.TextChoices):
    """Optuna's states of a trial, as far as a study here has them."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


class Trial(models.Model):
    """One point of a study: the options Optuna asked for, the run that trains them, and the objectives' values
    once it succeeded (in the order of the study's objectives)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="trial_rows")
    number = models.PositiveIntegerField()
    run = models.OneToOneField(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="trial")
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=TrialState.choices, default=TrialState.RUNNING)
    values = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["study", "number"]
        constraints = [models.UniqueConstraint(fields=["study", "number"], name="unique_study_trial")]

    def __str__(self) -> str:
        return f"trial {self.number} of study {self.study_id}"

"""One serializer per shape the REST API sends: the views build their responses with these, and `/api/schema/` is
generated from the same classes, so the two cannot drift apart (what requests send is in `inputs`).

A run's options are generated from `TrainConfig`'s fields (`config_field`), so the schema lists exactly the options
the service accepts; the metric row from `masksel_core.METRIC_COLUMNS`, the one list of metric columns.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from masksel_core import METRIC_COLUMNS, OPTION_HELP, PHASES, TrainConfig

from .models import (
    Dataset,
    MaskConfig,
    Run,
    RunStatus,
    Study,
    StudyStatus,
    Trial,
    TrialState,
)
from .study_spec import DIRECTIONS, OBJECTIVE_METRICS

DEFAULTS = TrainConfig()


class Error(serializers.Serializer):
    error = serializers.CharField(help_text="what is wrong, naming the field or problem")


class DatasetSerializer(serializers.ModelSerializer):
    builtin = serializers.SerializerMethodField()
    input_shape = serializers.ListField(child=serializers.IntegerField(), help_text="[C, H, W]")
    channel_names = serializers.ListField(child=serializers.CharField())
    owned = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "name", "builtin", "uri", "input_shape", "num_classes", "num_train", "num_test",
                  "channel_names", "test_held_out", "owned"]
        extra_kwargs = {"test_held_out": {"help_text": "the file had no x_test: the test split is a stratified "
                                                       "share of its x_train, the same on every load"},
                        "uri": {"help_text": "a registered zarr store's path or s3:// URI; empty for uploads and "
                                             "built-ins"}}

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="the built-in's name; null for uploads"))
    def get_builtin(self, row: Dataset) -> str | None:
        return row.builtin or None

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_owned(self, row: Dataset) -> bool:
        return row.owner_id is not None


def _metric_field(column: str) -> serializers.Field:
    if column == "epoch":
        return serializers.IntegerField()
    if column == "phase":
        return serializers.ChoiceField(choices=list(PHASES), help_text="warmup: the network alone on the initial "
                                       "mask's input; select: masks and network; finalize: the network alone behind "
                                       "the frozen mask; final: the model written, where it is an earlier epoch's")
    return serializers.FloatField()


#: One epoch's record: the `metrics.csv` columns (`lambda` is a Python keyword, hence the dynamic class).
MetricRow = type("MetricRow", (serializers.Serializer,), {column: _metric_field(column) for column in METRIC_COLUMNS})


def config_field(field: dataclasses.Field) -> serializers.Field:  # type: ignore[type-arg]
    kind, default = str(field.type), getattr(DEFAULTS, field.name)
    help_text = f"{OPTION_HELP[field.name]} (default: {default})"
    if field.name in ("grid", "server_view"):  # [rows, columns]
        return serializers.ListField(child=serializers.IntegerField(), required=False,
                                     allow_null=field.name == "server_view", help_text=help_text)
    if kind.startswith("bool"):
        return serializers.BooleanField(required=False, help_text=help_text)
    if kind.startswith("int"):
        return serializers.IntegerField(required=False, help_text=help_text)
    if kind.startswith("float"):
        return serializers.FloatField(required=False, allow_null="None" in kind, help_text=help_text)
    if kind.startswith("list"):
        return serializers.ListField(required=False, allow_null=True, help_text=help_text)
    return serializers.CharField(required=False, allow_null="None" in kind, help_text=help_text)


#: A run's options as stored and served: every TrainConfig field, defined once in masksel_core.
RunConfig = type("RunConfig", (serializers.Serializer,), {
    f.name: config_field(f) for f in dataclasses.fields(TrainConfig)})


class RunSerializer(serializers.ModelSerializer):
    """A run as the API and the websocket snapshot show it; with `context={"latest": False}` (lists) its latest
    epoch is left out, which saves a query per run."""

    status = serializers.ChoiceField(choices=RunStatus.values)
    dataset_name = serializers.CharField(source="dataset.name")
    mask_type = serializers.CharField()
    model = serializers.CharField(source="model_name")
    config = RunConfig()
    phase = serializers.CharField(help_text="what the run is doing now (warmup, select, finalize, final); empty "
                                            "before its first epoch")
    test_accuracy = serializers.FloatField(allow_null=True, help_text="the written model on the test split, once "
                                           "the run succeeded")
    warnings = serializers.ListField(child=serializers.CharField(), help_text="what to know before trusting the "
                                     "result: an empty mask, accuracy near chance, a target not reached, ...")
    pretrained_run = serializers.IntegerField(source="pretrained_from", allow_null=True,
                                              help_text="the run whose network this one started from")
    tags = serializers.ListField(child=serializers.CharField())
    retries = serializers.ListField(child=serializers.DictField(), help_text="why each retry happened")
    priority = serializers.IntegerField(help_text="queued runs start highest priority first, then oldest first")
    seconds_per_phase = serializers.DictField(child=serializers.FloatField(), help_text="where a finished run's "
                                              "time went: warmup, select, swap_check, finalize (seconds)")
    worker_lost = serializers.SerializerMethodField(help_text="running, but its worker stopped renewing the lease")
    latest = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "name", "status", "epoch", "total_epochs", "dataset", "dataset_name", "mask_type", "model",
                  "config", "error", "worker", "device", "fraction", "val_accuracy", "best_accuracy", "phase",
                  "test_accuracy", "warnings", "pretrained_run", "created_at", "started_at", "finished_at",
                  "heartbeat_at", "tags", "notes", "attempts", "worker_lost", "retries", "priority",
                  "seconds_per_phase", "latest"]

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_worker_lost(self, run: Run) -> bool:
        if run.status != RunStatus.RUNNING or run.heartbeat_at is None:
            return False
        return run.heartbeat_at < timezone.now() - timedelta(seconds=settings.MASKSEL_STALE_SECONDS)

    @extend_schema_field(MetricRow(allow_null=True))
    def get_latest(self, run: Run) -> dict[str, Any] | None:
        if not self.context.get("latest", True):
            return None
        row = run.epochs.order_by("-epoch").first()
        return row.metrics() if row else None


class RunCreated(serializers.ModelSerializer):
    class Meta:
        model = Run
        fields = ["id", "status"]


class MaskConfigSerializer(serializers.ModelSerializer):
    config = serializers.DictField(help_text="run options (no dataset)")

    class Meta:
        model = MaskConfig
        fields = ["id", "name", "config"]


class BatchResult(serializers.Serializer):
    results = serializers.DictField(child=serializers.CharField(), help_text='run id -> "ok" or why not')
    created = serializers.DictField(child=serializers.IntegerField(), help_text="requeue: old run id -> the new "
                                    "run that trains it again (the old run keeps its epochs and files)")


class Preview(serializers.Serializer):
    height = serializers.IntegerField()
    width = serializers.IntegerField()
    channel_names = serializers.ListField(child=serializers.CharField())
    channels_total = serializers.IntegerField()
    samples = serializers.ListField(child=serializers.DictField(), help_text='{"label": n, "channels": [base64 '
                                    '8-bit grey image per channel]} for the first sample of each class')


class Objective(serializers.Serializer):
    metric = serializers.ChoiceField(choices=list(OBJECTIVE_METRICS))
    direction = serializers.ChoiceField(choices=list(DIRECTIONS))


class TrialSerializer(serializers.ModelSerializer):
    state = serializers.ChoiceField(choices=TrialState.values)
    params = serializers.DictField(help_text="the run options Optuna chose")
    values = serializers.ListField(child=serializers.FloatField(), allow_null=True, help_text="the objectives' "
                                   "values in the study's order, once the run succeeded")

    class Meta:
        model = Trial
        fields = ["number", "run", "state", "params", "values", "error"]


class StudySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=StudyStatus.values)
    dataset_name = serializers.CharField(source="dataset.name")
    objectives = Objective(many=True)
    n_trials = serializers.IntegerField(source="trials", help_text="how many trials the study runs in all")
    trials = TrialSerializer(source="trial_rows", many=True)
    pareto = serializers.ListField(child=serializers.IntegerField(), help_text="run ids of the trials no other "
                                   "trial beats on every objective")

    class Meta:
        model = Study
        fields = ["id", "name", "status", "error", "dataset", "dataset_name", "base", "space", "objectives",
                  "n_trials", "parallel", "seed", "trials", "pareto", "created_at", "finished_at"]


class StudyCreated(serializers.ModelSerializer):
    class Meta:
        model = Study
        fields = ["id", "status"]

"""One serializer per shape the REST API sends or takes: the views build their responses with these, and
`/api/schema/` is generated from the same classes, so the two cannot drift apart.

The run request is generated from `TrainConfig`'s fields, so the schema lists exactly the options the service
accepts; the metric row from `masksel_core.METRIC_COLUMNS`, the one list of metric columns.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from masksel_core import METRIC_COLUMNS, OPTION_HELP, PHASES, TrainConfig

from .errors import ServiceError, flatten
from .models import (
    MAX_NAME,
    MAX_NOTES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    PRIORITY_RANGE,
    Dataset,
    MaskConfig,
    Run,
    RunStatus,
    Study,
    StudyStatus,
    Trial,
    TrialState,
)
from .study_spec import DIRECTIONS, MAX_TRIALS, OBJECTIVE_METRICS

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


class DatasetUpload(serializers.Serializer):
    file = serializers.FileField(help_text=".npz with x_train (N,C,H,W) or (N,H,W) and y_train (N,)")
    name = serializers.CharField(required=False)


class DatasetRegister(serializers.Serializer):
    """A zarr store registered where it lies (inside the operator's MASKSEL_DATA_ROOTS), never copied."""

    uri = serializers.CharField(max_length=1000, help_text="path/to/set.zarr or s3://bucket/prefix")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


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


def _config_field(field: dataclasses.Field) -> serializers.Field:  # type: ignore[type-arg]
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
    f.name: _config_field(f) for f in dataclasses.fields(TrainConfig)})


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


def parse(serializer: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """A request parsed at the edge by its input serializer: the fields given, checked and typed, or a ServiceError
    naming each bad field (the API answers it with a 400, a page's form shows it at the field)."""
    if not isinstance(data, Mapping):
        raise ServiceError("the body must be a JSON object")
    given = serializer(data=data)
    if not given.is_valid():
        raise ServiceError(flatten(given.errors))
    return dict(given.validated_data)


class Text(serializers.CharField):
    """Text only: DRF's CharField would take the number 5 for "5"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Id(serializers.IntegerField):
    """A JSON number only: DRF's IntegerField would take "1" for 1."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def _text(name: str, limit: int, **options: Any) -> Text:
    message = f"{name} must be text of at most {limit} characters"
    return Text(required=False, allow_blank=True, max_length=limit, error_messages={"invalid": message,
                "max_length": message}, **options)


_TAGS = "tags must be a list of non-empty strings"
_TAG_LIMIT = f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters"
_PRIORITY = (f"priority must be a whole number from {PRIORITY_RANGE[0]} to {PRIORITY_RANGE[1]} (higher starts "
             "first)")
PRETRAINED_IS_CLI_ONLY = ("pretrained names a file on the server and is for the command line only; over the web, "
                          "start from one of your succeeded runs with pretrained_run (its id)")


class Annotations(serializers.Serializer):
    """A run's name, tags, notes and priority: the fields a user may change (PATCH), and part of a new run."""

    name = _text("name", MAX_NAME, help_text=f"at most {MAX_NAME} characters")
    tags = serializers.ListField(child=Text(max_length=MAX_TAG_LENGTH, error_messages={
        "invalid": _TAGS, "blank": _TAGS, "max_length": _TAG_LIMIT}), max_length=MAX_TAGS, required=False,
        error_messages={"not_a_list": _TAGS, "max_length": _TAG_LIMIT}, help_text=_TAG_LIMIT)
    notes = _text("notes", MAX_NOTES, trim_whitespace=False)
    priority = serializers.IntegerField(required=False, min_value=PRIORITY_RANGE[0], max_value=PRIORITY_RANGE[1],
                                        error_messages=dict.fromkeys(("invalid", "null", "min_value", "max_value",
                                                                      "max_string_length"), _PRIORITY),
                                        help_text="queued runs start highest priority first; changeable while queued")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [
                f"only name, tags, notes and priority can be changed, not {', '.join(unknown)}"]})
        return super().to_internal_value(data)

    def validate_tags(self, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))  # each once, in the order given


class RunRequest(Annotations):
    """A run request: its own fields parsed here; every other key is a run option (`options`), which
    `TrainConfig.from_dict` parses in the service, as it does the CLI's flags and the form's fields."""

    dataset = serializers.IntegerField(help_text="id of a data set you may use", error_messages={
        "required": "dataset is required", "invalid": "dataset must be a dataset id"})
    mask_config = serializers.IntegerField(required=False, help_text="id of a saved configuration whose options fill "
                                           "in what the request leaves out", error_messages={
                                               "invalid": "mask_config must be the id of a saved configuration"})
    pretrained_run = Id(required=False, allow_null=True, help_text="start from the network of "
                                              "one of your succeeded runs (same model, input and classes); no warm-up",
                                              error_messages={"invalid": "pretrained_run must be the id of one of "
                                                              "your succeeded runs"})

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if data.get("pretrained") is not None:
            raise serializers.ValidationError({"pretrained": PRETRAINED_IS_CLI_ONLY})
        own = {key: value for key, value in data.items() if key in self.fields}
        parsed = serializers.Serializer.to_internal_value(self, own)
        parsed["options"] = {key: value for key, value in data.items() if key not in {*self.fields, "pretrained"}}
        return parsed


def _numbers(name: str) -> serializers.ListField:
    message = f"{name} must be a non-empty list of numbers"
    return serializers.ListField(child=serializers.FloatField(error_messages={"invalid": message}), allow_empty=False,
                                 error_messages=dict.fromkeys(("required", "not_a_list", "empty"), message),
                                 help_text="the values to try, one run each")


class SweepRequest(RunRequest):
    """A sweep: the options of one run, with `lambda_init` and `lambda_factor` lists and `seeds` a count; `name` is
    the tag every run of the sweep gets."""

    name = _text("name", MAX_TAG_LENGTH, help_text="the sweep's tag (default: sweep- and the time)")
    lambda_init = _numbers("lambda_init")
    lambda_factor = _numbers("lambda_factor")
    seeds = serializers.IntegerField(required=False, min_value=1, error_messages=dict.fromkeys(
        ("invalid", "min_value"), "seeds must be a positive integer"), help_text="runs per cell (seed, seed+1, ...)")


_CONFIG_NAME = "name is required (at most 100 characters)"


class MaskConfigRequest(serializers.Serializer):
    """A configuration to save: a name and run options (checked by `TrainConfig` in the service)."""

    name = Text(max_length=100, error_messages=dict.fromkeys(("required", "blank", "invalid", "max_length"),
                                                             _CONFIG_NAME))
    config = serializers.DictField(help_text="run options (no dataset)", error_messages=dict.fromkeys(
        ("required", "not_a_dict"), "config must be a JSON object of run options (without the dataset)"))


#: The run request as the schema shows it: its own fields and every TrainConfig option (parsed by the service).
RunCreate = type("RunCreate", (RunRequest,), {
    f.name: _config_field(f) for f in dataclasses.fields(TrainConfig) if f.name != "pretrained"})


class RunCreated(serializers.ModelSerializer):
    class Meta:
        model = Run
        fields = ["id", "status"]


class MaskConfigSerializer(serializers.ModelSerializer):
    config = serializers.DictField(help_text="run options (no dataset)")

    class Meta:
        model = MaskConfig
        fields = ["id", "name", "config"]


@extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
class RunIds(serializers.Field):
    """Run ids as a request gives them: `"1,2,3"` in a query, `[1, 2, 3]` in a body."""

    def to_internal_value(self, data: Any) -> list[int]:
        if isinstance(data, str):
            parts = [part.strip() for part in data.split(",") if part.strip()]
            if parts and all(part.isdigit() for part in parts):
                return [int(part) for part in parts]
        elif isinstance(data, list) and data and all(isinstance(i, int) and not isinstance(i, bool) for i in data):
            return list(data)
        raise serializers.ValidationError(f"{self.field_name} must be a non-empty list of run ids (e.g. 1,2,3), "
                                          f"got {data!r}")

    def to_representation(self, value: list[int]) -> list[int]:
        return value


class RunListQuery(serializers.Serializer):
    ids = RunIds(required=False, help_text="only these runs (comma-separated ids)")


class CompareQuery(serializers.Serializer):
    runs = RunIds(error_messages={"required": "runs must name the runs to compare, e.g. ?runs=1,2,3"})


_IDS_MESSAGE = "ids must be a non-empty list of run ids (e.g. [1, 2, 3])"


class BatchRequest(serializers.Serializer):
    """Parsed at the edge: the view hands the service an action it knows and a list of ids."""

    action = serializers.ChoiceField(choices=["cancel", "requeue", "delete"], error_messages={
        "invalid_choice": "unknown action {input!r}; choose one of cancel, requeue, delete",
        "required": "action is required: cancel, requeue or delete"})
    ids = RunIds(error_messages={"required": _IDS_MESSAGE})


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


class StudyCreate(serializers.Serializer):
    """A study request (documentation of the body; `study_spec.check` checks it whole and names every bad field)."""

    name = serializers.CharField(required=False, help_text="at most 200 characters")
    dataset = serializers.IntegerField(help_text="id of a data set you may use")
    base = serializers.DictField(required=False, help_text="run options every trial starts from (any TrainConfig "
                                 "option)")
    space = serializers.DictField(help_text='run option -> {"low": .., "high": .., "log": false} (numeric options) '
                                  'or {"choices": [...]} (any option)')
    objectives = Objective(many=True, help_text="two or three, in order")
    trials = serializers.IntegerField(min_value=1, max_value=MAX_TRIALS, help_text="how many trials in all")
    parallel = serializers.IntegerField(required=False, min_value=1, help_text="how many may be queued or running "
                                        "at once (default 1)")
    seed = serializers.IntegerField(required=False, min_value=0, help_text="the sampler's seed (default: base's)")


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

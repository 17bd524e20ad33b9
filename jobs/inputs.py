"""What requests send: one input serializer per body or query, so that a request is parsed once, at the edge.

The views and the API hand the services what `parse` returns (checked, typed keyword arguments), or answer the
ServiceError it raises with a message naming each bad field. A run's options are the exception by design: they
pass through (`RunRequest`'s `options`) to `TrainConfig.from_dict`, the one parser of options that the CLI and
the form share. The shapes the API sends back are in `serializers`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from masksel_core import TrainConfig

from .errors import ServiceError, flatten
from .models import MAX_ID, MAX_IDS, MAX_NAME, MAX_NOTES, MAX_TAG_LENGTH, MAX_TAGS, PRIORITY_RANGE, id_from_text
from .serializers import Objective, config_field
from .study_spec import MAX_TRIALS


class DatasetUpload(serializers.Serializer):
    file = serializers.FileField(help_text=".npz with x_train (N,C,H,W) or (N,H,W) and y_train (N,)")
    name = serializers.CharField(required=False)


class DatasetRegister(serializers.Serializer):
    """A zarr store registered where it lies (inside the operator's MASKSEL_DATA_ROOTS), never copied."""

    uri = serializers.CharField(max_length=1000, help_text="path/to/set.zarr or s3://bucket/prefix")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


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
    f.name: config_field(f) for f in dataclasses.fields(TrainConfig) if f.name != "pretrained"})


@extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
class RunIds(serializers.Field):
    """Run ids as a request gives them: `"1,2,3"` in a query, `[1, 2, 3]` in a body."""

    allow_blank = True  # an empty `?ids=` reaches `to_internal_value` (and is refused there), not "not given"

    def to_internal_value(self, data: Any) -> list[int]:
        ids = data
        if isinstance(data, str):
            ids = [id_from_text(part.strip()) for part in data.split(",") if part.strip()]
        if isinstance(ids, list) and len(ids) > MAX_IDS:
            raise serializers.ValidationError(f"{self.field_name} may name at most {MAX_IDS} runs, got {len(ids)}")
        if isinstance(ids, list) and ids and all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID
                                                 for i in ids):
            return list(ids)
        shown = repr(data) if len(repr(data)) <= 200 else repr(data)[:200] + "..."
        raise serializers.ValidationError(f"{self.field_name} must be a non-empty list of run ids (e.g. 1,2,3), "
                                          f"got {shown}")

    def to_representation(self, value: list[int]) -> list[int]:
        return value


class RunListQuery(serializers.Serializer):
    ids = RunIds(required=False, help_text="only these runs (comma-separated ids)")


def _query_id(message: str) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, error_messages={
        "invalid": message, "min_value": message, "max_value": message, "max_string_length": message})


class NewRunQuery(serializers.Serializer):
    """What the new-run page is opened with: `?clone=<run>`, `?config=<saved configuration>`, `?dataset=<id>`."""

    clone = _query_id("clone must be the id of a run")
    config = _query_id("config must be the id of a saved configuration")
    dataset = _query_id("dataset must be the id of a data set")


class CompareQuery(serializers.Serializer):
    runs = RunIds(error_messages={"required": "runs must name the runs to compare, e.g. ?runs=1,2,3"})


_IDS_MESSAGE = "ids must be a non-empty list of run ids (e.g. [1, 2, 3])"


class BatchRequest(serializers.Serializer):
    """Parsed at the edge: the view hands the service an action it knows and a list of ids."""

    action = serializers.ChoiceField(choices=["cancel", "requeue", "delete"], error_messages={
        "invalid_choice": "unknown action {input!r}; choose one of cancel, requeue, delete",
        "required": "action is required: cancel, requeue or delete"})
    ids = RunIds(error_messages={"required": _IDS_MESSAGE})


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

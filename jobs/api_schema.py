"""Serializers that document the REST API in the OpenAPI schema (`/api/schema/`, `/api/docs/`).

The views build their JSON from selectors; these classes only describe it. The run request is
generated from `TrainConfig`'s fields, so the schema lists exactly the options the service accepts.
"""
from __future__ import annotations

import dataclasses

from rest_framework import serializers

from masksel_core import PHASES, TrainConfig

DEFAULTS = TrainConfig()


class Error(serializers.Serializer):
    error = serializers.CharField(help_text="what is wrong, naming the field or problem")


class DatasetOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    builtin = serializers.CharField(allow_null=True)
    input_shape = serializers.ListField(child=serializers.IntegerField(), help_text="[C, H, W]")
    num_classes = serializers.IntegerField()
    num_train = serializers.IntegerField()
    num_test = serializers.IntegerField()
    channel_names = serializers.ListField(child=serializers.CharField())
    owned = serializers.BooleanField()


class DatasetUpload(serializers.Serializer):
    file = serializers.FileField(help_text=".npz with x_train (N,C,H,W) or (N,H,W) and y_train (N,)")
    name = serializers.CharField(required=False)


def _config_field(field: dataclasses.Field) -> serializers.Field:  # type: ignore[type-arg]
    kind, default = str(field.type), getattr(DEFAULTS, field.name)
    help_text = f"default: {default}"
    if field.name == "grid":
        return serializers.ListField(child=serializers.IntegerField(), required=False, help_text=help_text)
    if kind.startswith("bool"):
        return serializers.BooleanField(required=False, help_text=help_text)
    if kind.startswith("int"):
        return serializers.IntegerField(required=False, help_text=help_text)
    if kind.startswith("float"):
        return serializers.FloatField(required=False, allow_null="None" in kind, help_text=help_text)
    if kind.startswith("list"):
        return serializers.ListField(required=False, allow_null=True, help_text=help_text)
    return serializers.CharField(required=False, allow_null="None" in kind, help_text=help_text)


RunCreate = type("RunCreate", (serializers.Serializer,), {
    "dataset": serializers.IntegerField(help_text="id of a data set you may use"),
    **{f.name: _config_field(f) for f in dataclasses.fields(TrainConfig)},
})


class RunCreated(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


class MetricRow(serializers.Serializer):
    epoch = serializers.IntegerField()
    task_loss = serializers.FloatField()
    mask_loss = serializers.FloatField()
    val_accuracy = serializers.FloatField()
    # "lambda" is a Python keyword: declared below.
    tau = serializers.FloatField()
    fraction = serializers.FloatField()
    phase = serializers.ChoiceField(choices=list(PHASES), help_text="warmup: the network alone on the initial "
                                    "mask's input; select: masks and network; finalize: the network alone behind "
                                    "the frozen mask; final: the model written, where it is an earlier epoch's")


MetricRow._declared_fields["lambda"] = serializers.FloatField()  # noqa: SLF001


class RunOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed", "cancelled"])
    epoch = serializers.IntegerField()
    total_epochs = serializers.IntegerField()
    dataset = serializers.IntegerField()
    dataset_name = serializers.CharField()
    mask_type = serializers.CharField()
    model = serializers.CharField()
    config = serializers.DictField()
    error = serializers.CharField()
    worker = serializers.CharField()
    device = serializers.CharField()
    fraction = serializers.FloatField(allow_null=True)
    val_accuracy = serializers.FloatField(allow_null=True)
    best_accuracy = serializers.FloatField(allow_null=True)
    phase = serializers.CharField(help_text="what the run is doing now (warmup, select, finalize, final); "
                                            "empty before its first epoch")
    test_accuracy = serializers.FloatField(allow_null=True, help_text="the written model on the test split, "
                                           "once the run succeeded")
    warnings = serializers.ListField(child=serializers.CharField(), help_text="what to know before trusting the "
                                     "result: an empty mask, accuracy near chance, a target not reached, ...")
    tags = serializers.ListField(child=serializers.CharField())
    notes = serializers.CharField()
    attempts = serializers.IntegerField()
    worker_lost = serializers.BooleanField()
    retries = serializers.ListField(child=serializers.DictField())
    priority = serializers.IntegerField(help_text="queued runs start highest priority first, then oldest first")
    latest = MetricRow(allow_null=True)


class RunAnnotate(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    notes = serializers.CharField(required=False)
    priority = serializers.IntegerField(required=False, min_value=-10, max_value=10,
                                        help_text="only while the run is queued; higher starts first")

from __future__ import annotations

from django.contrib import admin

from .models import Dataset, EpochMetric, MaskConfig, Run, Study, Trial, WorkerNode


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "builtin", "input_shape", "num_classes", "num_train", "num_test")


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "dataset", "status", "epoch", "total_epochs", "fraction", "val_accuracy")
    list_filter = ("status",)


@admin.register(EpochMetric)
class EpochMetricAdmin(admin.ModelAdmin):
    list_display = ("run", "epoch", "val_accuracy", "fraction", "lambda_value", "tau")
    exclude = ("mask_bits",)


@admin.register(MaskConfig)
class MaskConfigAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "created_at")


@admin.register(WorkerNode)
class WorkerNodeAdmin(admin.ModelAdmin):
    list_display = ("name", "device", "gpu_memory_mb", "queue", "last_seen", "current_run", "stopped")


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "dataset", "status", "trials", "parallel", "created_at")
    list_filter = ("status",)


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ("study", "number", "run", "state", "values")

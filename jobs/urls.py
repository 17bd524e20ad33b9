from __future__ import annotations

from django.urls import path

from . import study_views, views

urlpatterns = [
    path("runs/", views.run_list, name="run-list"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/sweep/", views.run_sweep, name="run-sweep"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("compare/", views.compare, name="compare"),
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("workers/", views.workers, name="workers"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset-detail"),
    path("compare/metrics.csv", views.compare_csv, name="compare-csv"),
    path("studies/", study_views.study_list, name="study-list"),
    path("studies/new/", study_views.study_new, name="study-new"),
    path("studies/<int:study_id>/", study_views.study_detail, name="study-detail"),
]

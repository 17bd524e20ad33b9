from __future__ import annotations

import re

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from . import api, downloads

urlpatterns = [
    path("auth/token/", obtain_auth_token),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("datasets/", api.DatasetList.as_view()),
    path("datasets/<int:dataset_id>/", api.DatasetDetail.as_view()),
    path("datasets/<int:dataset_id>/preview/", api.DatasetPreview.as_view()),
    path("datasets/<int:dataset_id>/samples/", api.DatasetSamples.as_view()),
    path("runs/", api.RunList.as_view()),
    path("sweeps/", api.SweepCreate.as_view()),
    path("configs/", api.MaskConfigList.as_view()),
    path("runs/batch/", api.RunBatch.as_view()),
    path("runs/<int:run_id>/", api.RunDetail.as_view()),
    path("runs/<int:run_id>/metrics/", api.RunMetrics.as_view()),
    path("runs/<int:run_id>/cancel/", api.RunCancel.as_view()),
    path("studies/", api.StudyList.as_view()),
    path("studies/<int:study_id>/", api.StudyDetail.as_view()),
    path("studies/<int:study_id>/cancel/", api.StudyCancel.as_view()),
    re_path(rf"^runs/(?P<run_id>\d+)/(?P<name>{'|'.join(re.escape(name) for name in downloads.NAMES)})$",
            api.RunDownload.as_view()),
    re_path(r"^", api.not_found),  # the rest: JSON, as every API error is (Django's 404 page is HTML)
]

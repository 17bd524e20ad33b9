from __future__ import annotations

from django.urls import path

from .consumers import RunConsumer, StudyConsumer

websocket_urlpatterns = [path("ws/runs/<int:run_id>/", RunConsumer.as_asgi()),
                         path("ws/studies/<int:study_id>/", StudyConsumer.as_asgi())]

"""URL wiring: pages, REST API, login and admin."""
from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/runs/", permanent=False)),
    # Browsers ask for /favicon.ico on pages that name no icon (the API's JSON, the admin).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("jobs.api_urls")),
    path("", include("jobs.urls")),
]

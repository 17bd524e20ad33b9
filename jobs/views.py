"""Server-rendered pages; live updates come from `static/js/run_detail.js` over the websocket."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from . import selectors, services
from .forms import RunForm


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    runs = selectors.runs_visible_to(request.user)[:200]
    return render(request, "runs/list.html", {"runs": runs})


@login_required
def run_new(request: HttpRequest) -> HttpResponse:
    datasets = selectors.datasets_visible_to(request.user)
    form = RunForm(request.POST or None, datasets=datasets)
    if request.method == "POST" and form.is_valid():
        try:
            run = services.run_create(owner=request.user, data=form.run_data())
        except services.ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("run-detail", run_id=run.pk)
    return render(request, "runs/new.html", {"form": form})


@login_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get(request.user, run_id)
    return render(request, "runs/detail.html", {"run": run})

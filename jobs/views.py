"""Server-rendered pages; live updates come from `static/js/run_detail.js` over the websocket."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render

from masksel_core import MASK_NAMES, METRIC_COLUMNS, TEST_SHARE

from . import selectors, services
from .errors import NotFound, ServiceError
from .forms import RunForm, SweepForm
from .inputs import CompareQuery, NewRunQuery, RunRequest, SweepRequest, parse
from .models import MaskConfig, RunStatus

#: The share of an uploaded file without x_test held out as its test split, as the pages say it.
TEST_PERCENT = round(TEST_SHARE * 100)


def page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A logged-in user's page; the service's NotFound becomes Django's 404 page."""

    @login_required
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(str(exc)) from None
        except ServiceError as exc:  # a malformed address, e.g. /compare/?runs=x
            return HttpResponseBadRequest(str(exc))

    return wrapped


@page
def run_list(request: HttpRequest) -> HttpResponse:
    page, filters = selectors.runs_page(request.user, request.GET)
    query = urlencode({key: value for key, value in filters.items() if value})
    return render(request, "runs/list.html", {
        "runs": page.object_list, "page": page, "filters": filters, "query": query,
        "datasets": selectors.datasets_visible_to(request.user), "statuses": RunStatus.values,
        "mask_types": MASK_NAMES,
    })


@page
def run_new(request: HttpRequest) -> HttpResponse:
    datasets = selectors.datasets_visible_to(request.user)
    query = _new_run_query(request)
    configs = selectors.mask_configs_of(request.user)
    config = next((c for c in configs if c.pk == query.get("config")), None)
    if "config" in query and config is None:
        raise Http404("no such saved configuration")
    form = RunForm(request.POST or None, datasets=datasets, initial=_initial_for(request, query, config))
    config_name = request.POST.get("config_name", "")
    if request.method == "POST" and form.is_valid():
        if request.POST.get("action") == "save":  # the form's options kept as a named configuration
            try:
                saved = services.mask_config_create(owner=request.user, name=config_name, config=form.config_data())
            except ServiceError as exc:
                form.add_error(None, f"Not saved: {exc}")
            else:
                query = urlencode({"config": saved.pk, "dataset": form.run_data()["dataset"]})
                return redirect(f"/runs/new/?{query}")
        else:
            try:
                run = services.run_create(owner=request.user, **parse(RunRequest, form.run_data()))
            except ServiceError as exc:
                form.add_service_error(str(exc))
            else:
                return redirect("run-detail", run_id=run.pk)
    return render(request, "runs/new.html", {"form": form, "configs": configs, "config": config,
                                             "config_name": config_name})


def _new_run_query(request: HttpRequest) -> dict[str, int]:
    """The new-run page's query, parsed (`NewRunQuery`): a query that is not an id is a 404; blank is not given."""
    try:
        return parse(NewRunQuery, {key: value for key, value in request.GET.items() if value})
    except ServiceError as exc:
        raise Http404(str(exc)) from None


def _initial_for(request: HttpRequest, query: dict[str, int], config: MaskConfig | None) -> dict[str, object]:
    """`?clone=<run>` pre-fills every option of an earlier run, `config` (`?config=<id>`) those of a saved
    configuration; `?dataset=<id>` picks the data set. A query that names nothing of the user's is a 404."""
    initial: dict[str, object] = {}
    if "clone" in query:
        source = selectors.run_get(request.user, query["clone"])
        initial.update({key: value for key, value in source.config.items() if value is not None})
        initial["dataset"] = source.dataset_id
        initial["priority"] = source.priority
        initial["tags"] = source.tags
    if config is not None:
        initial.update(config.config)
    if "dataset" in query:
        initial["dataset"] = selectors.dataset_get(request.user, query["dataset"]).pk
    return initial


@page
def run_sweep(request: HttpRequest) -> HttpResponse:
    form = SweepForm(request.POST or None, datasets=selectors.datasets_visible_to(request.user))
    if request.method == "POST" and form.is_valid():
        try:
            runs = services.run_sweep(owner=request.user, **parse(SweepRequest, form.run_data()))
        except ServiceError as exc:
            form.add_service_error(str(exc))
        else:
            return redirect(f"/runs/?{urlencode({'tag': runs[0].tags[0]})}")
    return render(request, "runs/new.html", {"form": form, "sweep": True, "max_sweep_runs": services.MAX_SWEEP_RUNS})


@page
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get(request.user, run_id)
    waits_for_gpu = run.status == RunStatus.QUEUED and run.config.get("device") == "cuda" and \
        not selectors.gpu_worker_up()
    return render(request, "runs/detail.html", {"run": run, "transfer": selectors.run_transfer(run),
                                                "waits_for_gpu": waits_for_gpu,
                                                "stalled": run.pk in selectors.stalled_run_ids([run])})


@page
def compare(request: HttpRequest) -> HttpResponse:
    runs = selectors.runs_for_compare(request.user, parse(CompareQuery, request.GET)["runs"])
    return render(request, "runs/compare.html", {
        "runs": runs, "differences": selectors.config_differences(runs),
        "payload": selectors.compare_payload(runs), "ids": ",".join(str(run.pk) for run in runs),
    })


@page
def compare_csv(request: HttpRequest) -> HttpResponse:
    """Every epoch of the compared runs, one row each: `run,epoch,<metrics.csv columns>`."""
    runs = selectors.runs_for_compare(request.user, parse(CompareQuery, request.GET)["runs"])
    lines = ["run," + ",".join(METRIC_COLUMNS)]
    for run in runs:
        for row in selectors.run_metrics(run):
            lines.append(f"{run.pk}," + ",".join(str(row[column]) for column in METRIC_COLUMNS))
    payload = ("\n".join(lines) + "\n").encode()
    response = HttpResponse(payload, content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="masksel-compare.csv"'
    response["Content-Length"] = str(len(payload))
    return response


@page
def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = selectors.datasets_visible_to(request.user)
    uploaded = next((d for d in datasets if str(d.pk) == request.GET.get("uploaded")), None)
    return render(request, "datasets/list.html", {
        "datasets": datasets, "max_upload": settings.MASKSEL_MAX_UPLOAD_BYTES, "uploaded": uploaded,
        "data_roots": settings.MASKSEL_DATA_ROOTS,
        "deleted": "deleted" in request.GET, "test_share": TEST_PERCENT})


@page
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get(request.user, dataset_id)
    return render(request, "datasets/detail.html", {
        "dataset": dataset, "test_share": TEST_PERCENT, "run_count": selectors.runs_using(request.user, dataset),
        "deletable": dataset.owner_id == request.user.pk})


@page
def workers(request: HttpRequest) -> HttpResponse:
    return render(request, "workers.html", selectors.workers_and_queue(request.user))

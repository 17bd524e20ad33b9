"""The studies' pages: the list, the new-study form with its presets, and a study's page (live from
`static/js/study.js` over `/ws/studies/<id>/`)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from . import selectors, study_selectors, study_services
from .errors import ServiceError
from .serializers import StudySerializer
from .study_forms import StudyForm
from .study_presets import PRESETS, PRESETS_BY_KEY
from .study_spec import InvalidStudy
from .views import page


@page
def study_list(request: HttpRequest) -> HttpResponse:
    return render(request, "studies/list.html", {"studies": study_selectors.studies_visible_to(request.user)})


@page
def study_new(request: HttpRequest) -> HttpResponse:
    datasets = selectors.datasets_visible_to(request.user)
    preset_error = ""
    if request.method == "POST" and request.POST.get("preset"):
        preset = PRESETS_BY_KEY.get(request.POST["preset"])
        dataset = datasets.filter(builtin=preset.dataset).first() if preset else None
        if preset is None or dataset is None:
            preset_error = "no such preset"
        else:
            try:
                study = study_services.study_create(owner=request.user, data=preset.request(dataset.pk))
            except ServiceError as exc:
                preset_error = f"{preset.title}: {exc}"
            else:
                return redirect("study-detail", study_id=study.pk)
    form = StudyForm(request.POST if request.method == "POST" and not request.POST.get("preset") else None,
                     datasets=datasets)
    if form.is_bound and form.is_valid():
        try:
            study = study_services.study_create(owner=request.user, data=form.study_data())
        except InvalidStudy as exc:
            form.add_study_errors(exc.problems)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("study-detail", study_id=study.pk)
    return render(request, "studies/new.html", {"form": form, "presets": PRESETS, "preset_error": preset_error})


@page
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_selectors.study_get(request.user, study_id)
    return render(request, "studies/detail.html", {"study": study, "payload": StudySerializer(study).data})

"""The new-study form: the run form's options as the base every trial starts from, then the search space and the
objectives. It only collects fields; `study_spec.check` checks the study whole."""
from __future__ import annotations

import json
from typing import Any

from django import forms

from . import parsers
from .forms import RunForm
from .serializers import DEFAULTS
from .study_spec import FIELD_TYPES, MAX_TRIALS, NOT_SEARCHABLE, OBJECTIVE_METRICS

OBJECTIVE_CHOICES = [(f"{metric}:{direction}", f"{metric} {'↑ higher' if direction == 'maximize' else '↓ lower'}")
                     for metric in OBJECTIVE_METRICS for direction in ("maximize", "minimize")]
DEFAULT_SPACE = {"target_fraction": {"low": 0.03, "high": 0.6, "log": True}}


class StudyForm(RunForm):
    name = forms.CharField(label="Study name", required=False, max_length=200,
                           help_text="default: study-<time>; each trial's run is named after it")
    trials = forms.IntegerField(initial=12, min_value=1, max_value=MAX_TRIALS, help_text="runs in all")
    parallel = forms.IntegerField(initial=2, min_value=1, max_value=MAX_TRIALS,
                                  help_text="runs queued or running at once (one per worker is plenty)")
    space = forms.CharField(label="Search space", initial=json.dumps(DEFAULT_SPACE),
                            widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
                            help_text='JSON: option -> {"low", "high", "log"} or {"choices": [...]}; the editor '
                                      "above writes it")
    objective_1 = forms.ChoiceField(label="Objective 1", choices=OBJECTIVE_CHOICES, initial="test_accuracy:maximize")
    objective_2 = forms.ChoiceField(label="Objective 2", choices=OBJECTIVE_CHOICES, initial="fraction:minimize")
    objective_3 = forms.ChoiceField(label="Objective 3", choices=[("", "none"), *OBJECTIVE_CHOICES], required=False)

    GROUPS = (("Study", ("name", "dataset", "trials", "parallel", "objective_1", "objective_2", "objective_3",
                         "space")),
              ("Every trial starts from", tuple(f for f in RunForm.GROUPS[0][1] if f not in ("name", "dataset",
                                                                                            "tags"))),
              *RunForm.GROUPS[1:])
    NOT_FOR_STUDIES = ("tags", "notes", "priority", "pretrained_run")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.NOT_FOR_STUDIES:
            del self.fields[field]
        self.searchable = searchable_options(self)

    def clean_space(self) -> Any:
        try:
            return parsers.loads(self.cleaned_data["space"])
        except ValueError as exc:
            raise forms.ValidationError(f"the space must be JSON: {parsers.problem(exc)}") from None

    def study_data(self) -> dict[str, Any]:
        """What `study_services.study_create` takes."""
        data = dict(self.cleaned_data)
        study = {key: data.pop(key) for key in ("name", "trials", "parallel", "space")}
        chosen = [data.pop(key) for key in ("objective_1", "objective_2", "objective_3")]
        study["objectives"] = [{"metric": value.split(":")[0], "direction": value.split(":")[1]}
                               for value in chosen if value]
        study["dataset"] = data.pop("dataset").pk
        study["base"] = {key: value for key, value in data.items() if value not in (None, "", [])}
        return study

    def add_study_errors(self, problems: dict[str, str]) -> None:
        """Each problem at the field it names (`space.model_lr` at the space, `base` above the form)."""
        for name, problem in problems.items():
            field = name.split(".")[0].split("[")[0]
            if field == "objectives":
                field = "objective_1"
            if field == "base":  # an option of the form's own: put it there
                self.add_service_error(problem)
                continue
            self.add_error(field if field in self.fields else None, f"{name}: {problem}")


def searchable_options(form: forms.Form) -> dict[str, dict[str, Any]]:
    """What the space editor offers: each run option a study may search, as a range (numeric options) or as the
    choices the form's own select offers (mask types, models, ...), with the option's default."""
    found: dict[str, dict[str, Any]] = {}
    for name, kind in sorted(FIELD_TYPES.items()):
        if name in NOT_SEARCHABLE:
            continue
        field = form.fields.get(name)
        choices = [value for value, _ in getattr(field, "choices", []) if value not in ("", None)]
        numeric = kind.startswith(("int", "float"))
        if not numeric and not choices:
            continue
        found[name] = {"numeric": numeric, "integer": kind.startswith("int"), "choices": choices,
                       "default": getattr(DEFAULTS, name)}
    return found

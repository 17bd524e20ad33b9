"""The new-run form; it only collects fields, `services.run_create` validates them."""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from django import forms

from masksel_core import (
    MODELS,
    OPTION_CHOICES,
    OPTION_HELP,
    OPTION_LABELS,
    OPTION_RANGES,
    SELECT_STAGES,
    ConfigError,
    TrainConfig,
    default_mask_type,
    parse_grid,
)

from . import parsers
from .models import PRIORITY_RANGE

MASK_HELP = {
    "channel-any": "keep or drop whole channels",
    "pixel-any": "keep or drop every input value",
    "block-any": "keep or drop cells of a grid per channel",
    "channel-xor": "keep exactly one channel",
    "pixel-xor": "keep one channel per pixel",
    "jpeg-xor": "one JPEG quality (90..10) per channel",
    "jpeg-xor+pixel-any": "one JPEG quality per channel, then pixels",
    "thumb-xor": "one thumbnail scale (1, 1/2, 1/4) per channel",
    "thumb-xor+block-any": "one thumbnail scale per channel, then grid cells",
    "dynamic-pixel-any": "per input: the server's mask network picks the values to send",
    "dynamic-block-any": "per input: the server's mask network picks grid cells",
}
MASK_CHOICES = [(name, f"{name}: {MASK_HELP[name]}") for name in (*SELECT_STAGES, *list(MASK_HELP)[5:])]
MODEL_CHOICES = [(name, name) for name in MODELS]
D = TrainConfig()


def _size(text: str, name: str) -> list[int]:
    """Rows x columns typed in a field ("4x4", "4 x 4", "4×4")."""
    try:
        return list(parse_grid(text.replace(" ", "").replace("×", "x"), name))
    except ConfigError as exc:
        raise forms.ValidationError(str(exc)) from None


def _size_text(value: Any) -> str:
    return "x".join(map(str, value))


def _text(help_text: str, **kwargs: Any) -> forms.CharField:
    return forms.CharField(required=False, help_text=help_text, **kwargs)


#: Options kept as text in the form (lists typed in one field) and parsed by its clean_ methods.
TEXT_OPTIONS = {"grid": {"max_length": 20}, "server_view": {"max_length": 20}, "init_selected": {},
                "costs": {"widget": forms.Textarea(attrs={"rows": 2})}}
CHOICES = {"mask_type": MASK_CHOICES, "model": MODEL_CHOICES,
           **{name: [(value, value) for value in values] for name, values in OPTION_CHOICES.items()}}
CLI_ONLY = {"pretrained"}  # a file on the server: the command line's option only
# Options whose range (`OPTION_RANGES`) the form checks itself, as min and max; the service checks every range.
BOUNDED = {"target_fraction", "target_bytes", "epochs", "seed", "lambda_patience", "lambda_threshold",
           "warmup_epochs", "finalize_epochs", "early_stop_patience", "max_accuracy_drop", "batch_size", "init_sigma",
           "swap_candidates", "swap_rounds"}


def option_field(field: dataclasses.Field) -> forms.Field:  # type: ignore[type-arg]
    """The form field of one `TrainConfig` option: its kind from the annotation, its text, label, choices and
    bounds from `masksel_core` (the CLI and the API show the same)."""
    name, kind, default = field.name, str(field.type), getattr(D, field.name)
    optional = "None" in kind
    common: dict[str, Any] = {"help_text": OPTION_HELP[name], "label": OPTION_LABELS.get(name)}
    low, high, _ = OPTION_RANGES[name] if name in BOUNDED else (None, None, False)
    bounds = {"min_value": low, "max_value": high}
    if name in TEXT_OPTIONS:
        initial = _size_text(default) if name == "grid" else None
        return forms.CharField(required=name == "grid", initial=initial, **common, **TEXT_OPTIONS[name])
    if name in CHOICES:
        return forms.ChoiceField(choices=CHOICES[name], initial=default, **common)
    if kind.startswith("bool"):
        return forms.BooleanField(required=False, initial=default or None, **common)
    if kind.startswith("int"):
        return forms.IntegerField(initial=default, **bounds, **common)
    if kind.startswith("float"):
        return forms.FloatField(required=not optional, initial=default, **bounds, **common)
    raise TypeError(f"no form field for option {name} ({kind})")


#: A field per `TrainConfig` option, as the serializers' `RunConfig` has one.
OptionFields = type("OptionFields", (forms.Form,), {
    f.name: option_field(f) for f in dataclasses.fields(TrainConfig) if f.name not in CLI_ONLY})


class RunForm(OptionFields):
    """Every option of the CLI a web user may set, in three groups (`GROUPS`): what most runs change, the
    lambda/tau schedule and phases, and the rest (collapsed on the page). The options' fields are made from
    `TrainConfig` (`option_field`); the form adds the data set and the run's annotations. Text fields that hold
    lists (grid, initial selection, costs, tags) are parsed here; the options themselves are checked by
    `services`."""

    name = forms.CharField(required=False, max_length=200, help_text="shown in the run list (optional)")
    dataset = forms.ModelChoiceField(queryset=None, empty_label=None)
    tags = _text("comma-separated, e.g. paper, k=39")
    pretrained_run = forms.IntegerField(required=False, min_value=1, help_text="start from the network of one of "
                                        "your succeeded runs (its id; same model and input): no warm-up")
    priority = forms.IntegerField(initial=0, min_value=PRIORITY_RANGE[0], max_value=PRIORITY_RANGE[1],
                                  help_text="queued runs start highest priority first, then oldest first")
    notes = _text("anything to remember about this run", widget=forms.Textarea(attrs={"rows": 2}))

    #: How a list from a clone or a saved configuration reads in its text field.
    AS_TEXT: dict[str, Any] = {"grid": _size_text, "server_view": _size_text, "costs": json.dumps, "tags": ", ".join,
                               "init_selected": lambda v: ", ".join(map(str, v))}
    #: The page's sections; the first is open, the others open where one of their fields has an error.
    GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("Basic", ("name", "dataset", "mask_type", "grid", "server_view", "mask_net", "model", "target_fraction",
                   "target_bytes", "epochs", "seed", "device", "precision", "tags")),
        ("Schedule and phases", ("lambda_init", "lambda_factor", "lambda_patience", "lambda_monitor",
                                 "lambda_threshold", "lambda_threshold_mode", "tau_init", "tau_decay", "tau_min",
                                 "gamma", "discretization", "warmup_epochs", "finalize_epochs",
                                 "early_stop_patience", "max_accuracy_drop")),
        ("Advanced", ("batch_size", "lr_scale", "model_lr", "mask_lr", "network_lr", "init_logit", "init_selected",
                      "init_sigma", "costs", "rescale", "extend_costs", "val_share", "swap_candidates",
                      "swap_rounds", "pretrained_run", "priority", "notes")),
    )

    def __init__(self, *args: Any, datasets: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = datasets
        for key, as_text in self.AS_TEXT.items():  # a clone's or saved configuration's lists, as the fields show them
            if isinstance(self.initial.get(key), (list, tuple)):
                self.initial[key] = as_text(self.initial[key])
        # The mask the form offers fits the data set it offers (pixels for one channel, channels for several);
        # the page's script does the same when another data set is picked, until a mask is chosen by hand.
        self.default_masks = {row.pk: default_mask_type(row.input_shape) for row in datasets}
        chosen = self.initial.get("dataset") or next(iter(self.default_masks), None)
        self.mask_chosen = "mask_type" in self.initial  # by a clone or a saved configuration: the script keeps it
        if not self.mask_chosen and chosen in self.default_masks:
            self.initial["mask_type"] = self.default_masks[chosen]

    def groups(self) -> list[tuple[str, bool, list[forms.BoundField]]]:
        """(title, open, bound fields) per section, for the template; fields of no group go to the first."""
        listed = {name for _, names in self.GROUPS for name in names}
        sections = []
        for index, (title, names) in enumerate(self.GROUPS):
            fields = [self[name] for name in names if name in self.fields]
            if index == 0:
                fields = [self[name] for name in self.fields if name not in listed] + fields
            sections.append((title, index == 0 or any(field.errors for field in fields), fields))
        return sections

    def clean_grid(self) -> list[int]:
        return _size(self.cleaned_data["grid"], "grid")

    def clean_server_view(self) -> list[int] | None:
        return _size(self.cleaned_data["server_view"], "server view") if self.cleaned_data["server_view"] else None

    def clean_init_selected(self) -> list[int] | None:
        text = self.cleaned_data["init_selected"].strip()
        if not text:
            return None
        try:
            return [int(part) for part in _items(text)]
        except ValueError:
            raise forms.ValidationError("give element indices separated by commas, e.g. 0, 5, 17") from None

    def clean_costs(self) -> list[Any] | None:
        text = self.cleaned_data["costs"].strip()
        if not text:
            return None
        try:
            value = parsers.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"costs must be a JSON list: {parsers.problem(exc)}") from None
        if not isinstance(value, list):
            raise forms.ValidationError("costs must be a JSON list, e.g. [1, 2, 1]")
        return value

    def clean_tags(self) -> list[str]:
        return _items(self.cleaned_data["tags"], separators=",")

    def run_data(self) -> dict[str, Any]:
        """What `services.run_create` takes: the options set (empty optional fields left out)."""
        data = {key: value for key, value in self.cleaned_data.items() if value not in (None, "", [])}
        data["dataset"] = data["dataset"].pk
        return data

    def config_data(self) -> dict[str, Any]:
        """The options as a saved configuration holds them: no data set, no starting network, no annotations."""
        data = self.run_data()
        for key in ("dataset", "pretrained_run", "name", "tags", "notes", "priority"):
            data.pop(key, None)
        return data

    def fields_with_errors(self) -> list[forms.BoundField]:
        """The fields a refused form marks, in the order the page shows them (its summary links to each)."""
        return [field for _, _, fields in self.groups() for field in fields if field.errors]

    def add_service_error(self, message: str) -> None:
        """Put a service's refusal at the first field it names ("tau_init must be ...", "digits: pixel-any has 64
        elements; init_selected index 99 ...", "block grid 9x9 is finer ..."), else above the form."""
        named = (word for word in re.findall(r"[a-z][a-z_]*", message) if word in self.fields and word != "dataset")
        self.add_error(next(named, None), message)


def _items(text: str, separators: str = ",;") -> list[str]:
    """The non-empty parts of a list typed in one field ("0.1, 1.0" or "0.1; 1.0"), stripped."""
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    return [part.strip() for part in text.split(separators[0]) if part.strip()]


def _numbers(text: str) -> list[float]:
    try:
        values = [float(part) for part in _items(text)]
    except ValueError:
        raise forms.ValidationError("give numbers separated by commas, e.g. 0.1, 1.0") from None
    if not values:
        raise forms.ValidationError("give at least one number")
    return values


class SweepForm(RunForm):
    """The new-run form with a grid: one run per (lambda_init, lambda_factor) cell and seed."""

    name = forms.CharField(label="Sweep name", required=False, max_length=50,
                           help_text="tag of every run (default: sweep-<time>)")
    lambda_inits = forms.CharField(initial="0.1, 1.0", help_text="lambda_init values (the paper: 0.1, 1.0)")
    lambda_factors = forms.CharField(initial="1.1, 1.25", help_text="lambda_factor values (the paper: 1.1, 1.25)")
    seeds = forms.IntegerField(label="Runs per cell", initial=10, min_value=1, max_value=100,
                               help_text="each with its own seed (the paper: 10)")

    GROUPS = (("Basic", ("name", "dataset", "mask_type", "grid", "server_view", "mask_net", "model", "lambda_inits",
                         "lambda_factors", "seeds",
                         "seed", "target_fraction", "target_bytes", "epochs", "device", "precision", "tags")),
              *RunForm.GROUPS[1:])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for replaced in ("lambda_init", "lambda_factor"):
            del self.fields[replaced]
        self.fields["seed"].label = "First seed"
        self.fields["seed"].help_text = "a cell's runs take this seed, the next, and so on"

    def clean_lambda_inits(self) -> list[float]:
        return _numbers(self.cleaned_data["lambda_inits"])

    def clean_lambda_factors(self) -> list[float]:
        return _numbers(self.cleaned_data["lambda_factors"])

    def run_data(self) -> dict[str, Any]:
        data = super().run_data()
        data["lambda_init"] = data.pop("lambda_inits")
        data["lambda_factor"] = data.pop("lambda_factors")
        return data

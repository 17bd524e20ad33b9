"""The new-run form; it only collects fields, `services.run_create` validates them."""
from __future__ import annotations

from typing import Any

from django import forms

from masksel_core import MODELS, SELECT_STAGES, TrainConfig, default_mask_type
from masksel_core.config import DISCRETIZATIONS, EXTEND_COSTS, LAMBDA_MONITORS

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
}
MASK_CHOICES = [(name, f"{name}: {MASK_HELP[name]}") for name in (*SELECT_STAGES, *list(MASK_HELP)[5:])]
MODEL_CHOICES = [(name, name) for name in MODELS]
D = TrainConfig()


def _optional_float(help_text: str, **kwargs: Any) -> forms.FloatField:
    return forms.FloatField(required=False, help_text=help_text, **kwargs)


class RunForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=None, empty_label=None)
    mask_type = forms.ChoiceField(choices=MASK_CHOICES, initial=D.mask_type)
    model = forms.ChoiceField(choices=MODEL_CHOICES, initial=D.model)
    epochs = forms.IntegerField(min_value=1, max_value=100_000, initial=D.epochs)
    lambda_init = forms.FloatField(initial=D.lambda_init, help_text="initial weight of the mask loss Q")
    lambda_factor = forms.FloatField(initial=D.lambda_factor, help_text="lambda grows by this factor")
    lambda_patience = forms.IntegerField(initial=D.lambda_patience, min_value=0,
                                         help_text="epochs without a better loss before lambda grows")
    lambda_monitor = forms.ChoiceField(choices=[(m, m) for m in LAMBDA_MONITORS], initial=D.lambda_monitor,
                                       help_text="val_total: Lf + lambda*Q on validation data; total: the same on "
                                                 "the training batches (paper); val_mask_loss: Q (later code)")
    tau_init = forms.FloatField(initial=D.tau_init, help_text="temperature after each lambda raise")
    tau_decay = forms.FloatField(initial=D.tau_decay, help_text="temperature factor per epoch")
    tau_min = forms.FloatField(initial=D.tau_min, help_text="lowest temperature")
    gamma = forms.FloatField(initial=D.gamma, help_text="share of fixation (noise-free) steps")
    discretization = forms.ChoiceField(choices=[(m, m) for m in DISCRETIZATIONS], initial=D.discretization,
                                       help_text="gumbel: exploration noise (paper); deterministic: none")
    batch_size = forms.IntegerField(initial=D.batch_size, min_value=1)
    model_lr = forms.FloatField(label="Model learning rate", initial=D.model_lr,
                                help_text="Adam (AMSGrad) learning rate of the network while the masks learn "
                                          "(the paper fine-tunes at 1e-4)")
    mask_lr = forms.FloatField(label="Mask learning rate", initial=D.mask_lr,
                               help_text="learning rate of the mask logits")
    target_fraction = _optional_float("stop selecting once Q is at most this", min_value=0, max_value=1)
    max_accuracy_drop = _optional_float("stop once accuracy falls this far below its best", min_value=0,
                                        max_value=1)
    warmup_epochs = forms.IntegerField(initial=D.warmup_epochs, min_value=0,
                                       help_text="first train the network alone on the full input, at most this "
                                                 "many epochs (0: none; the paper starts from a trained network)")
    finalize_epochs = forms.IntegerField(initial=D.finalize_epochs, min_value=0,
                                         help_text="then train the network alone on the frozen mask, at most this "
                                                   "many epochs; the best validation epoch is the model you get")
    early_stop_patience = forms.IntegerField(initial=D.early_stop_patience, min_value=1,
                                             help_text="warm-up and finalize end after this many epochs without a "
                                                       "better validation accuracy")
    network_lr = forms.FloatField(label="Network learning rate (alone)", initial=D.network_lr,
                                  help_text="Adam learning rate of the network in warm-up and finalize")
    rescale = forms.BooleanField(required=False, help_text="scale kept inputs up by the kept share")
    extend_costs = forms.ChoiceField(choices=[(m, m) for m in EXTEND_COSTS], initial=D.extend_costs,
                                     help_text="price of JPEG/thumbnail versions: proxy (q/100, paper) or bytes "
                                               "(measured size on the wire)")
    target_bytes = _optional_float("stop selecting once a sample's transfer is at most this many bytes",
                                   min_value=0)
    seed = forms.IntegerField(initial=D.seed, min_value=0)
    priority = forms.IntegerField(initial=0, min_value=PRIORITY_RANGE[0], max_value=PRIORITY_RANGE[1],
                                  help_text="queued runs start highest priority first, then oldest first")

    def __init__(self, *args: Any, datasets: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = datasets
        # The mask the form offers fits the data set it offers (pixels for one channel, channels for several);
        # the page's script does the same when another data set is picked, until a mask is chosen by hand.
        self.default_masks = {row.pk: default_mask_type(row.input_shape) for row in datasets}
        chosen = self.initial.get("dataset") or next(iter(self.default_masks), None)
        self.mask_chosen = "mask_type" in self.initial  # by a clone or a saved configuration: the script keeps it
        if not self.mask_chosen and chosen in self.default_masks:
            self.initial["mask_type"] = self.default_masks[chosen]

    def run_data(self) -> dict[str, Any]:
        data = {key: value for key, value in self.cleaned_data.items() if value is not None}
        data["dataset"] = data["dataset"].pk
        return data


def _numbers(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise forms.ValidationError("give numbers separated by commas, e.g. 0.1, 1.0") from None
    if not values:
        raise forms.ValidationError("give at least one number")
    return values


class SweepForm(RunForm):
    """The new-run form with a grid: one run per (lambda_init, lambda_factor) cell and seed."""

    name = forms.CharField(required=False, max_length=50, help_text="tag of every run (default: sweep-<time>)")
    lambda_inits = forms.CharField(initial="0.1, 1.0", help_text="lambda_init values (the paper: 0.1, 1.0)")
    lambda_factors = forms.CharField(initial="1.1, 1.25", help_text="lambda_factor values (the paper: 1.1, 1.25)")
    seeds = forms.IntegerField(initial=10, min_value=1, max_value=100, help_text="runs per cell (the paper: 10)")

    field_order = ["name", "dataset", "mask_type", "model", "epochs", "lambda_inits", "lambda_factors", "seeds"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for replaced in ("lambda_init", "lambda_factor"):
            del self.fields[replaced]

    def clean_lambda_inits(self) -> list[float]:
        return _numbers(self.cleaned_data["lambda_inits"])

    def clean_lambda_factors(self) -> list[float]:
        return _numbers(self.cleaned_data["lambda_factors"])

    def run_data(self) -> dict[str, Any]:
        data = super().run_data()
        data["lambda_init"] = data.pop("lambda_inits")
        data["lambda_factor"] = data.pop("lambda_factors")
        return data

"""The new-run form; it only collects fields, `services.run_create` validates them."""
from __future__ import annotations

from typing import Any

from django import forms

from masksel_core import TrainConfig

from .models import Dataset

WALKING_MASKS = [("channel-any", "channel-any: keep or drop whole channels"),
                 ("pixel-any", "pixel-any: keep or drop every input value")]
WALKING_MODELS = [("mlp", "mlp (two hidden layers of 128)"), ("lenet5", "lenet5 (two convolutions)")]
DEFAULTS = TrainConfig()


class RunForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), empty_label=None)
    mask_type = forms.ChoiceField(choices=WALKING_MASKS, initial=DEFAULTS.mask_type)
    model = forms.ChoiceField(choices=WALKING_MODELS, initial=DEFAULTS.model)
    epochs = forms.IntegerField(min_value=1, max_value=100_000, initial=DEFAULTS.epochs)
    lambda_init = forms.FloatField(initial=DEFAULTS.lambda_init, help_text="initial weight of the mask loss")
    lambda_factor = forms.FloatField(initial=DEFAULTS.lambda_factor, help_text="lambda grows by this factor")
    lambda_patience = forms.IntegerField(initial=DEFAULTS.lambda_patience, min_value=0,
                                         help_text="epochs without a better loss before lambda grows")
    tau_init = forms.FloatField(initial=DEFAULTS.tau_init, help_text="temperature after each lambda raise")
    batch_size = forms.IntegerField(initial=DEFAULTS.batch_size, min_value=1)
    model_lr = forms.FloatField(label="Model learning rate", initial=DEFAULTS.model_lr,
                                help_text="Adam (AMSGrad) learning rate of the network")
    mask_lr = forms.FloatField(label="Mask learning rate", initial=DEFAULTS.mask_lr,
                               help_text="learning rate of the mask logits")
    seed = forms.IntegerField(initial=DEFAULTS.seed, min_value=0)

    def __init__(self, *args: Any, datasets: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = datasets

    def run_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["dataset"] = data["dataset"].pk
        return data

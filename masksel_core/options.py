"""What each option of a run means, said once: the CLI's `--help`, the API's schema and the web form's fields all
show these texts, with the choices of `config.OPTION_CHOICES`, the ranges of `config.OPTION_RANGES` and the
defaults of `TrainConfig`.
"""
from __future__ import annotations

OPTION_HELP: dict[str, str] = {
    "mask_type": "the mask, or a chain of masks joined by + (e.g. jpeg-xor+pixel-any)",
    "model": "the network that learns beside the masks",
    "epochs": "selection epochs at most",
    "lambda_init": "initial weight of the mask loss Q",
    "lambda_factor": "lambda grows by this factor",
    "lambda_patience": "epochs without a better loss before lambda grows",
    "tau_init": "temperature after each lambda raise",
    "tau_decay": "temperature factor per epoch",
    "tau_min": "lowest temperature",
    "gamma": "share of fixation (noise-free) steps",
    "mask_lr": "learning rate of the mask logits",
    "model_lr": "Adam (AMSGrad) learning rate of the network while the masks learn (the paper fine-tunes at 1e-4)",
    "batch_size": "samples per training step",
    "seed": "the run's random seed: the same seed and options train the same run",
    "device": "auto: a GPU where the worker has one",
    "precision": "auto: bf16 on a GPU that has it (faster), fp32 on a CPU",
    "target_fraction": "stop selecting once Q is at most this",
    "grid": "block masks: grid cells per side, rows x columns (e.g. 4x4)",
    "init_sigma": "noise on the starting logits",
    "init_logit": "starting logit of every element (1: sigmoid 0.73; the later code: 3)",
    "init_selected": "elements selected at first: flat indices, comma-separated (default: all)",
    "costs": "relative price of every mask element, a JSON list in the mask's shape or flat (default: all 1)",
    "discretization": "gumbel: exploration noise (paper); deterministic: none",
    "lambda_monitor": "val_total: Lf + lambda*Q on validation data; total: the same on the training batches "
                      "(paper); val_mask_loss: Q (later code)",
    "lambda_threshold": "a loss counts as better only by more than this",
    "lambda_threshold_mode": "rel: a share of the best loss; abs: an amount",
    "rescale": "scale kept inputs up by the kept share, as dropout does",
    "max_accuracy_drop": "stop once accuracy falls this far below its best",
    "pretrained": "a network file (model.pt) to start from instead of the warm-up; the command line only",
    "extend_costs": "price of JPEG/thumbnail versions: proxy (q/100, paper) or bytes (measured size on the wire)",
    "target_bytes": "stop selecting once a sample's transfer is at most this many bytes",
    "warmup_epochs": "first train the network alone on the full input, at most this many epochs (0: none; the "
                     "paper starts from a trained network)",
    "finalize_epochs": "then train the network alone on the frozen mask, at most this many epochs; the best "
                       "validation epoch is the model you get",
    "early_stop_patience": "warm-up and finalize end after this many epochs without a better validation accuracy",
    "network_lr": "Adam learning rate of the network in warm-up and finalize",
    "val_share": "share of the training split held out for validation (lambda, early stopping)",
    "swap_candidates": "the swap check that ends selection: candidates per round (0: no swap check)",
    "swap_rounds": "swap check rounds at most",
    "server_view": "dynamic masks: rows x columns the server's mask network looks at, max-pooled (e.g. 7x7; "
                   "empty: the whole input)",
    "mask_net": "dynamic masks: the mask network (auto: hybrid, the linear map plus a 3x3 convolution, up to "
                "28x28, else convatt)",
    "lr_scale": "the rates are for batches of 128; linear: times batch size / 128 (larger batches on a GPU), "
                "sqrt: its square root",
}

#: Labels where the option's name says too little.
OPTION_LABELS: dict[str, str] = {
    "lr_scale": "Learning rates for the batch", "model_lr": "Model learning rate", "mask_lr": "Mask learning rate",
    "network_lr": "Network learning rate (alone)",
}

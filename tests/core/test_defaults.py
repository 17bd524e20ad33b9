"""Defaults give a useful model: a user who changes nothing gets a non-empty mask and, on digits, more than 0.9."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from masksel_core import TrainConfig, default_mask_type, load_digits, train
from masksel_core.cli import main


@pytest.mark.slow
def test_the_default_run_on_digits_keeps_a_part_of_the_input_and_predicts_well() -> None:
    data = load_digits()
    result = train(TrainConfig(mask_type=default_mask_type(data.input_shape), device="cpu"), data)
    assert result.config.mask_type == "pixel-any" and 0 < result.fraction < 0.6
    assert result.test_accuracy is not None and result.test_accuracy > 0.9
    assert result.warnings == []
    assert {r.phase for r in result.records} >= {"warmup", "select", "finalize"}


@pytest.mark.slow
def test_the_readme_cli_example_gives_a_useful_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", "digits", "--mask", "pixel-any", "--model", "mlp", "--epochs", "30", "--out",
                 str(tmp_path), "--quiet", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0 < summary["fraction"] < 1 and summary["test_accuracy"] > 0.9 and summary["warnings"] == []

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from masksel_core.cli import main


def test_reproduce_writes_a_csv_and_a_png_with_every_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["reproduce", "jpeg", "--runs", "2", "--epochs", "2", "--pretrain-epochs", "1", "--device", "cpu",
                 "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "jpeg.csv").open()))
    # Selection epochs only, counted from 1 as in the paper's figures (the warm-up is the pre-training).
    assert [(r["run"], r["epoch"]) for r in rows] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    assert all(0.0 <= float(r["fraction"]) <= 1.0 and r["experiment"] == "jpeg" for r in rows)
    assert (tmp_path / "jpeg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reproduce_refuses_bad_flags_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "colour"]) == 2
    assert main(["reproduce", "pixel", "--runs", "0"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)

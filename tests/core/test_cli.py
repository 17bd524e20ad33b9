from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from masksel_core.cli import main
from tests.conftest import make_npz

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "masksel_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)


@pytest.mark.slow
def test_train_writes_the_files_of_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = cli("train", "--data", "digits", "--mask", "pixel-any", "--model", "mlp", "--epochs", "3", "--out", str(out),
               "--warmup-epochs", "2", "--finalize-epochs", "0")
    assert done.returncode == 0, done.stderr
    assert {"config.json", "mask.json", "mask.npy", "metrics.csv", "model.pt", "transfer.json",
            "summary.json"} <= {p.name for p in out.iterdir()}
    mask = np.load(out / "mask.npy")
    assert mask.dtype == np.uint8 and mask.shape == (1, 8, 8) and set(np.unique(mask)) <= {0, 1}
    document = json.loads((out / "mask.json").read_text())
    assert document["mask_type"] == "pixel-any" and document["input_shape"] == [1, 8, 8]
    assert np.array_equal(np.array(document["selected"]), mask)
    assert document["fraction"] == mask.mean()
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,task_loss,mask_loss,val_accuracy,lambda,tau,fraction,phase" and len(lines) == 6
    assert [line.split(",")[-1] for line in lines[1:]] == ["warmup", "warmup", "select", "select", "select"]
    assert json.loads((out / "config.json").read_text())["epochs"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_per_phase"] == {"warmup": 2, "select": 3} and 0.5 < summary["test_accuracy"] <= 1
    seconds = summary["seconds_per_phase"]
    assert set(seconds) == {"warmup", "select", "swap_check", "finalize"} and seconds["finalize"] == 0
    assert seconds["warmup"] > 0 and seconds["select"] > 0 and seconds["swap_check"] >= 0  # nothing dropped: no swaps
    assert "test_accuracy" in done.stdout
    import torch

    state = torch.load(out / "model.pt")
    assert state["1.weight"].shape == (128, 64)


def test_channel_any_mask_has_one_entry_per_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_npz(tmp_path / "d.npz")
    code = main(["train", "--data", str(data), "--mask", "channel-any", "--model", "lenet5", "--epochs", "1", "--out",
                 str(tmp_path / "o"), "--quiet", "--warmup-epochs", "1", "--finalize-epochs", "1"])
    assert code == 0, capsys.readouterr().err
    assert np.load(tmp_path / "o" / "mask.npy").shape == (2,)


@pytest.mark.slow
def test_nan_in_the_data_exits_2_naming_the_nan(tmp_path: Path) -> None:
    x = np.zeros((6, 1, 4, 4), dtype=np.float32)
    x[2, 0, 1, 1] = np.nan
    data = make_npz(tmp_path / "nan.npz", x_train=x, y_train=np.array([0, 1] * 3))
    done = cli("train", "--data", str(data), "--mask", "pixel-any", "--model", "mlp", "--epochs", "1", "--out",
               str(tmp_path / "o"))
    assert done.returncode == 2
    assert "NaN" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_flags_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (one subprocess above shows the same path end to end): torch's import is paid once."""
    for args, needle in (
        (["--mask", "pixel-all", "--epochs", "1"], "unknown mask type 'pixel-all'"),
        (["--mask", "pixel-any", "--epochs", "-3"], "epochs must be in"),
        (["--mask", "pixel-any", "--epochs", "x"], "invalid int value"),
        (["--mask", "pixel-any", "--epochs", "1", "--tau-init", "0"], "tau_init must be in"),
        (["--mask", "channel-any", "--epochs", "1"], "single channel"),
        (["--mask", "pixel-any", "--epochs", "1", "--lr-scale", "cubic"], "(choose from 'none', 'linear', 'sqrt')"),
    ):
        code = main(["train", "--data", "digits", "--model", "mlp", "--out", str(tmp_path / "o"), *args])
        err = capsys.readouterr().err
        assert code == 2, args
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_run_with_warnings_says_them_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", "digits", "--mask", "pixel-any", "--model", "mlp", "--epochs", "3", "--out",
                 str(tmp_path / "o"), "--quiet", "--warmup-epochs", "1", "--finalize-epochs", "0",
                 "--target-fraction", "0.01", "--lambda-init", "0.0001"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: target_fraction 0.01 was not reached in 3 epochs" in err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["warnings"]


def test_what_the_cli_cannot_use_is_said_in_one_line_before_any_training(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = make_npz(tmp_path / "d.npz")
    (tmp_path / "afile").write_text("")
    (tmp_path / "junk.pt").write_bytes(b"not a state_dict")
    fast = ["train", "--data", str(data), "--mask", "pixel-any", "--model", "mlp", "--epochs", "1", "--quiet"]
    for args, needle in (
        (["--out", str(tmp_path / "afile")], f"--out {tmp_path / 'afile'}: cannot make the folder"),
        (["--out", str(tmp_path / "afile" / "sub")], "cannot make the folder"),
        (["--out", str(tmp_path / "o"), "--checkpoint-dir", str(tmp_path / "afile")], "--checkpoint-dir"),
        (["--out", str(tmp_path / "o"), "--pretrained", str(tmp_path / "junk.pt")], "cannot read a state_dict from"),
        (["--out", str(tmp_path / "o"), "--pretrained", str(tmp_path / "missing.pt")], "missing.pt"),
    ):
        code = main([*fast, *args])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
    for args, needle in (
        (["predict", "--server", "http://127.0.0.1:9", "--token", "t", "--dataset", "1", "--run", "1", "--page", "0"],
         "argument --page: must be a whole number of 1 or more"),
        # Past what the server packs: said before the model is fetched (this server does not answer at all).
        (["predict", "--server", "http://127.0.0.1:9", "--token", "t", "--dataset", "1", "--run", "1", "--page",
          "5000"], "page must be from 1 to 4096 samples per request, got 5000"),
        (["predict", "--server", "http://127.0.0.1:9", "--token", "t", "--dataset", "1", "--run", "1", "--model",
          str(tmp_path / "junk.pt")], "is not a TorchScript model"),
        (["convert", str(tmp_path / "nope.h5"), str(tmp_path / "x.zarr")], "not a readable HDF5 file"),
    ):
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)

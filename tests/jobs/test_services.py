from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import dataset_services, services, worker_services
from jobs.inputs import RunRequest, SweepRequest, parse
from jobs.models import Dataset, EpochMetric, Run, RunStatus
from tests.conftest import make_npz

FAST = {"mask_type": "pixel-any", "model": "mlp", "epochs": 3, "batch_size": 64, "warmup_epochs": 2,
        "finalize_epochs": 0}


def upload(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes())


def test_seeding_builtins_is_idempotent(db: Any) -> None:
    first = dataset_services.dataset_seed_builtins()
    second = dataset_services.dataset_seed_builtins()
    assert [d.pk for d in first] == [d.pk for d in second]
    assert Dataset.objects.get(builtin="digits").input_shape == [1, 8, 8]


def test_a_valid_upload_is_stored_with_its_summary(alice: Any, small_npz: Path) -> None:
    row = dataset_services.dataset_create(owner=alice, name="tiny", upload=upload(small_npz))
    assert (row.name, row.input_shape, row.num_classes, row.num_train + row.num_test) == ("tiny", [2, 6, 6], 3, 120)
    assert Path(row.file.path).is_file()


def test_a_refused_upload_leaves_no_row_and_no_file(alice: Any, tmp_path: Path, settings: Any) -> None:
    x = np.zeros((4, 1, 3, 3), dtype=np.float32)
    x[0, 0, 0, 0] = np.nan
    bad = make_npz(tmp_path / "bad.npz", x_train=x, y_train=np.array([0, 1, 0, 1]))
    before = {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}
    with pytest.raises(services.ServiceError, match="NaN"):
        dataset_services.dataset_create(owner=alice, name="bad", upload=upload(bad))
    assert not Dataset.objects.filter(name="bad").exists()
    assert {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()} == before


def test_creating_a_run_queues_it_and_the_eager_task_trains_it(alice: Any, digits: Any,
                                                                django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(owner=alice, dataset=digits.pk, options=FAST)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.epoch == 5 and run.device == "cpu"
    assert run.total_epochs == 5 and run.phase == "select" and run.test_accuracy is not None
    assert set(run.seconds_per_phase) == {"warmup", "select", "swap_check", "finalize"}
    assert run.seconds_per_phase["select"] > 0 and run.seconds_per_phase["finalize"] == 0  # FAST: no finalize
    rows = list(EpochMetric.objects.filter(run=run))
    assert [(r.epoch, r.phase) for r in rows] == [(1, "warmup"), (2, "warmup"), (3, "select"), (4, "select"),
                                                   (5, "select")]
    assert run.best_accuracy == max(r.val_accuracy for r in rows if r.phase != "warmup")  # of the masked network
    assert rows[-1].selected().shape == (1, 8, 8)
    assert rows[-1].fraction == pytest.approx(rows[-1].selected().mean())
    assert sorted(p.name for p in Path(run.artifact_dir).iterdir()) == [
        "config.json", "mask.json", "mask.npy", "mask.png", "metrics.csv", "model.pt", "model.ts", "summary.json",
        "transfer.json"]


def test_recording_an_epoch_twice_keeps_one_row(alice: Any, digits: Any) -> None:
    from masksel_core import EpochRecord

    run = services.run_create(owner=alice, dataset=digits.pk, options=FAST)
    record = EpochRecord(1, 1.0, 0.5, 0.3, 0.1, 10.0, 0.5, np.ones((1, 8, 8), dtype=np.uint8))
    worker_services.run_record_epoch(run, record)
    worker_services.run_record_epoch(run, record)
    assert EpochMetric.objects.filter(run=run).count() == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mask_type": "pixel-all"}, "unknown mask type"),
        ({"epochs": -1}, "epochs must be in"),
        ({"dataset": 999999}, "no dataset with id 999999"),
        ({"colour": "red"}, "unknown option(s): colour"),
    ],
)
def test_bad_run_requests_are_refused_and_nothing_is_created(alice: Any, digits: Any, data: dict,
                                                             message: str) -> None:
    with pytest.raises(services.ServiceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        services.run_create(owner=alice, **parse(RunRequest, {"dataset": digits.pk, **FAST, **data}))
    assert Run.objects.count() == 0


def test_a_run_name_too_long_is_refused_and_a_study_trials_name_is_shortened_to_fit(alice: Any, digits: Any) -> None:
    from jobs.models import MAX_NAME
    from jobs.study_services import trial_name

    with pytest.raises(services.ServiceError, match=f"at most {MAX_NAME} characters"):
        services.run_create(owner=alice, dataset=digits.pk, options=FAST, name="n" * (MAX_NAME + 1))
    name = trial_name("s" * MAX_NAME, 12)
    assert len(name) == MAX_NAME and name.endswith(" · trial 12")
    assert services.run_create(owner=alice, dataset=digits.pk, options=FAST, name=name).name == name


def test_a_user_cannot_train_on_another_users_dataset(alice: Any, bob: Any, small_npz: Path) -> None:
    theirs = dataset_services.dataset_create(owner=bob, name="bobs", upload=upload(small_npz))
    with pytest.raises(services.ServiceError, match="no dataset with id"):
        services.run_create(owner=alice, dataset=theirs.pk, options=FAST)


def test_cancel_moves_a_queued_run_to_cancelled_and_the_task_then_skips_it(alice: Any, digits: Any) -> None:
    from jobs.training import execute_run

    run = services.run_create(owner=alice, dataset=digits.pk, options=FAST)
    services.run_cancel(run)
    assert execute_run(run.pk, worker="test") == RunStatus.CANCELLED
    assert EpochMetric.objects.filter(run=run).count() == 0
    with pytest.raises(services.ServiceError, match="already cancelled"):
        services.run_cancel(run)


def test_a_sweep_makes_one_tagged_run_per_cell_and_seed(alice: Any, digits: Any, settings: Any) -> None:
    def sweep(**body: Any) -> list[Run]:  # parsed as the API and the sweep form parse it
        return services.run_sweep(owner=alice, **parse(SweepRequest, {"dataset": digits.pk, **body}))

    runs = sweep(**FAST, lambda_init=[0.1, 1.0], lambda_factor=[1.1, 1.25], seeds=3, name="paper-grid")
    assert len(runs) == 12 and all(run.tags == ["paper-grid"] for run in runs)
    cells = sorted((r.config["lambda_init"], r.config["lambda_factor"], r.config["seed"]) for r in runs)
    assert cells == sorted((li, lf, s) for li in (0.1, 1.0) for lf in (1.1, 1.25) for s in range(3))
    settings.MASKSEL_MAX_OPEN_RUNS = 20
    with pytest.raises(services.ServiceError, match="exceed the limit of 20"):
        sweep(**FAST, lambda_init=[0.1, 1.0], lambda_factor=[1.1, 1.25], seeds=3)
    with pytest.raises(services.ServiceError, match="lambda_factor must be a non-empty list"):
        sweep(lambda_init=[0.1], lambda_factor=1.1)
    with pytest.raises(services.ServiceError, match="seeds must be a positive integer"):
        sweep(lambda_init=[0.1], lambda_factor=[1.1], seeds=0)
    with pytest.raises(services.ServiceError, match="tau_init must be in"):
        sweep(lambda_init=[0.1], lambda_factor=[1.1], tau_init=-1)
    with pytest.raises(services.ServiceError, match="seed must be an integer"):
        sweep(lambda_init=[0.1], lambda_factor=[1.1], seed="x")
    assert Run.objects.count() == 12  # refused sweeps leave nothing


def test_errors_a_user_sees_name_no_directory_of_the_server(alice: Any, small_npz: Path, settings: Any, tmp_path: Path,
                                                             django_capture_on_commit_callbacks: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"  # no preview cached by another test under the same id
    row = dataset_services.dataset_create(owner=alice, name="tiny", upload=upload(small_npz))
    Path(row.file.path).unlink()  # the file went missing on the server
    with pytest.raises(services.ServiceError, match="'tiny' cannot be read") as refused:
        dataset_services.dataset_preview(row)
    assert str(settings.MEDIA_ROOT) not in str(refused.value)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(owner=alice, dataset=row.pk, options=FAST)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "no such file" in run.error
    assert str(settings.MEDIA_ROOT) not in run.error and "site-packages" not in run.error
    assert not (Path(run.artifact_dir) / "checkpoint").exists()

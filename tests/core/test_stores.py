"""Zarr stores of the dataset contract: local and in a bucket (moto's S3 server), checked without a full read."""
from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr

import masksel_core
from masksel_core.data.arrays import DataError, load_npz
from masksel_core.data.convert import chunk_shape, convert
from masksel_core.data.stores import (
    StoreDataset,
    load_store,
    memory_budget,
    parse_bytes,
    read_rows,
    storage_options,
)
from tests.conftest import make_npz


def write_store(path: Path | str, arrays: dict[str, np.ndarray], *, chunks: int = 32, **attrs: Any) -> str:
    """A store holding `arrays` as they are (no checks), inputs chunked by samples and channel."""
    group = zarr.open_group(str(path), mode="w", storage_options=storage_options(str(path)))
    with zarr.config.set({"array.write_empty_chunks": True}):
        for key, value in arrays.items():
            along = min(chunks, max(len(value), 1))
            shape = (along, 1, *value.shape[2:]) if value.ndim == 4 else (along, *value.shape[1:])
            group.create_array(key, data=value, chunks=shape)
    for key, value in attrs.items():
        group.attrs[key] = value
    return str(path)


def small_arrays(n: int = 240, channels: int = 2, size: int = 6, classes: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = (rng.random((n, channels, size, size)) * 50).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 0, label % size, :] = 255
    return {"x_train": x, "y_train": y.astype(np.int64)}


def test_a_store_reads_as_the_same_npz_would(tmp_path: Path) -> None:
    arrays = small_arrays()
    np.savez(tmp_path / "same.npz", **arrays, channel_names=np.array(["bright", "noise"]))
    uri = write_store(tmp_path / "same.zarr", arrays, channel_names=["bright", "noise"])
    from_npz = load_npz(tmp_path / "same.npz", seed=3)
    from_store = masksel_core.load_dataset(uri, seed=3)
    assert isinstance(from_store, masksel_core.TensorDataset)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(from_npz, key), getattr(from_store, key)), key
    assert from_store.channel_names == ["bright", "noise"] and from_store.name == "same"


def test_a_store_over_the_budget_stays_stored_and_reads_rows_chunk_by_chunk(tmp_path: Path) -> None:
    arrays = small_arrays()
    uri = write_store(tmp_path / "big.zarr", arrays, chunks=32)
    store = masksel_core.load_dataset(uri, budget=1000)
    assert isinstance(store, StoreDataset) and store.float_bytes > 1000
    assert store.summary() == {"name": "big", "input_shape": [2, 6, 6], "num_classes": 3, "num_train": 192,
                               "num_test": 48, "channel_names": ["ch0", "ch1"]}
    rows = np.array([0, 5, 31, 32, 200, 239])
    expected = arrays["x_train"][rows].astype(np.float32) / 255
    assert np.array_equal(store.read_rows("x_train", rows), expected)
    shuffled = np.array([200, 5, 239, 31, 0, 32])  # any order: the rows come back in it, each chunk read once
    assert np.array_equal(store.read_rows("x_train", shuffled), arrays["x_train"][shuffled].astype(np.float32) / 255)
    only_noise = store.read_rows("x_train", rows, channels=np.array([1]))
    assert np.array_equal(only_noise[:, 1], expected[:, 1]) and not only_noise[:, 0].any()


def test_a_store_with_its_own_test_split_keeps_it(tmp_path: Path) -> None:
    arrays = small_arrays() | {"x_test": small_arrays(30)["x_train"], "y_test": small_arrays(30)["y_train"]}
    store = load_store(write_store(tmp_path / "split.zarr", arrays))
    assert (store.num_train, store.num_test, store.test_key) == (240, 30, "x_test")


def test_validation_reads_a_bounded_sample_of_the_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN are looked for in a few chunks: a NaN outside them is found when those samples are read, not before."""
    arrays = small_arrays(n=2000)
    x = arrays["x_train"].astype(np.float32)
    x[1000, 1, 0, 0] = np.nan
    uri = write_store(tmp_path / "nan.zarr", {**arrays, "x_train": x}, chunks=10)
    reads: list[Any] = []
    original = np.asarray

    def counting(value: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(getattr(value, "shape", None))
        return original(value, *args, **kwargs)

    monkeypatch.setattr("masksel_core.data.stores.SAMPLE_BYTES", 4 * 2 * 6 * 6 * 10 * 5)  # five chunks
    monkeypatch.setattr("masksel_core.data.stores.np.asarray", counting)
    load_store(uri)
    read_inputs = [shape for shape in reads if shape is not None and len(shape) == 4]
    assert sum(shape[0] for shape in read_inputs) == 50  # 5 chunks of 10 samples, of 2000


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x_train": small_arrays()["x_train"]}, "missing required array 'y_train'"),
    ({"y_train": small_arrays()["y_train"]}, "missing required array 'x_train'"),
    (small_arrays() | {"y_train": np.arange(10) % 3}, "10 labels for 240 samples"),
    (small_arrays() | {"y_train": np.arange(240) * 0 - 1}, "negative labels"),
    (small_arrays() | {"y_train": (np.arange(240) % 3).astype(np.float32)}, "integer labels"),
    (small_arrays() | {"y_train": np.zeros(240, dtype=np.int64)}, "single class"),
    (small_arrays() | {"y_train": np.arange(240) % 3 * 2}, "no samples of class"),
    (small_arrays() | {"x_test": small_arrays(30)["x_train"]}, "x_test and y_test must be given together"),
    (small_arrays() | {"x_test": small_arrays(30, size=5)["x_train"], "y_test": np.arange(30) % 3},
     "x_test samples have shape"),
    (small_arrays() | {"x_test": small_arrays(30)["x_train"], "y_test": np.arange(30) % 5}, "not present in y_train"),
    (small_arrays() | {"x_train": np.zeros((240, 6), dtype=np.uint8)}, "rank 2"),
    (small_arrays() | {"x_train": np.zeros((240, 8, 8, 3), dtype=np.uint8)}, "channel-last"),
    (small_arrays() | {"x_train": np.ones((240, 2, 6, 6), dtype=bool)}, "must be numeric"),
    (small_arrays() | {"x_train": np.full((240, 2, 6, 6), np.inf, dtype=np.float32)}, "infinite values"),
])
def test_bad_stores_are_refused_with_the_problem_named(tmp_path: Path, arrays: dict[str, np.ndarray],
                                                        message: str) -> None:
    uri = write_store(tmp_path / "bad.zarr", arrays)
    with pytest.raises(DataError, match=message):
        masksel_core.load_dataset(uri)


def test_channel_names_must_fit_the_channels(tmp_path: Path) -> None:
    uri = write_store(tmp_path / "names.zarr", small_arrays(), channel_names=["only one"])
    with pytest.raises(DataError, match="1 names for 2 channels"):
        load_store(uri)


def test_a_truncated_store_is_refused(tmp_path: Path) -> None:
    uri = write_store(tmp_path / "cut.zarr", small_arrays(), chunks=32)
    shutil.rmtree(tmp_path / "cut.zarr" / "x_train" / "c" / "3")
    with pytest.raises(DataError, match=r"x_train has 14 of its 16 chunks"):
        load_store(uri)
    os.remove(tmp_path / "cut.zarr" / "zarr.json")
    with pytest.raises(DataError, match="no zarr store there"):
        load_store(uri)


def test_a_path_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no zarr store there"):
        masksel_core.load_dataset(str(tmp_path / "nothing.zarr"))


def test_chunks_too_large_to_stream_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("masksel_core.data.stores.MAX_CHUNK_BYTES", 1000)
    uri = write_store(tmp_path / "fat.zarr", small_arrays(), chunks=240)
    with pytest.raises(DataError, match="rechunk it"):
        load_store(uri)


def test_memory_budget_reads_sizes_and_refuses_nonsense() -> None:
    assert memory_budget({"MASKSEL_MEMORY_BUDGET": "1.5G"}) == int(1.5 * 1024**3)
    assert memory_budget({}) > 0
    assert parse_bytes("512MiB", "x") == 512 * 1024**2 and parse_bytes("4096", "x") == 4096
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(DataError, match="MASKSEL_MEMORY_BUDGET"):
            memory_budget({"MASKSEL_MEMORY_BUDGET": bad})


def test_read_rows_of_three_dimensional_inputs_gain_a_channel(tmp_path: Path) -> None:
    x = np.arange(40 * 4 * 4, dtype=np.float32).reshape(40, 4, 4)
    uri = write_store(tmp_path / "gray.zarr", {"x_train": x, "y_train": np.arange(40) % 2}, chunks=8)
    store = load_store(uri)
    assert store.input_shape == (1, 4, 4)
    got = read_rows(zarr.open_group(uri, mode="r")["x_train"], np.array([3, 9, 39]), (1, 4, 4))
    assert np.array_equal(got[:, 0], x[[3, 9, 39]])


# --- the converter -----------------------------------------------------------------------------------------------

def test_convert_writes_a_store_chunked_by_channel_from_npz_h5_and_npy(tmp_path: Path) -> None:
    import h5py

    npz = make_npz(tmp_path / "src.npz", n=90, channels=3, size=5)
    with np.load(npz) as source:
        arrays = {k: source[k] for k in source.files}
    with h5py.File(tmp_path / "src.h5", "w") as handle:
        for key, value in arrays.items():
            handle[key] = value
        handle.attrs["channel_names"] = ["a", "b", "c"]
    (tmp_path / "npy").mkdir()
    for key, value in arrays.items():
        np.save(tmp_path / "npy" / f"{key}.npy", value)
    expected = load_npz(npz)
    for source, names in ((npz, ["ch0", "ch1", "ch2"]), (tmp_path / "src.h5", ["a", "b", "c"]),
                          (tmp_path / "npy", ["ch0", "ch1", "ch2"])):
        dest = str(tmp_path / f"{Path(source).name}.zarr")
        seen: list[int] = []
        summary = convert(str(source), dest, progress=seen.append)
        assert sum(seen) == 90 and summary["channel_names"] == names
        assert zarr.open_group(dest, mode="r")["x_train"].chunks == (90, 1, 5, 5)
        got = masksel_core.load_dataset(dest)
        assert torch.equal(got.x_train, expected.x_train) and torch.equal(got.y_test, expected.y_test)


def test_convert_refuses_to_overwrite_and_bad_sources(tmp_path: Path) -> None:
    npz = make_npz(tmp_path / "src.npz")
    dest = str(tmp_path / "out.zarr")
    convert(str(npz), dest)
    with pytest.raises(DataError, match="already there"):
        convert(str(npz), dest)
    convert(str(npz), dest, overwrite=True)
    with pytest.raises(DataError, match="must end in .zarr"):
        convert(str(npz), str(tmp_path / "out.data"))
    with pytest.raises(DataError, match="give an .npz file"):
        convert(str(tmp_path / "what.csv"), str(tmp_path / "x.zarr"))
    make_npz(tmp_path / "nolabels.npz", y_train=None)
    with pytest.raises(DataError, match="missing required array 'y_train'"):
        convert(str(tmp_path / "nolabels.npz"), str(tmp_path / "y.zarr"))
    assert not (tmp_path / "y.zarr" / "zarr.json").exists()


def test_a_conversion_that_stops_halfway_leaves_no_store(tmp_path: Path) -> None:
    npz = make_npz(tmp_path / "src.npz", n=300)
    dest = str(tmp_path / "half.zarr")

    def stop(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(str(npz), dest, progress=stop)
    with pytest.raises(DataError, match="no zarr store there"):
        load_store(dest)


def test_chunk_shape_aims_at_a_megabyte_per_channel() -> None:
    assert chunk_shape((24694, 36, 35, 35), 4) == (213, 1, 35, 35)  # 1 MiB // (35 * 35 * 4)
    assert chunk_shape((100, 3, 32, 32), 1) == (100, 1, 32, 32)
    assert chunk_shape((10**7,), 8) == (1 << 20,)


def test_the_cli_converts_and_trains_on_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from masksel_core.cli import main

    npz = make_npz(tmp_path / "src.npz", n=120)
    assert main(["convert", str(npz), str(tmp_path / "s.zarr"), "--quiet"]) == 0
    assert "96 training and 24 test samples of 2x6x6, 3 classes" in capsys.readouterr().out
    assert main(["convert", str(npz), str(tmp_path / "s.zarr"), "--quiet"]) == 2
    assert "already there" in capsys.readouterr().err
    code = main(["train", "--data", str(tmp_path / "s.zarr"), "--mask", "channel-any", "--model", "mlp",
                 "--epochs", "2", "--warmup-epochs", "1", "--finalize-epochs", "1", "--out", str(tmp_path / "out"),
                 "--quiet"])
    assert code == 0 and (tmp_path / "out" / "model.pt").is_file()


# --- in a bucket ---------------------------------------------------------------------------------------------------

@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import uuid

    import boto3

    name = f"stores-{uuid.uuid4().hex[:8]}"
    for key, value in {"AWS_S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_S3_REGION_NAME": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_a_store_in_a_bucket_converts_loads_and_trains(tmp_path: Path, bucket: str) -> None:
    npz = make_npz(tmp_path / "src.npz", n=120)
    uri = f"s3://{bucket}/sets/small.zarr"
    convert(str(npz), uri)
    in_memory = masksel_core.load_dataset(uri)
    assert torch.equal(in_memory.x_train, load_npz(npz).x_train)
    stored = masksel_core.load_dataset(uri, budget=1)
    assert isinstance(stored, StoreDataset) and stored.options["endpoint_url"].startswith("http://127.0.0.1")
    config = masksel_core.TrainConfig(mask_type="channel-any", model="mlp", epochs=2, warmup_epochs=1,
                                      finalize_epochs=1, batch_size=16)
    result = masksel_core.train(config, stored)
    assert result.test_accuracy is not None and len(result.records) >= 4


def test_a_bucket_store_with_a_chunk_missing_is_refused(tmp_path: Path, bucket: str, s3_endpoint: str) -> None:
    import boto3

    uri = f"s3://{bucket}/cut.zarr"
    convert(str(make_npz(tmp_path / "src.npz", n=120)), uri)
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    client.delete_object(Bucket=bucket, Key="cut.zarr/x_train/c/0/1/0/0")
    with pytest.raises(DataError, match="x_train has 1 of its 2 chunks"):
        load_store(uri)
    with pytest.raises(DataError, match="no zarr store there"):
        load_store(f"s3://{bucket}/elsewhere.zarr")


def test_a_chunk_gone_from_the_bucket_mid_run_stops_training_with_a_store_error(
        tmp_path: Path, bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """zarr reads a missing key as zeros; a streamed run must not train on them (the error crosses from a reader
    process)."""
    import boto3

    from masksel_core.data.stores import StoreError

    monkeypatch.setenv("MASKSEL_LOADER_WORKERS", "1")
    uri = f"s3://{bucket}/vanishing.zarr"
    convert(str(make_npz(tmp_path / "src.npz", n=120)), uri)
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")

    def delete_chunks(record: masksel_core.EpochRecord) -> None:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="vanishing.zarr/x_train/c/")["Contents"]
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})

    config = masksel_core.TrainConfig(mask_type="channel-any", model="mlp", epochs=2, warmup_epochs=2,
                                      finalize_epochs=0, batch_size=16)
    with pytest.raises(StoreError, match="vanishing.zarr: x_train samples"):
        masksel_core.train(config, masksel_core.load_dataset(uri, budget=1), on_epoch=delete_chunks)
    assert multiprocessing.active_children() == []  # its reader stopped with the run, not at a later collection


def test_convert_writes_chunks_of_zeros_and_spares_what_lies_at_the_destination(tmp_path: Path) -> None:
    zeros = make_npz(tmp_path / "zeros.npz", n=60, x_test=np.zeros((10, 2, 6, 6), dtype=np.float32),
                     y_test=np.zeros(10, dtype=np.int64))
    summary = convert(str(zeros), str(tmp_path / "zeros.zarr"))
    assert summary["num_test"] == 10
    busy = tmp_path / "busy.zarr"
    (busy / "mine").mkdir(parents=True)
    (busy / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not empty"):
        convert(str(zeros), str(busy))
    assert (busy / "mine" / "notes.txt").read_text() == "keep me"


def test_a_conversion_whose_result_breaks_the_contract_leaves_no_store(tmp_path: Path) -> None:
    bad = make_npz(tmp_path / "bad.npz", n=60, x_test=np.zeros((10, 2, 6, 6), dtype=np.float32),
                   y_test=np.full(10, 7, dtype=np.int64))
    with pytest.raises(DataError, match="not present in y_train"):
        convert(str(bad), str(tmp_path / "bad.zarr"))
    with pytest.raises(DataError, match="no zarr store there"):
        load_store(str(tmp_path / "bad.zarr"))
    convert(str(make_npz(tmp_path / "good.npz")), str(tmp_path / "bad.zarr"), overwrite=True)

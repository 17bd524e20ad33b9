"""Whatever bytes arrive as an .npz, the loader answers with data or a DataError, nothing else."""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masksel_core.data.arrays import DataError, load_npz
from tests.conftest import make_npz

KEYS = st.sampled_from(["x_train", "y_train", "x_test", "y_test", "channel_names", "other"])
DTYPES = st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.int8, np.bool_, np.complex64, "U3"])
SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=5).map(tuple)


@st.composite
def arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    out = {}
    for key in draw(st.lists(KEYS, min_size=0, max_size=5, unique=True)):
        shape, dtype = draw(SHAPES), draw(DTYPES)
        values = draw(st.sampled_from(["zeros", "random", "nan", "labels"]))
        array = np.zeros(shape, dtype=dtype)
        if values == "random" and array.dtype.kind in "uif":
            array = (np.random.default_rng(len(out)).random(shape) * 5).astype(dtype)
        if values == "nan" and array.dtype.kind == "f" and array.size:
            array.flat[0] = np.nan
        if values == "labels" and array.dtype.kind in "iu":
            array = (np.arange(array.size) % 3).reshape(shape).astype(dtype)
        out[key] = array
    return out


def loads_or_refuses(payload: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.npz"
        path.write_bytes(payload)
        try:
            data = load_npz(path)
        except DataError as exc:
            assert str(exc)
        else:
            assert data.x_train.ndim == 4 and data.num_classes >= 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays())
def test_random_arrays_load_or_are_refused_with_a_data_error(contents: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **contents)
    loads_or_refuses(buffer.getvalue())


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_npz(tmp_path_factory.mktemp("v") / "v.npz", n=30).read_bytes()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_and_truncated_files_are_refused_cleanly(valid_bytes: bytes, data: st.DataObject) -> None:
    payload = bytearray(valid_bytes)
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(0, len(payload) - 1))]
    for _ in range(data.draw(st.integers(0, 8))):
        if payload:
            payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    loads_or_refuses(bytes(payload))


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (4_000_000, 1, 32, 32)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", header.getvalue() + b"\x00" * (64 * 1024**2))  # 64 MiB of zeros
        archive.writestr("y_train.npy", b"")
    assert path.stat().st_size < 1024**2
    with pytest.raises(DataError, match="more than the limit"):
        load_npz(path, max_bytes=1024**3)


def test_channel_last_images_are_refused_with_a_hint(tmp_path: Path) -> None:
    path = make_npz(tmp_path / "hwc.npz", x_train=np.zeros((6, 32, 32, 3), dtype=np.uint8),
                    y_train=np.array([0, 1] * 3))
    with pytest.raises(DataError, match="looks channel-last"):
        load_npz(path)

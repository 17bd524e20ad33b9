"""`python -m masksel_core convert SOURCE DEST`: an `.npz`, an HDF5 file or a folder of `.npy` files to a zarr store
chunked for masksel, on the local disk or into a bucket (`s3://bucket/prefix`).

Chunked for masksel: one channel per chunk, so that a channel mask's transfer reads only its channels, and about
`CHUNK_BYTES` per chunk along the samples, so that streaming reads few, large pieces. Every chunk is written,
even one of zeros (a missing chunk reads as zeros, so masksel refuses stores with chunks missing). The source is
read a block of samples at a time (HDF5 and `.npy` without loading them whole), and the root group's metadata is
written last: a conversion that stops halfway leaves no store that opens.
"""
from __future__ import annotations

import argparse
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import DataError, nonfinite
from .stores import is_store_uri, load_store, storage_options

CHUNK_BYTES = 1024**2
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def chunk_shape(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """(samples, 1, H, W) for inputs, about CHUNK_BYTES each; labels in chunks of up to a million."""
    if len(shape) == 1:
        return (min(shape[0], 1 << 20),)
    per_sample = int(np.prod(shape[-2:])) * itemsize
    samples = int(np.clip(CHUNK_BYTES // max(per_sample, 1), 16, 16384))
    return (min(samples, shape[0]), *([1] if len(shape) == 4 else []), *shape[-2:])


@contextmanager
def open_source(source: str) -> Iterator[tuple[dict[str, Any], list[str] | None]]:
    """The source's arrays (lazily readable, sliceable along the first axis) and its channel names."""
    path = Path(source)
    with ExitStack() as stack:
        if path.is_dir():
            arrays = {key: np.load(path / f"{key}.npy", mmap_mode="r", allow_pickle=False)
                      for key in ARRAYS if (path / f"{key}.npy").is_file()}
            names_file = path / "channel_names.npy"
            names = np.load(names_file, allow_pickle=False).tolist() if names_file.is_file() else None
        elif path.suffix in (".h5", ".hdf5"):
            import h5py

            try:
                handle = stack.enter_context(h5py.File(path, "r"))
            except OSError as exc:  # missing, or not HDF5 (h5py's FileNotFoundError is an OSError)
                raise DataError(f"{source}: not a readable HDF5 file ({exc})") from None
            arrays = {key: handle[key] for key in ARRAYS if key in handle}
            names = handle.attrs.get("channel_names")
            if names is None and "channel_names" in handle:
                names = handle["channel_names"][()]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None else None
        elif path.suffix == ".npz":
            try:
                npz = stack.enter_context(np.load(path, allow_pickle=False))
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise DataError(f"{source}: not a readable .npz file ({exc})") from None
            arrays = {key: npz[key] for key in ARRAYS if key in npz.files}
            names = npz["channel_names"].tolist() if "channel_names" in npz.files else None
        else:
            raise DataError(f"{source}: give an .npz file, an HDF5 file (.h5, .hdf5) or a folder of .npy files")
        for key in ("x_train", "y_train"):
            if key not in arrays:
                raise DataError(f"{source}: missing required array {key!r} (found: {', '.join(arrays) or 'none'})")
        yield arrays, names


def convert(source: str, dest: str, *, overwrite: bool = False,
            progress: Callable[[int], None] | None = None) -> dict[str, object]:
    """Write the store and check it as `load_dataset` would; returns its summary."""
    import zarr

    options = check_dest(dest, overwrite=overwrite)
    with open_source(source) as (arrays, names):
        for key, array in arrays.items():
            if getattr(array, "dtype", np.dtype("O")).kind not in "uif":
                raise DataError(f"{source}: {key} must be numeric, got dtype {getattr(array, 'dtype', '?')}")
        store = zarr.storage.FsspecStore.from_url(dest, storage_options=options) if options is not None else dest
        group = zarr.open_group(store, mode="w")  # empties the destination (checked empty, or --overwrite)
        # Every chunk written, zeros too: a chunk left out reads as zeros and masksel refuses such stores.
        targets = {key: group.create_array(key, shape=array.shape, dtype=array.dtype,
                                           chunks=chunk_shape(array.shape, array.dtype.itemsize),
                                           config={"write_empty_chunks": True})
                   for key, array in arrays.items()}
        _remove_root_document(dest, options)  # until every chunk is written, nothing opens there as a store
        for key, array in arrays.items():
            target, step = targets[key], targets[key].chunks[0]
            for start in range(0, array.shape[0], step):
                block = np.asarray(array[start:start + step])
                bad = nonfinite(block)  # as loading an .npz refuses it
                if bad:
                    raise DataError(f"{source}: {key} contains {bad} (samples {start} to "
                                    f"{start + len(block) - 1}); {dest} is left without its root document")
                target[start:start + step] = block
                if progress is not None and key.startswith("x_"):
                    progress(min(step, array.shape[0] - start))
        group = zarr.open_group(store, mode="a")  # the root document last: only now does the store open
        if names is not None:
            group.attrs["channel_names"] = [str(n) for n in names]
    try:
        return load_store(dest).summary()
    except DataError:
        _remove_root_document(dest, options)  # what breaks the contract does not open as a data set
        raise


def check_dest(dest: str, *, overwrite: bool) -> dict[str, Any] | None:
    """Refuse a destination that is no store name, or holds a store already (unless `overwrite`); its options."""
    import fsspec

    if not is_store_uri(dest):
        raise DataError(f"{dest}: the destination must end in .zarr or be an s3:// URI")
    options = storage_options(dest)
    fs, path = fsspec.core.url_to_fs(dest, **(options or {}))
    if not overwrite and fs.exists(f"{path.rstrip('/')}/zarr.json"):
        raise DataError(f"{dest}: a store is already there (give --overwrite to replace it)")
    if not overwrite and fs.exists(path) and (not fs.isdir(path) or fs.ls(path)):
        raise DataError(f"{dest}: is not empty, and writing a store there would delete what it holds (give "
                        "--overwrite to replace it, or another destination)")
    return options


def _remove_root_document(dest: str, options: dict[str, Any] | None) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(dest, **(options or {}))
    if fs.exists(f"{path.rstrip('/')}/zarr.json"):
        fs.rm(f"{path.rstrip('/')}/zarr.json")


def add_parser(commands: Any) -> None:
    c = commands.add_parser("convert", help="convert an .npz, HDF5 file or folder of .npy files to a zarr store")
    c.add_argument("source", help="an .npz, an .h5/.hdf5 file, or a folder of x_train.npy, y_train.npy, ...")
    c.add_argument("dest", help="path/to/set.zarr or s3://bucket/prefix (AWS_* variables for the bucket)")
    c.add_argument("--overwrite", action="store_true", help="replace a store that is already there")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    check_dest(args.dest, overwrite=args.overwrite)
    with open_source(args.source) as (arrays, _):
        total = sum(int(a.shape[0]) for key, a in arrays.items() if key.startswith("x_"))
    with tqdm(total=total, unit="sample", disable=args.quiet, file=sys.stderr) as bar:
        summary = convert(args.source, args.dest, overwrite=args.overwrite, progress=bar.update)
    print(f"wrote {args.dest}: {summary['num_train']} training and {summary['num_test']} test samples of "
          f"{'x'.join(map(str, summary['input_shape']))}, {summary['num_classes']} classes")
    return 0

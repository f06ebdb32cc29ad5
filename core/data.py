"""Evaluation and training data: ``.npz`` with ``x`` (and ``y``), or a ``.pt`` dict of tensors.

``x`` is a tensor, a tuple/list of tensors (positional arguments) or a dict of tensors
(keyword arguments); the first dimension of every tensor is the sample axis. ``y`` holds
integer class labels and turns on accuracy.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import DataError, first_line

Inputs = torch.Tensor | tuple[torch.Tensor, ...] | dict[str, torch.Tensor]


@dataclass
class Dataset:
    """Samples as model inputs plus optional labels; ``source`` names the file."""

    x: Inputs
    y: torch.Tensor | None
    source: str

    def __len__(self) -> int:
        return _length(self.x)

    def batches(self, batch_size: int) -> Iterator[tuple[tuple, dict, torch.Tensor | None]]:
        """(args, kwargs, labels) per batch, in order."""
        n = len(self)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield self.slice(start, stop)

    def slice(self, start: int, stop: int) -> tuple[tuple, dict, torch.Tensor | None]:
        y = None if self.y is None else self.y[start:stop]
        if isinstance(self.x, torch.Tensor):
            return (self.x[start:stop],), {}, y
        if isinstance(self.x, tuple):
            return tuple(t[start:stop] for t in self.x), {}, y
        return (), {k: t[start:stop] for k, t in self.x.items()}, y

    def subset(self, count: int) -> Dataset:
        """The first ``count`` samples (for quick sweeps)."""
        args, kwargs, y = self.slice(0, min(count, len(self)))
        x: Inputs = kwargs if kwargs else (args[0] if len(args) == 1 else args)
        if isinstance(self.x, tuple):
            x = args
        return Dataset(x, y, self.source)


def _tensors(x: Inputs) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, tuple):
        return list(x)
    return list(x.values())


def _length(x: Inputs) -> int:
    return int(_tensors(x)[0].shape[0])


_NUMERIC_KINDS = "biufc"  # numpy dtype kinds torch can hold: bool, int, uint, float, complex
_KIND_NAMES = {
    "U": "text (string)",
    "S": "byte-string",
    "V": "structured or raw",
    "M": "date-time",
    "m": "time-delta",
}


def _as_tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise DataError(f"{where}: holds Python objects, not numbers")
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise DataError(
                f"{where}: holds {_KIND_NAMES.get(value.dtype.kind, 'non-numeric')} values "
                f"(dtype {value.dtype.str}), not numbers"
            )
        try:
            return torch.from_numpy(np.ascontiguousarray(value))
        except TypeError:  # a numeric dtype torch has no tensor type for
            raise DataError(f"{where}: dtype {value.dtype} is not supported by torch") from None
    raise DataError(f"{where}: expected an array or tensor, got {type(value).__name__}")


def _as_inputs(value: Any, where: str) -> Inputs:
    if isinstance(value, list | tuple):
        if not value:
            raise DataError(f"{where}: is an empty list")
        return tuple(_as_tensor(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        if not value:
            raise DataError(f"{where}: is an empty dict")
        return {str(k): _as_tensor(v, f"{where}[{k!r}]") for k, v in value.items()}
    return _as_tensor(value, where)


def load_data(path: str | Path) -> Dataset:
    """Load and check a data file; errors name the file and what is wrong."""
    path = Path(path)
    name = path.name
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file")
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    try:
        raw = _read(path)
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, RuntimeError, EOFError) as exc:
        raise DataError(f"{name}: cannot be read as .npz or .pt data ({first_line(exc)})") from None
    if "x" not in raw:
        keys = ", ".join(sorted(map(str, raw))) or "nothing"
        raise DataError(f"{name}: has no 'x' (found {keys})")
    x = _as_inputs(raw["x"], f"{name}: x")
    y = None if raw.get("y") is None else _as_tensor(raw["y"], f"{name}: y")
    return validate(Dataset(x, y, name))


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        head = fh.read(4)
    if path.suffix.lower() == ".npz" and head[:2] != b"PK":
        raise DataError(f"{path.name}: is not an .npz archive (expected a zip of arrays)")
    if head[:2] == b"PK" and path.suffix.lower() != ".pt":
        try:
            with np.load(path, allow_pickle=False) as npz:
                _check_declared_sizes(npz.zip, path.name)
                return {k: npz[k] for k in npz.files}
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise DataError(
                    f"{path.name}: holds pickled objects, which Secateur does not load"
                ) from None
            raise
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(
            f"{path.name}: is not a weights-only .pt data file ({first_line(exc, 160)})"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path.name}: expected a dict with 'x' and 'y', got {type(obj).__name__}")
    return obj


def _check_declared_sizes(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse an array whose header declares more data than its member holds.

    numpy allocates what an .npy header declares before reading it, so a few bytes of
    hostile header could ask for terabytes; the declared size is checked against the
    member's size first."""
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        with archive.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            header = fh.tell()
        if dtype.hasobject:
            continue  # pickled: refused when read
        declared = math.prod(shape) * dtype.itemsize
        holds = info.file_size - header
        if declared > holds:
            key = info.filename.removesuffix(".npy")
            raise DataError(
                f"{name}: {key} declares shape {tuple(shape)} ({declared:,} bytes) but holds "
                f"{max(holds, 0):,} bytes (a damaged or hostile file)"
            )


def validate(data: Dataset) -> Dataset:
    """Check lengths, emptiness, finiteness and labels; convert inputs to float32 as needed."""
    name = data.source
    tensors = _tensors(data.x)
    n = int(tensors[0].shape[0]) if tensors[0].dim() > 0 else -1
    if n <= 0:
        raise DataError(f"{name}: x is empty (no samples)")
    for t in tensors:
        if t.dim() == 0 or t.shape[0] != n:
            shape = tuple(t.shape)
            raise DataError(f"{name}: x parts disagree on the number of samples ({shape} vs {n})")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise DataError(f"{name}: x holds {bad} NaN or infinite values")
    if data.x is not None:
        data.x = _floats(data.x)
    if data.y is not None:
        y = data.y
        if y.dim() != 1:
            raise DataError(
                f"{name}: y must be a 1-D array of class labels, got shape {tuple(y.shape)}"
            )
        if y.is_floating_point():
            if not bool(torch.all(y == y.round())):
                raise DataError(f"{name}: y holds non-integer values (labels must be classes)")
            y = y.long()
        if y.dtype == torch.bool or y.is_complex():
            raise DataError(f"{name}: y must hold integer class labels, got {y.dtype}")
        y = y.long()  # torch compares few unsigned dtypes (uint16/32/64 have no '<')
        if y.shape[0] != n:
            raise DataError(f"{name}: x has {n} samples but y has {y.shape[0]}")
        if bool((y < 0).any()):
            raise DataError(f"{name}: y holds negative labels (min {int(y.min())})")
        data.y = y
    return data


def _floats(x: Inputs) -> Inputs:
    def conv(t: torch.Tensor) -> torch.Tensor:
        return t.float() if t.dtype == torch.float64 else t

    if isinstance(x, torch.Tensor):
        return conv(x)
    if isinstance(x, tuple):
        return tuple(conv(t) for t in x)
    return {k: conv(t) for k, t in x.items()}


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'1x3x224x224' -> (1, 3, 224, 224); errors name the bad value."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise DataError(f"--input-shape: {text!r} is not a shape like 1x3x224x224") from None
    if not shape or any(s <= 0 for s in shape):
        raise DataError(f"--input-shape: {text!r} has a zero or negative dimension")
    if math.prod(shape) > 2**31:
        raise DataError(f"--input-shape: {text!r} is too large")
    return shape


RANDOM_SAMPLES = 32
"""Samples of a random input (no data, an input shape): enough for a stable cosine and a
latency batch, few enough to stay fast. The engine, the sweep and the save all use it."""


def random_data(shape: tuple[int, ...], seed: int = 0) -> Dataset:
    """A seeded random float input of ``shape`` for latency and fidelity without data: at
    least ``RANDOM_SAMPLES`` samples (more when the shape's batch asks for more)."""
    gen = torch.Generator().manual_seed(seed)
    count = max(shape[0], RANDOM_SAMPLES)
    x = torch.randn((count, *shape[1:]), generator=gen)
    return Dataset(x, None, f"random input {'x'.join(map(str, shape))}")

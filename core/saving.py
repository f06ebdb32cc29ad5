"""Saving in every format of ``core.formats``, atomically, each followed by a round trip.

A save writes through ``core.atomic`` (a temporary file in the target folder, fsync, rename),
so a failure at any point leaves either the old file or nothing, never half a file; then the
file is reloaded, run on the example input and compared with the in-memory model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.atomic import atomic_file, atomic_write_bytes, folder_lock
from core.data import Dataset
from core.errors import Cancelled, SaveError, UnsupportedError, first_line
from core.formats import SAVE_FORMATS, SaveFormat, Writer
from core.loading import SIDECAR_SUFFIX, file_sha256, load_model, sidecar_path
from core.metrics import call, flatten_outputs


@dataclass
class SaveOutcome:
    path: Path
    format: str
    file_bytes: int
    round_trip: dict[str, Any]
    sidecar: Path | None


ROUND_TRIP_SAMPLES = 4  # samples of the example input the saved file is run on


def check_format(model: nn.Module, path: Path, fmt: str) -> SaveFormat:
    """The format entry, or a refusal (before any work) when it cannot hold ``model``."""
    if fmt not in SAVE_FORMATS:
        raise SaveError(f"--format: {fmt!r} is not one of {SAVE_FORMATS.choices()}")
    entry = SAVE_FORMATS[fmt]
    reason = entry.cannot_hold(model, path)
    if reason is not None:
        raise UnsupportedError(reason)
    return entry


def save_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    example: Dataset,
    quantized: dict[str, Any] | None = None,
    protected: Path | None = None,
    force: bool = False,
    arch: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SaveOutcome:
    """Write ``model`` atomically in ``fmt``, then reload it, run it and compare.

    ``quantized`` ({'quantize': ..., 'layers': [...]}) is written beside a state dict as a
    sidecar so the quantized modules can be rebuilt when it is loaded with its --arch.
    ``protected`` is the user's input model file: it is never overwritten unless ``force``.
    """
    path = Path(path)
    if fmt not in SAVE_FORMATS:
        raise SaveError(f"--format: {fmt!r} is not one of {SAVE_FORMATS.choices()}")
    if path.is_dir():
        raise SaveError(f"{path}: is a folder; give a file name to save to")
    if protected is not None and path.exists() and _same_file(path, protected) and not force:
        raise SaveError(
            f"{path}: is the model you opened; choose another name (or pass --force to "
            "overwrite it)"
        )
    entry = check_format(model, path, fmt)
    args, kwargs, _ = example.slice(0, min(ROUND_TRIP_SAMPLES, len(example)))
    writer = entry.writer(model, path, (args, kwargs))
    stop = should_stop or (lambda: False)
    if stop():
        raise Cancelled()
    # Another process saving into this folder waits: the file, its sidecar and the round
    # trip are this save's alone (never one process's model beside another's sidecar).
    with folder_lock(path.parent):
        side = sidecar_path(path)
        sidecar = quantized if entry.needs_arch and quantized and quantized.get("layers") else None
        _write(path, writer, entry, fmt, stop, side, sidecar)
        if sidecar is None and side.exists() and side.name.endswith(SIDECAR_SUFFIX):
            side.unlink()  # a stale sidecar would rebuild the wrong modules
        round_trip = verify_round_trip(model, path, fmt, args, kwargs, arch)
        return SaveOutcome(path, fmt, path.stat().st_size, round_trip, side if sidecar else None)


def _write(
    path: Path,
    writer: Writer,
    entry: SaveFormat,
    fmt: str,
    stop: Callable[[], bool],
    side: Path,
    sidecar: dict[str, Any] | None,
) -> None:
    """The model file itself, atomically, and its sidecar; failures as one-line errors.

    The sidecar names the digest of the model file it belongs to and is published first,
    the model last: an interruption in between (a kill, a power loss) leaves a sidecar
    that the loader sees does not belong to the model beside it, never a silent mismatch.
    (Without a sidecar, the model is published first and a stale sidecar removed after.)"""
    try:
        with atomic_file(path) as fh:
            writer(fh)
            if stop():
                raise Cancelled()  # the temporary file is removed; the target is untouched
            if sidecar is not None:
                fh.flush()
                fh.seek(0)
                pair = {**sidecar, "model_sha256": file_sha256(fh)}
                atomic_write_bytes(side, (json.dumps(pair, indent=2) + "\n").encode())
    except (SaveError, UnsupportedError, Cancelled):
        raise
    except OSError as exc:
        raise SaveError(f"{path}: write failed ({exc.strerror or first_line(exc)})") from None
    except Exception as exc:
        if entry.needs_arch:
            raise SaveError(f"{path}: serialisation failed ({first_line(exc, 200)})") from None
        raise UnsupportedError(
            f"{path.name}: this model cannot be saved as {fmt} ({first_line(exc, 200)}); "
            "try --format state_dict"
        ) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def verify_round_trip(
    model: nn.Module, path: Path, fmt: str, args: tuple, kwargs: dict, arch: str | None
) -> dict[str, Any]:
    """Reload the saved file, run it, compare with the in-memory model."""
    try:
        if SAVE_FORMATS[fmt].needs_arch:
            if arch is None:
                return {"ok": None, "max_abs_error": None, "reason": "no architecture to rebuild"}
            reloaded = load_model(path, arch=arch).model
        else:
            reloaded = load_model(path, trust=True).model  # our own file, just written
        with torch.inference_mode():
            expected = [t.float() for t in flatten_outputs(call(model, args, kwargs))]
            got = [t.float() for t in flatten_outputs(call(reloaded, args, kwargs))]
    except Exception as exc:
        return {"ok": False, "max_abs_error": None, "reason": first_line(exc, 200)}
    if len(expected) != len(got) or any(a.shape != b.shape for a, b in zip(expected, got)):
        return {"ok": False, "max_abs_error": None, "reason": "outputs differ in shape"}
    err = max((float((a - b).abs().max()) for a, b in zip(expected, got)), default=0.0)
    scale = max((float(a.abs().max()) for a in expected), default=1.0)
    return {"ok": err <= 1e-4 * max(1.0, scale), "max_abs_error": err}

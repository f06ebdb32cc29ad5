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

from core.atomic import atomic_file, atomic_write_bytes
from core.data import Dataset
from core.errors import Cancelled, SaveError, UnsupportedError, first_line
from core.formats import SAVE_FORMATS, SaveFormat
from core.loading import SIDECAR_SUFFIX, load_model, sidecar_path
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
    sidecar: dict[str, Any] | None = None,
    protected: Path | None = None,
    force: bool = False,
    arch: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SaveOutcome:
    """Write ``model`` atomically in ``fmt``, then reload it, run it and compare.

    ``sidecar`` (the quantized layers' rules, the shapes of layers whose channels were
    removed) is written beside a state dict (``OUT.secateur.json``), so that loading it with
    its --arch rebuilds those layers.
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
    try:
        with atomic_file(path) as fh:
            writer(fh)
            if stop():
                raise Cancelled()  # the temporary file is removed; the target is untouched
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
    written = None
    side = sidecar_path(path)
    if entry.needs_arch and sidecar:
        atomic_write_bytes(side, (json.dumps(sidecar, indent=2) + "\n").encode())
        written = side
    elif side.exists() and side.name.endswith(SIDECAR_SUFFIX):
        side.unlink()  # a stale sidecar would rebuild the wrong modules
    round_trip = verify_round_trip(model, path, fmt, args, kwargs, arch)
    return SaveOutcome(path, fmt, path.stat().st_size, round_trip, written)


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

"""Saving in every format of ``core.formats``, atomically, each followed by a round trip.

A save writes through ``core.atomic`` (a temporary file in the target folder, fsync, rename),
so a failure at any point leaves either the old file or nothing, never half a file; then the
file is reloaded, run on the example input and compared with the in-memory model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from core.atomic import atomic_write_bytes, folder_lock
from core.compressed import write as write_compressed
from core.data import Dataset, random_data
from core.errors import Cancelled, SaveError, UnsupportedError, first_line
from core.formats import FALLBACK_FORMATS, SAVE_FORMATS, SaveFormat, Saving
from core.loading import SIDECAR_SUFFIX, file_sha256, load_model, sidecar_path
from core.metrics import CountingSink, call, flatten_outputs
from core.onnx_runtime import verify_onnx


@dataclass
class SaveOutcome:
    path: Path
    format: str
    file_bytes: int
    round_trip: dict[str, Any]
    sidecar: Path | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FormatOption:
    """One format the save dialog offers for a result: whether it can hold it (``reason``
    says why not), and the file's predicted size (``exact``: what the file will weigh, as
    written by the same serialiser; otherwise an estimate from the tensors' bytes)."""

    name: str
    label: str
    tooltip: str
    suffix: str
    reason: str | None
    size: int | None
    exact: bool = False

    @property
    def available(self) -> bool:
        return self.reason is None


ROUND_TRIP_SAMPLES = 4  # samples of the example input the saved file is run on
SIDECAR_FORMATS = ("state_dict",)  # the formats whose rebuild information sits beside them


def check_format(saving: Saving, fmt: str) -> SaveFormat:
    """The format entry, or a refusal (before any writing) when it cannot hold the model."""
    if fmt not in SAVE_FORMATS:
        raise SaveError(f"--format: {fmt!r} is not one of {SAVE_FORMATS.choices()}")
    entry = SAVE_FORMATS[fmt]
    reason = entry.cannot_hold(saving)
    if reason is not None:
        raise UnsupportedError(reason)
    return entry


def inferred_input(model: nn.Module) -> Dataset | None:
    """A random input for a model whose first layer is a Linear (its in_features tell the
    shape), so that a save without any data can still be run and checked; None otherwise."""
    first = next((m for _, m in model.named_modules() if isinstance(m, nn.Linear)), None)
    leading = next((m for _, m in model.named_modules() if m is not model and not m._modules), None)
    if first is None or leading is not first:
        return None
    return random_data((1, first.in_features))


def save_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    example: Dataset | None,
    sidecar: dict[str, Any] | None = None,
    protected: Path | None = None,
    force: bool = False,
    arch: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    build: Callable[[], nn.Module] | None = None,
    export_int8: str | None = None,
) -> SaveOutcome:
    """Write ``model`` atomically in ``fmt``, then reload it, run it and compare.

    ``sidecar`` (the quantized layers' rules, the shapes of layers whose channels were
    removed) is written beside a state dict (``OUT.secateur.json``) and inside a compressed
    file, so that loading it with its architecture (``arch``, or ``build`` which returns a
    fresh one) rebuilds those layers. ``export_int8``: ONNX Runtime quantizes at export
    (``backend: onnxruntime``), with this granularity. Without ``example`` the saved tensors
    are compared exactly instead of running the file (formats that trace need an input).
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
    entry = SAVE_FORMATS[fmt]
    args: tuple = ()
    kwargs: dict = {}
    if example is not None:
        args, kwargs, _ = example.slice(0, min(ROUND_TRIP_SAMPLES, len(example)))
    elif entry.traces:
        raise SaveError(
            f"{path.name}: {fmt} traces the model on an input: give evaluation data (--data) "
            "or an input shape (--input-shape)"
        )
    stop = should_stop or (lambda: False)
    side = sidecar_path(path)
    beside = sidecar if fmt in SIDECAR_FORMATS and sidecar else None

    def publish_sidecar(fh: IO[bytes]) -> None:
        """The sidecar names the digest of the model file it belongs to and is published
        first, the model last: an interruption in between (a kill, a power loss) leaves a
        sidecar the loader sees does not belong to the model beside it, never a mismatch."""
        fh.flush()
        fh.seek(0)
        pair = {**(beside or {}), "model_sha256": file_sha256(fh)}
        atomic_write_bytes(side, (json.dumps(pair, indent=2) + "\n").encode())

    saving = Saving(
        model,
        path,
        args,
        kwargs,
        sidecar,
        export_int8,
        stop,
        publish_sidecar if beside is not None else None,
    )
    check_format(saving, fmt)
    if stop():
        raise Cancelled()
    # Another process saving into this folder waits: the file, its sidecar and the round
    # trip are this save's alone (never one process's model beside another's sidecar).
    with folder_lock(path.parent):
        notes = _write(saving, entry, fmt)
        if beside is None and side.exists() and side.name.endswith(SIDECAR_SUFFIX):
            side.unlink()  # a stale sidecar would rebuild the wrong modules
        if example is None:
            round_trip = compare_tensors(model, path, fmt, arch, build)
        else:
            round_trip = verify_round_trip(model, path, fmt, args, kwargs, arch, build, export_int8)
        size = path.stat().st_size + sum(
            p.stat().st_size for p in (path.with_name(path.name + ".data"),) if p.is_file()
        )
        return SaveOutcome(path, fmt, size, round_trip, side if beside else None, notes)


def _write(saving: Saving, entry: SaveFormat, fmt: str) -> list[str]:
    """The file, atomically, by its format; failures as one-line errors."""
    path = saving.path
    try:
        return entry.write(saving)
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


def _reload(path: Path, fmt: str, arch: str | None, build: Callable[[], nn.Module] | None) -> Any:
    """The saved file loaded back as Secateur loads any model (None: nothing rebuilds it)."""
    if SAVE_FORMATS[fmt].needs_arch:
        if arch is None and build is None:
            return None
        return load_model(path, arch=arch, build=build).model
    return load_model(path, trust=True).model  # our own file, just written


def verify_round_trip(
    model: nn.Module,
    path: Path,
    fmt: str,
    args: tuple,
    kwargs: dict,
    arch: str | None,
    build: Callable[[], nn.Module] | None = None,
    export_int8: str | None = None,
) -> dict[str, Any]:
    """Reload the saved file, run it, compare with the in-memory model (an ONNX file runs in
    ONNX Runtime, at two batch sizes)."""
    if fmt == "onnx":
        return verify_onnx(model, path, args, kwargs, int8=export_int8 is not None)
    try:
        reloaded = _reload(path, fmt, arch, build)
        if reloaded is None:
            return {"ok": None, "max_abs_error": None, "reason": "no architecture to rebuild"}
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


def compare_tensors(
    model: nn.Module, path: Path, fmt: str, arch: str | None, build: Callable[[], nn.Module] | None
) -> dict[str, Any]:
    """With no input to run it on: reload the file and compare every saved tensor exactly."""
    try:
        reloaded = _reload(path, fmt, arch, build)
        if reloaded is None:
            return {"ok": None, "max_abs_error": None, "reason": "no architecture to rebuild"}
        mine, theirs = model.state_dict(), reloaded.state_dict()
    except Exception as exc:
        return {"ok": False, "max_abs_error": None, "reason": first_line(exc, 200)}
    if list(mine) != list(theirs):
        return {"ok": False, "max_abs_error": None, "reason": "the saved tensors differ in names"}
    differ = [k for k in mine if not _same(mine[k], theirs[k])]
    if differ:
        return {"ok": False, "max_abs_error": None, "reason": f"{differ[0]} differs"}
    return {
        "ok": True,
        "max_abs_error": 0.0,
        "reason": f"no input: all {len(mine)} saved tensors compared exactly",
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if type(a) is not type(b) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.is_quantized:
            return torch.equal(a.int_repr(), b.int_repr())
        plain = getattr(a, "qdata", a)
        other = getattr(b, "qdata", b)
        return torch.equal(plain, other)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ------------------------------------------------------------- the save dialog
def format_options(
    model: nn.Module,
    stem: Path,
    example: Dataset | None,
    sidecar: dict[str, Any] | None = None,
    export_int8: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[FormatOption]:
    """Every save format for this result, in registry order: why it cannot hold it (the
    format's ``cannot_hold``, or no input to trace it on) and its predicted size.

    ``stem`` is the file name without suffix that each format's own suffix completes (the
    reasons name it). State dicts, pickles and compressed files are measured by writing
    them into a byte counter; traced formats (TorchScript, exported, ONNX) are estimated
    from the state dict's bytes, since tracing costs as much as saving."""
    stop = should_stop or (lambda: False)
    options = []
    for entry in SAVE_FORMATS:
        if stop():
            raise Cancelled()
        path = stem.with_name(stem.name + entry.suffix)
        saving = Saving(model, path, sidecar=sidecar, export_int8=export_int8)
        reason = entry.cannot_hold(saving)
        if reason is None and entry.traces and example is None:
            reason = "needs an input to trace the model on: evaluation data or an input shape"
        size, exact = None, False
        if reason is None:
            size, exact = _predicted_size(entry.name, model, sidecar, export_int8)
        else:
            reason = reason.removeprefix(f"{path.name}: ")
        options.append(
            FormatOption(entry.name, entry.label, entry.tooltip, entry.suffix, reason, size, exact)
        )
    return options


def _predicted_size(
    fmt: str, model: nn.Module, sidecar: dict[str, Any] | None, export_int8: str | None
) -> tuple[int | None, bool]:
    """(bytes, exact): written into a byte counter by the format's own serialiser where
    that is cheap, else estimated as the state dict's bytes (a traced file holds the same
    tensors plus its graph; ONNX Runtime's int8 keeps one byte per Linear weight)."""
    sink = CountingSink()
    try:
        if fmt == "pickle":
            torch.save(model, sink)
        elif fmt == "compressed":
            write_compressed(model, sink, sidecar or {})
        else:
            torch.save(model.state_dict(), sink)
    except Exception:  # the save itself will say what is wrong; here the size is unknown
        return None, False
    size = sink.size
    if fmt == "onnx" and export_int8 is not None:
        for module in model.modules():
            if isinstance(module, nn.Linear):
                weight = module.weight
                size -= weight.numel() * (weight.element_size() - 1)
    return size, fmt in ("state_dict", "pickle", "compressed")


def default_option(options: list[FormatOption], source_format: str) -> str | None:
    """The format the save dialog starts on: the input's own kind when it can hold the
    result (state_dict for the demo), else the first of ``FALLBACK_FORMATS`` that can, else
    any that can (None: none can)."""
    available = [o.name for o in options if o.available]
    first = source_format if source_format in SAVE_FORMATS else "state_dict"
    for name in (first, *FALLBACK_FORMATS, *available):
        if name in available:
            return name
    return None

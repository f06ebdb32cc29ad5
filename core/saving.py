"""Atomic saves in every format, each followed by a reload-and-run round trip.

A save writes a temporary file in the target folder, fsyncs it and renames it over the
target, so a failure at any point leaves either the old file or nothing, never half a file.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import torch
from torch import nn

from core import compat
from core.data import Dataset
from core.errors import Cancelled, SaveError, UnsupportedError, first_line
from core.loading import SIDECAR_SUFFIX, sidecar_path
from core.metrics import call, flatten_outputs

SaveFormat = Literal["state_dict", "pickle", "torchscript", "exported"]
SAVE_FORMATS: tuple[str, ...] = SaveFormat.__args__  # type: ignore[attr-defined]


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """Yield a temporary file beside ``path``; on success fsync it and replace ``path``."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SaveError(f"{path}: the folder {folder} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except PermissionError:
        raise SaveError(f"{path}: permission denied (cannot write in {folder})") from None
    except OSError as exc:
        raise SaveError(f"{path}: cannot write in {folder} ({exc.strerror})") from None
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file owner-only; a saved model gets the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is racy)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    try:
        with atomic_file(Path(path)) as fh:
            fh.write(data)
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError(f"{path}: write failed ({exc.strerror or first_line(exc)})") from None


@dataclass
class SaveOutcome:
    path: Path
    format: str
    file_bytes: int
    round_trip: dict[str, Any]
    sidecar: Path | None


def default_format(source_format: str) -> str:
    return "state_dict" if source_format in ("demo", "state_dict") else source_format


def _is_plain(model: nn.Module) -> bool:
    return all(type(t) in (torch.Tensor, nn.Parameter) for t in model.state_dict().values())


def _has_torchao(model: nn.Module) -> bool:
    return any(type(t).__module__.startswith("torchao") for t in model.state_dict().values())


def _writer(
    model: nn.Module, fmt: str, path: Path, example: tuple[tuple, dict]
) -> Callable[[IO[bytes]], None]:
    """A function that serialises ``model`` in ``fmt`` to an open file, or a refusal."""
    args, kwargs = example
    if fmt == "state_dict":
        if path.suffix.lower() == ".safetensors":
            if not _is_plain(model):
                raise UnsupportedError(
                    f"{path.name}: .safetensors cannot hold quantized tensors; save as .pt"
                )
            from safetensors.torch import save

            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            return lambda fh: fh.write(save(state))
        return lambda fh: torch.save(model.state_dict(), fh)
    if fmt == "pickle":
        if _has_torchao(model):
            raise UnsupportedError(
                f"{path.name}: torchao's int8 tensors cannot be pickled as a whole model; "
                "save as state_dict (with its sidecar) or exported"
            )
        return lambda fh: torch.save(model, fh)
    if fmt == "torchscript":
        if _has_torchao(model):
            # torch.jit.trace aborts the whole process on torchao's tensor subclasses.
            raise UnsupportedError(
                f"{path.name}: TorchScript cannot hold torchao's int8 tensors; save as "
                "state_dict or exported, or quantize with backend: legacy"
            )
        if isinstance(model, torch.jit.ScriptModule):
            return lambda fh: _quiet_call(torch.jit.save, model, fh)
        try:
            with compat.quiet(), torch.inference_mode(False), torch.no_grad():
                scripted = torch.jit.trace(model, args, example_kwarg_inputs=kwargs or None)
        except Exception as exc:
            raise UnsupportedError(
                f"{path.name}: this model cannot be saved as TorchScript ({first_line(exc, 160)})"
            ) from None
        return lambda fh: _quiet_call(torch.jit.save, scripted, fh)
    if fmt == "exported":
        if any(hasattr(m, "weight_mask") for m in model.modules()):
            raise UnsupportedError(
                f"{path.name}: torch.export cannot hold pruning masks; use permanent: true "
                "in the recipe, or save as state_dict"
            )
        try:
            with compat.quiet():
                program = torch.export.export(
                    model, args, kwargs or None, dynamic_shapes=_batch_dynamic(model, args, kwargs)
                )
        except Exception as exc:
            raise UnsupportedError(
                f"{path.name}: this model cannot be exported with torch.export "
                f"({first_line(exc, 160)})"
            ) from None
        return lambda fh: torch.export.save(program, fh)
    raise SaveError(f"--format: {fmt!r} is not one of {', '.join(SAVE_FORMATS)}")


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
        raise SaveError(f"--format: {fmt!r} is not one of {', '.join(SAVE_FORMATS)}")
    if path.is_dir():
        raise SaveError(f"{path}: is a folder; give a file name to save to")
    if protected is not None and path.exists() and _same_file(path, protected) and not force:
        raise SaveError(
            f"{path}: is the model you opened; choose another name (or pass --force to "
            "overwrite it)"
        )
    sample = example.slice(0, min(4, len(example)))
    args, kwargs = sample[0], sample[1]
    writer = _writer(model, fmt, path, (args, kwargs))
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
        if fmt == "state_dict":
            raise SaveError(f"{path}: serialisation failed ({first_line(exc, 200)})") from None
        raise UnsupportedError(
            f"{path.name}: this model cannot be saved as {fmt} ({first_line(exc, 200)}); "
            "try --format state_dict"
        ) from None
    sidecar = None
    side = sidecar_path(path)
    if fmt == "state_dict" and quantized and quantized.get("layers"):
        atomic_write_bytes(side, (json.dumps(quantized, indent=2) + "\n").encode())
        sidecar = side
    elif side.exists() and side.name.endswith(SIDECAR_SUFFIX):
        side.unlink()  # a stale sidecar would rebuild the wrong modules
    round_trip = verify_round_trip(model, path, fmt, args, kwargs, arch)
    return SaveOutcome(path, fmt, path.stat().st_size, round_trip, sidecar)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def verify_round_trip(
    model: nn.Module, path: Path, fmt: str, args: tuple, kwargs: dict, arch: str | None
) -> dict[str, Any]:
    """Reload the saved file, run it, compare with the in-memory model."""
    from core.loading import load_model

    try:
        if fmt == "state_dict":
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


def _quiet_call(func: Callable[..., Any], *args: Any) -> Any:
    with compat.quiet():
        return func(*args)


def _batch_dynamic(model: nn.Module, args: tuple, kwargs: dict) -> Any:
    """dynamic_shapes that let the exported program take any batch size."""
    auto = torch.export.Dim.AUTO

    def spec(value: Any) -> Any:
        return {0: auto} if isinstance(value, torch.Tensor) and value.dim() > 0 else None

    if not kwargs:
        return tuple(spec(a) for a in args)
    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    return {name: spec(value) for name, value in bound.arguments.items()}

"""Save formats: each declared once, with what it can hold and how it is written.

A format entry has the name ``--format`` takes, a label and a one-line explanation for the save
dialog, the file suffix and dialog filter, ``cannot_hold(model, path)`` (why this format cannot
hold this model, or None: asked before any work starts), and ``writer(model, path, example)``,
which prepares the serialisation (tracing, exporting) and returns a function that writes the
bytes to an open file. ``core.saving`` does the atomic write and the round trip for every
format alike. torch is imported only when a format is used.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core import compat
from core.errors import UnsupportedError, first_line
from core.registry import Registry

if TYPE_CHECKING:
    from torch import nn

Writer = Callable[[IO[bytes]], None]


@dataclass(frozen=True)
class SaveFormat:
    """One file format the compressed model can be saved in."""

    name: str
    label: str
    tooltip: str
    suffix: str
    patterns: str  # the file dialog's filter patterns, e.g. "*.pt *.pth"
    cannot_hold: Callable[[nn.Module, Path], str | None]
    writer: Callable[[nn.Module, Path, tuple[tuple, dict]], Writer]
    needs_arch: bool = False  # reloading needs the architecture (and a sidecar)

    @property
    def dialog_filter(self) -> str:
        return f"{self.label} ({self.patterns})"


def is_plain(model: nn.Module) -> bool:
    """Every tensor is a plain float/int tensor (no quantized or subclass tensors)."""
    return all(type(t).__name__ in ("Tensor", "Parameter") for t in model.state_dict().values())


def has_torchao(model: nn.Module) -> bool:
    return any(type(t).__module__.startswith("torchao") for t in model.state_dict().values())


def has_masks(model: nn.Module) -> bool:
    return any(hasattr(m, "weight_mask") for m in model.modules())


# ------------------------------------------------------------------ state dict
def _state_dict_cannot(model: nn.Module, path: Path) -> str | None:
    if path.suffix.lower() == ".safetensors" and not is_plain(model):
        return f"{path.name}: .safetensors cannot hold quantized tensors; save as .pt"
    return None


def _state_dict_writer(model: nn.Module, path: Path, example: tuple[tuple, dict]) -> Writer:
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save

        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        return lambda fh: fh.write(save(state))
    return lambda fh: torch.save(model.state_dict(), fh)


# ---------------------------------------------------------------------- pickle
def _pickle_cannot(model: nn.Module, path: Path) -> str | None:
    if has_torchao(model):
        return (
            f"{path.name}: torchao's int8 tensors cannot be pickled as a whole model; "
            "save as state_dict (with its sidecar) or exported"
        )
    return None


def _pickle_writer(model: nn.Module, path: Path, example: tuple[tuple, dict]) -> Writer:
    import torch

    return lambda fh: torch.save(model, fh)


# ----------------------------------------------------------------- TorchScript
def _torchscript_cannot(model: nn.Module, path: Path) -> str | None:
    if has_torchao(model):
        # torch.jit.trace aborts the whole process on torchao's tensor subclasses.
        return (
            f"{path.name}: TorchScript cannot hold torchao's int8 tensors; save as "
            "state_dict or exported, or quantize with backend: legacy"
        )
    return None


def _quiet_call(func: Callable[..., Any], *args: Any) -> Any:
    with compat.quiet():
        return func(*args)


def _torchscript_writer(model: nn.Module, path: Path, example: tuple[tuple, dict]) -> Writer:
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        return lambda fh: _quiet_call(torch.jit.save, model, fh)
    args, kwargs = example
    try:
        with compat.quiet(), torch.inference_mode(False), torch.no_grad():
            scripted = torch.jit.trace(model, args, example_kwarg_inputs=kwargs or None)
    except Exception as exc:
        raise UnsupportedError(
            f"{path.name}: this model cannot be saved as TorchScript ({first_line(exc, 160)})"
        ) from None
    return lambda fh: _quiet_call(torch.jit.save, scripted, fh)


# ------------------------------------------------------------------- exported
def _exported_cannot(model: nn.Module, path: Path) -> str | None:
    if has_masks(model):
        return (
            f"{path.name}: torch.export cannot hold pruning masks; use permanent: true "
            "in the recipe, or save as state_dict"
        )
    return None


def batch_dynamic(model: nn.Module, args: tuple, kwargs: dict) -> Any:
    """dynamic_shapes that let an exported program take any batch size."""
    import torch

    auto = torch.export.Dim.AUTO

    def spec(value: Any) -> Any:
        return {0: auto} if isinstance(value, torch.Tensor) and value.dim() > 0 else None

    if not kwargs:
        return tuple(spec(a) for a in args)
    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    return {name: spec(value) for name, value in bound.arguments.items()}


def _exported_writer(model: nn.Module, path: Path, example: tuple[tuple, dict]) -> Writer:
    import torch

    args, kwargs = example
    try:
        with compat.quiet():
            program = torch.export.export(
                model, args, kwargs or None, dynamic_shapes=batch_dynamic(model, args, kwargs)
            )
    except Exception as exc:
        raise UnsupportedError(
            f"{path.name}: this model cannot be exported with torch.export ({first_line(exc, 160)})"
        ) from None
    return lambda fh: torch.export.save(program, fh)


SAVE_FORMATS: Registry[SaveFormat] = Registry(
    "save format",
    [
        SaveFormat(
            "state_dict",
            "State dict",
            "The weights only (torch.save or .safetensors); reloading needs the architecture",
            ".pt",
            "*.pt *.pth *.safetensors",
            _state_dict_cannot,
            _state_dict_writer,
            needs_arch=True,
        ),
        SaveFormat(
            "pickle",
            "Pickled model",
            "The whole nn.Module pickled; reloading runs code and needs its classes",
            ".pt",
            "*.pt *.pth",
            _pickle_cannot,
            _pickle_writer,
        ),
        SaveFormat(
            "torchscript",
            "TorchScript archive",
            "A traced TorchScript program; loads with no Python model code",
            ".pt",
            "*.pt *.ts",
            _torchscript_cannot,
            _torchscript_writer,
        ),
        SaveFormat(
            "exported",
            "Exported program",
            "A torch.export program (.pt2), any batch size; loads with no Python model code",
            ".pt2",
            "*.pt2",
            _exported_cannot,
            _exported_writer,
        ),
    ],
)


def default_format(source_format: str) -> str:
    """The input's own kind (state_dict for the demo and for state dicts)."""
    if source_format in SAVE_FORMATS:
        return source_format
    return "state_dict"

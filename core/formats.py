"""Save formats: each declared once, with what it can hold and how it is written.

A format entry has the name ``--format`` takes, a label and a one-line explanation for the save
dialog, the file suffix and dialog filter, and three checks and actions:

- ``refuses(recipe, path)``: why a compression with this recipe could not be saved in this
  format, asked before any work starts (the command line refuses a forced format then; the
  default format is the first that does not refuse);
- ``cannot_hold(saving)``: why this very result cannot be held (the save dialog greys the
  format with this reason);
- ``write(saving)``: writes the file atomically (a temporary file or folder beside the target,
  renamed into place) and returns notes; ``core.saving`` then reloads and checks it.

torch, onnx and onnxruntime are imported only when a format is used, so that listing the
formats (``secateur --help``) loads none of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core import compat
from core.atomic import atomic_file
from core.errors import Cancelled, UnsupportedError, first_line
from core.registry import Registry

if TYPE_CHECKING:
    from torch import nn

Writer = Callable[[IO[bytes]], None]


@dataclass(frozen=True)
class Saving:
    """One save: the model, where it goes, the example it is traced and checked on, what
    rebuilds it (the sidecar: quantized layers' rules, removed channels' shapes) and, when
    ONNX Runtime quantizes at export (``backend: onnxruntime``), the granularity."""

    model: nn.Module
    path: Path
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    sidecar: dict[str, Any] | None = None
    export_int8: str | None = None
    should_stop: Callable[[], bool] = lambda: False
    # called with the written temporary file just before it replaces the target (the
    # sidecar that names its digest is published first)
    before_publish: Callable[[IO[bytes]], None] | None = None


@dataclass(frozen=True)
class RecipeView:
    """What a format needs to know of a recipe before any work: each quantize rule's scheme,
    backend and candidates, and whether every pruning rule folds its masks."""

    quantize: Sequence[tuple[str, str, Sequence[str] | None]] = ()
    permanent: bool = True


@dataclass(frozen=True)
class SaveFormat:
    """One file format the compressed model can be saved in."""

    name: str
    label: str
    tooltip: str
    suffix: str
    patterns: str  # the file dialog's filter patterns, e.g. "*.pt *.pth"
    refuses: Callable[[RecipeView, Path], str | None]
    cannot_hold: Callable[[Saving], str | None]
    write: Callable[[Saving], list[str]]
    needs_arch: bool = False  # reloading needs the architecture (and the sidecar)
    traces: bool = False  # writing needs an example input (the graph is traced)

    @property
    def dialog_filter(self) -> str:
        return f"{self.label} ({self.patterns})"


# --------------------------------------------------------------------------- helpers
def is_plain(model: nn.Module) -> bool:
    """Every tensor is a plain float/int tensor (no quantized or subclass tensors)."""
    return all(type(t).__name__ in ("Tensor", "Parameter") for t in model.state_dict().values())


def has_torchao(model: nn.Module) -> bool:
    return any(type(t).__module__.startswith("torchao") for t in model.state_dict().values())


def has_masks(model: nn.Module) -> bool:
    return any(hasattr(m, "weight_mask") for m in model.modules())


def has_legacy(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def _streamed(prepare: Callable[[Saving], Writer]) -> Callable[[Saving], list[str]]:
    """A format written as one stream: prepared first (traced, exported...), then written
    through ``core.atomic`` (cancel before the rename leaves the target untouched)."""

    def write(s: Saving) -> list[str]:
        writer = prepare(s)
        if s.should_stop():
            raise Cancelled()
        with atomic_file(s.path) as fh:
            writer(fh)
            if s.should_stop():
                raise Cancelled()  # the temporary file is removed; the target is untouched
            if s.before_publish is not None:
                s.before_publish(fh)
        return []

    return write


def _torchao_in(view: RecipeView) -> bool:
    """Whether the recipe may put torchao tensors in the result (a scheme: auto plan may)."""
    for scheme, backend, candidates in view.quantize:
        if scheme == "auto":
            if any(":torchao" in c for c in (candidates or ("int8_dynamic:torchao",))):
                return True
        elif scheme.startswith("int8") and backend == "torchao":
            return True
    return False


def _ort_in(view: RecipeView) -> bool:
    return any(backend == "onnxruntime" for _, backend, _ in view.quantize)


def _export_only(name: str) -> str:
    return (
        f"quantize.backend: onnxruntime quantizes while exporting to ONNX, so the result can "
        f"only be saved with --format onnx, not {name}"
    )


# ------------------------------------------------------------------ state dict
def _state_dict_refuses(view: RecipeView, path: Path) -> str | None:
    if _ort_in(view):
        return _export_only("state_dict")
    if path.suffix.lower() == ".safetensors" and any(s != "float" for s, _, _ in view.quantize):
        return f"{path.name}: .safetensors cannot hold quantized tensors; save as .pt"
    return None


def _state_dict_cannot(s: Saving) -> str | None:
    if s.export_int8 is not None:
        return _export_only("state_dict")
    if s.path.suffix.lower() == ".safetensors" and not is_plain(s.model):
        return f"{s.path.name}: .safetensors cannot hold quantized tensors; save as .pt"
    return None


def _state_dict_writer(s: Saving) -> Writer:
    import torch

    if s.path.suffix.lower() == ".safetensors":
        from safetensors.torch import save

        state = {k: v.contiguous() for k, v in s.model.state_dict().items()}
        return lambda fh: fh.write(save(state))
    return lambda fh: torch.save(s.model.state_dict(), fh)


# ---------------------------------------------------------------------- pickle
TORCHAO_PICKLE = (
    "torchao's int8 tensors cannot be pickled as a whole model; save as state_dict "
    "(with its sidecar), compressed or exported"
)


def _pickle_refuses(view: RecipeView, path: Path) -> str | None:
    if _ort_in(view):
        return _export_only("pickle")
    return f"{path.name}: {TORCHAO_PICKLE}" if _torchao_in(view) else None


def _pickle_cannot(s: Saving) -> str | None:
    if s.export_int8 is not None:
        return _export_only("pickle")
    return f"{s.path.name}: {TORCHAO_PICKLE}" if has_torchao(s.model) else None


def _pickle_writer(s: Saving) -> Writer:
    import torch

    return lambda fh: torch.save(s.model, fh)


# ----------------------------------------------------------------- TorchScript
TORCHAO_SCRIPT = (
    "TorchScript cannot hold torchao's int8 tensors; save as state_dict, compressed or "
    "exported, or quantize with backend: legacy"
)


def _torchscript_refuses(view: RecipeView, path: Path) -> str | None:
    if _ort_in(view):
        return _export_only("torchscript")
    return f"{path.name}: {TORCHAO_SCRIPT}" if _torchao_in(view) else None


def _torchscript_cannot(s: Saving) -> str | None:
    if s.export_int8 is not None:
        return _export_only("torchscript")
    # torch.jit.trace aborts the whole process on torchao's tensor subclasses.
    return f"{s.path.name}: {TORCHAO_SCRIPT}" if has_torchao(s.model) else None


def _quiet_call(func: Callable[..., Any], *args: Any) -> Any:
    with compat.quiet():
        return func(*args)


def _torchscript_writer(s: Saving) -> Writer:
    import torch

    if isinstance(s.model, torch.jit.ScriptModule):
        return lambda fh: _quiet_call(torch.jit.save, s.model, fh)
    try:
        with compat.quiet(), torch.inference_mode(False), torch.no_grad():
            scripted = torch.jit.trace(s.model, s.args, example_kwarg_inputs=s.kwargs or None)
    except Exception as exc:
        raise UnsupportedError(
            f"{s.path.name}: this model cannot be saved as TorchScript ({first_line(exc, 160)})"
        ) from None
    return lambda fh: _quiet_call(torch.jit.save, scripted, fh)


# ------------------------------------------------------------------- exported
MASKS_EXPORT = (
    "torch.export cannot hold pruning masks; use permanent: true in the recipe, or save as "
    "state_dict"
)
LEGACY_EXPORT = (
    "torch.ao's packed int8 weights (backend: legacy) cannot be exported; save as state_dict "
    "or compressed, or quantize with backend: torchao"
)


def _exported_refuses(view: RecipeView, path: Path) -> str | None:
    if _ort_in(view):
        return _export_only("exported")
    if not view.permanent:
        return f"{path.name}: {MASKS_EXPORT}"
    if any(backend == "legacy" for s, backend, _ in view.quantize if s.startswith("int8")):
        return f"{path.name}: {LEGACY_EXPORT}"
    return None


def _exported_cannot(s: Saving) -> str | None:
    if s.export_int8 is not None:
        return _export_only("exported")
    if has_masks(s.model):
        return f"{s.path.name}: {MASKS_EXPORT}"
    if has_legacy(s.model):
        return f"{s.path.name}: {LEGACY_EXPORT}"
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


def _exported_writer(s: Saving) -> Writer:
    import torch

    try:
        with compat.quiet():
            program = torch.export.export(
                s.model,
                s.args,
                s.kwargs or None,
                dynamic_shapes=batch_dynamic(s.model, s.args, s.kwargs),
            )
    except Exception as exc:
        raise UnsupportedError(
            f"{s.path.name}: this model cannot be exported with torch.export "
            f"({first_line(exc, 160)})"
        ) from None
    return lambda fh: torch.export.save(program, fh)


# ------------------------------------------------------------------------ ONNX
def _onnx_refuses(view: RecipeView, path: Path) -> str | None:
    from core.onnx_export import why_not_onnx_recipe

    rules = view.quantize or ((None, None, None),)
    for scheme, backend, _ in rules:
        if scheme == "auto":
            return (
                f"{path.name}: scheme auto plans torch kernels, which ONNX cannot hold; with "
                "--format onnx quantize with backend: onnxruntime (scheme: int8_dynamic)"
            )
        reason = why_not_onnx_recipe(backend, None if scheme == "float" else scheme, view.permanent)
        if reason is not None:
            return f"{path.name}: {reason}"
    return None


def _onnx_cannot(s: Saving) -> str | None:
    from core.onnx_export import why_not_onnx

    reason = why_not_onnx(s.model, int8=s.export_int8 is not None)
    return f"{s.path.name}: {reason}" if reason is not None else None


def _onnx_write(s: Saving) -> list[str]:
    from core.onnx_export import export_onnx

    written = export_onnx(
        s.model,
        s.path,
        s.args,
        s.kwargs,
        int8=s.export_int8 is not None,
        per_channel=s.export_int8 != "per_tensor",
        should_stop=s.should_stop,
    )
    return list(written.notes)


# ------------------------------------------------------------------ compressed
def _compressed_refuses(view: RecipeView, path: Path) -> str | None:
    return _export_only("compressed") if _ort_in(view) else None


def _compressed_cannot(s: Saving) -> str | None:
    if s.export_int8 is not None:
        return _export_only("compressed")
    from core.compressed import why_not_compressed

    reason = why_not_compressed(s.model)
    return f"{s.path.name}: {reason}" if reason is not None else None


def _compressed_writer(s: Saving) -> Writer:
    from core.compressed import write

    return lambda fh: write(s.model, fh, s.sidecar or {})


SAVE_FORMATS: Registry[SaveFormat] = Registry(
    "save format",
    [
        SaveFormat(
            "state_dict",
            "State dict",
            "The weights only (torch.save or .safetensors); reloading needs the architecture",
            ".pt",
            "*.pt *.pth *.safetensors",
            _state_dict_refuses,
            _state_dict_cannot,
            _streamed(_state_dict_writer),
            needs_arch=True,
        ),
        SaveFormat(
            "pickle",
            "Pickled model",
            "The whole nn.Module pickled; reloading runs code and needs its classes",
            ".pt",
            "*.pt *.pth",
            _pickle_refuses,
            _pickle_cannot,
            _streamed(_pickle_writer),
        ),
        SaveFormat(
            "torchscript",
            "TorchScript archive",
            "A traced TorchScript program; loads with no Python model code",
            ".pt",
            "*.pt *.ts",
            _torchscript_refuses,
            _torchscript_cannot,
            _streamed(_torchscript_writer),
            traces=True,
        ),
        SaveFormat(
            "exported",
            "Exported program",
            "A torch.export program (.pt2), any batch size; loads with no Python model code",
            ".pt2",
            "*.pt2",
            _exported_refuses,
            _exported_cannot,
            _streamed(_exported_writer),
            traces=True,
        ),
        SaveFormat(
            "onnx",
            "ONNX",
            "An ONNX graph for ONNX Runtime and other runtimes, any batch size; int8 through "
            "ONNX Runtime with backend: onnxruntime",
            ".onnx",
            "*.onnx",
            _onnx_refuses,
            _onnx_cannot,
            _onnx_write,
            traces=True,
        ),
        SaveFormat(
            "compressed",
            "Compressed weights",
            "The weights with zeros and int8 stored compactly (bitmask, zstd), weights-only; "
            "reloading needs the architecture",
            ".secz",
            "*.secz",
            _compressed_refuses,
            _compressed_cannot,
            _streamed(_compressed_writer),
            needs_arch=True,
        ),
    ],
)


def recipe_view(recipe: Any) -> RecipeView:
    """What the formats need of a ``core.recipe.Recipe`` (read, not imported: the parser
    lists the formats without loading the recipe's types)."""
    return RecipeView(
        quantize=tuple((q.scheme, q.backend, q.candidates) for q in recipe.quantize),
        permanent=all(rule.permanent for rule in recipe.prune),
    )


FALLBACK_FORMATS = ("state_dict", "compressed", "exported")
"""The formats tried, in order, when the input's own kind cannot hold the result."""


def format_for_suffix(suffix: str) -> str | None:
    """The format a file suffix forces: the one format whose dialog patterns list it
    ('.onnx' -> onnx, '.pt2' -> exported); None for a suffix several share (.pt) or none."""
    pattern = f"*{suffix.lower()}"
    owners = [f.name for f in SAVE_FORMATS if pattern in f.patterns.split()]
    return owners[0] if len(owners) == 1 else None


def default_format(
    source_format: str, view: RecipeView | None = None, path: Path | None = None
) -> str:
    """The input's own kind when it can hold the result (state_dict for the demo), else the
    first of state_dict, compressed, exported that can."""
    first = source_format if source_format in SAVE_FORMATS else "state_dict"
    if view is None:
        return first
    target = path or Path("out" + SAVE_FORMATS[first].suffix)
    for name in (first, *FALLBACK_FORMATS):
        if SAVE_FORMATS[name].refuses(view, target) is None:
            return name
    return first

"""The layer inventory: every module of a model as plain data the window and reports share.

Selection is by module name (glob patterns over ``named_modules()`` names) and by type
(class names matched along the class hierarchy, so a subclass of nn.Conv2d is a Conv2d).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

# Module types whose ``weight`` torch.nn.utils.prune can prune meaningfully.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.Embedding,
)
# Module types the int8 schemes handle (torchao's and torch.ao's dynamic quantization).
INT8_TYPES: tuple[type[nn.Module], ...] = (nn.Linear,)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One module of the model. ``parameters`` counts its own parameters, not its children's."""

    name: str
    type: str
    parent: str | None
    depth: int
    parameters: int
    weight_shape: tuple[int, ...] | None
    dtype: str | None
    sparsity: float | None
    prunable: bool
    quantizable: bool
    why_not: str | None
    quantization: str | None
    has_children: bool

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1] if self.name else "(model)"


def type_names(module: nn.Module) -> set[str]:
    """Every class name along the module's class hierarchy (isinstance by name)."""
    return {cls.__name__ for cls in type(module).__mro__}


def layer_weight(module: nn.Module) -> torch.Tensor | None:
    """The layer's weight as a plain tensor: integers for quantized layers, else as stored."""
    weight = getattr(module, "weight", None)
    if callable(weight) and not isinstance(weight, torch.Tensor):
        # torch.ao dynamic-quantized Linear exposes weight() returning a quantized tensor.
        try:
            weight = weight()
        except Exception:
            return None
    if not isinstance(weight, torch.Tensor):
        return None
    if weight.is_quantized:
        return weight.int_repr()
    qdata = getattr(weight, "qdata", None)  # torchao's Int8Tensor
    if isinstance(qdata, torch.Tensor):
        return qdata
    if type(weight) not in (torch.Tensor, nn.Parameter):
        return None
    return weight.detach()


def quantization_of(module: nn.Module) -> str | None:
    """A short description of how the module is quantized, or None for plain float."""
    weight = getattr(module, "weight", None)
    if callable(weight) and not isinstance(weight, torch.Tensor):
        return "int8_dynamic (legacy)"
    if isinstance(weight, torch.Tensor):
        kind = type(weight).__name__
        if kind == "Int8Tensor":
            act = getattr(weight, "act_quant_kwargs", None)
            return "int8_dynamic (torchao)" if act is not None else "int8_weight_only (torchao)"
        if kind not in ("Tensor", "Parameter"):
            return kind
        if weight.dtype == torch.float16:
            return "fp16"
        if weight.dtype == torch.bfloat16:
            return "bf16"
    return None


def sparsity(tensor: torch.Tensor | None) -> float | None:
    if tensor is None or tensor.numel() == 0:
        return None
    return 1.0 - torch.count_nonzero(tensor).item() / tensor.numel()


def own_parameter_count(module: nn.Module) -> int:
    count = sum(p.numel() for p in module.parameters(recurse=False))
    if count == 0:
        weight = layer_weight(module)
        if weight is not None and quantization_of(module) == "int8_dynamic (legacy)":
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            count = weight.numel() + (bias.numel() if bias is not None else 0)
    return count


def _why_not_prunable(module: nn.Module) -> str | None:
    if quantization_of(module) is not None:
        return "already quantized: prune before quantizing"
    if not isinstance(module, PRUNABLE_TYPES):
        if any(True for _ in module.parameters(recurse=False)):
            return f"{type(module).__name__} is not a prunable type (Linear, Conv, Embedding)"
        return "has no weights of its own"
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        return "has no floating-point weight"
    return None


def inventory(model: nn.Module, measure: bool = True) -> list[LayerInfo]:
    """Every module in ``named_modules()`` order, with its own parameters and state.

    ``measure=False`` leaves sparsity out (None), which skips a pass over every weight."""
    layers: list[LayerInfo] = []
    children: set[str] = set()
    rows = list(model.named_modules())
    for name, _ in rows:
        if name:
            children.add(name.rpartition(".")[0])
    for name, module in rows:
        weight = layer_weight(module)
        why = _why_not_prunable(module)
        quant = quantization_of(module)
        raw = getattr(module, "weight", None)
        layers.append(
            LayerInfo(
                name=name,
                type=type(module).__name__,
                parent=None if not name else name.rpartition(".")[0],
                depth=0 if not name else name.count(".") + 1,
                parameters=own_parameter_count(module),
                weight_shape=tuple(weight.shape) if weight is not None else None,
                dtype=str(raw.dtype).replace("torch.", "")
                if isinstance(raw, torch.Tensor)
                else ("qint8" if quant else None),
                sparsity=sparsity(weight) if measure else None,
                prunable=why is None,
                quantizable=isinstance(module, nn.Linear | nn.modules.conv._ConvNd)
                and quant is None,
                why_not=why,
                quantization=quant,
                has_children=name in children,
            )
        )
    return layers


def escape_name(name: str) -> str:
    """A module name as a glob pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def escape_names(names: Iterable[str]) -> list[str]:
    return [escape_name(n) for n in names]


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def select(
    model: nn.Module,
    layers: Sequence[str],
    types: Sequence[str] | None,
    predicate: type[nn.Module] | tuple[type[nn.Module], ...] | None = None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Names of modules matching the name patterns and the type names.

    Returns the matching names (in model order) and the (field, value) pairs, field being
    "layers" or "types", of each pattern or type name that matched no module, so the caller
    can reject it with its own wording. Only modules passing ``predicate`` (when given)
    count; the root module (name "") matches only the patterns "*" and "".
    """
    hits: dict[tuple[str, str], int] = {("layers", p): 0 for p in layers}
    if types:
        hits.update({("types", t): 0 for t in types})
    wanted_types = set(types) if types else None
    pattern_res = [(p, _compile([p])) for p in layers]
    out: list[str] = []
    for name, module in model.named_modules():
        if predicate is not None and not isinstance(module, predicate):
            continue
        names = type_names(module) if wanted_types else set()
        type_hit = wanted_types is None or bool(names & wanted_types)
        name_hits = [p for p, rx in pattern_res if rx.fullmatch(name)]
        if type_hit:
            for p in name_hits:
                hits[("layers", p)] += 1
        if wanted_types and name_hits:
            for t in wanted_types & names:
                hits[("types", t)] += 1
        if name_hits and type_hit:
            out.append(name)
    return out, [key for key, count in hits.items() if count == 0]

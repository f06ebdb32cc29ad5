"""Quantization of selected layers, one layer at a time, with the schemes of ``core.schemes``.

A selected layer a scheme cannot handle is left alone and reported with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from core import compat
from core.errors import RecipeError, UnsupportedError
from core.inventory import quantization_of, select
from core.recipe import Quantize
from core.schemes import SCHEMES


@dataclass
class QuantPlan:
    """Layers to quantize and selected layers left alone, with why."""

    layers: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def describe(q: Quantize) -> str:
    """How the window and reports name a scheme: 'int8_dynamic (torchao, per_channel)'."""
    if SCHEMES[q.scheme].is_cast:
        return q.scheme
    return f"{q.scheme} ({q.backend}, {q.granularity})"


def plan_quantization(model: nn.Module, q: Quantize, source: str) -> QuantPlan:
    names, misses = select(model, q.layers, q.types)
    for field_name, value in misses:
        raise RecipeError(f"{source}: quantize.{field_name}: {value!r} matches no layer")
    plan = QuantPlan()
    modules = dict(model.named_modules())
    for name in names:
        reason = cannot_quantize(modules[name], q)
        if reason is None:
            plan.layers.append(name)
        else:
            plan.skipped[name] = reason
    return plan


def cannot_quantize(module: nn.Module, q: Quantize) -> str | None:
    """Why ``module`` cannot take ``q`` (already quantized, wrong type...), or None."""
    if quantization_of(module) is not None:
        return f"already quantized ({quantization_of(module)})"
    return SCHEMES[q.scheme].cannot(module, q)


def check_machine(q: Quantize) -> None:
    """Raise UnsupportedError when this machine's torch cannot run the scheme."""
    if SCHEMES[q.scheme].is_cast:
        return
    if q.backend == "legacy":
        engines = torch.backends.quantized.supported_engines
        usable = [e for e in engines if e in ("x86", "fbgemm", "qnnpack", "onednn")]
        if not usable:
            raise UnsupportedError(
                "quantize.backend: 'legacy' needs a quantized engine and this torch build "
                f"has none ({engines}); use backend: torchao"
            )
    elif q.backend == "torchao":
        try:
            compat.torchao()
        except Exception as exc:  # ImportError, or a broken optional kernel
            raise UnsupportedError(
                f"quantize.scheme: {q.scheme} needs torchao, which failed to import ({exc})"
            ) from None


def quantize_layers(model: nn.Module, q: Quantize, plan: QuantPlan) -> Iterator[str]:
    """Quantize the planned layers in place, one at a time, yielding each layer's name."""
    modules = dict(model.named_modules())
    for name in plan.layers:
        apply_to_layer(model, modules[name], name, q)
        yield name


def apply_to_layer(model: nn.Module, module: nn.Module, name: str, q: Quantize) -> None:
    """Quantize one layer of ``model`` in place (the legacy path swaps the module)."""
    SCHEMES[q.scheme].apply(model, module, name, q)

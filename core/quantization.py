"""Quantization of selected layers, one layer at a time, with the schemes of ``core.schemes``.

A selected layer a scheme cannot handle is left alone and reported with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core import compat
from core.errors import RecipeError, UnsupportedError
from core.inventory import PRUNABLE_TYPES, quantization_of, select
from core.recipe import Quantize
from core.schemes import EXPORT_BACKEND, SCHEMES


@dataclass
class QuantPlan:
    """The rule each layer to quantize gets (in model order), and the selected layers left
    alone with why."""

    layers: dict[str, Quantize] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    at_export: dict[str, Quantize] = field(default_factory=dict)  # ONNX Runtime quantizes these

    def defer_export(self) -> None:
        """Move the layers ONNX Runtime quantizes (at export) out of the torch steps."""
        for name, q in list(self.layers.items()):
            if q.backend == EXPORT_BACKEND and not SCHEMES[q.scheme].is_cast:
                self.at_export[name] = self.layers.pop(name)

    @property
    def export_int8(self) -> str | None:
        """The granularity ONNX Runtime's int8 uses at export, or None."""
        return next((q.granularity for q in self.at_export.values()), None)

    def sidecar(self) -> dict[str, Any] | None:
        """What rebuilds the quantized modules of a saved state dict (``OUT.secateur.json``):
        each quantized layer's scheme, backend and granularity."""
        if not self.layers:
            return None
        fields = {"scheme", "backend", "granularity"}
        return {
            "secateur_sidecar": 1,
            "layers": {name: q.model_dump(include=fields) for name, q in self.layers.items()},
        }

    def rules(self) -> list[Quantize]:
        """The distinct rules in use, in first-use order (to check the machine once each)."""
        seen: dict[str, Quantize] = {}
        for q in self.layers.values():
            seen.setdefault(describe(q), q)
        return list(seen.values())


def describe(q: Quantize) -> str:
    """How the window and reports name a scheme: 'int8_dynamic (torchao, per_channel)'."""
    if q.scheme not in SCHEMES or SCHEMES[q.scheme].is_cast:
        return q.scheme
    return f"{q.scheme} ({q.backend}, {q.granularity})"


def select_rules(
    model: nn.Module, rules: list[Quantize], source: str
) -> dict[str, Quantize | None]:
    """Which rule selects each layer (None: a ``float`` rule keeps it), later rules winning;
    a pattern that matches nothing is an error."""
    chosen: dict[str, Quantize | None] = {}
    for index, rule in enumerate(rules):
        where = "quantize" if len(rules) == 1 else f"quantize[{index}]"
        names, misses = select(
            model, rule.layers, rule.types, predicate=None if rule.types else PRUNABLE_TYPES
        )
        for field_name, value in misses:
            raise RecipeError(f"{source}: {where}.{field_name}: {value!r} matches no layer")
        for name in names:
            chosen[name] = None if rule.keeps_float else rule
    return chosen


def plan_quantization(model: nn.Module, rules: list[Quantize], source: str) -> QuantPlan:
    """One rule per layer to quantize, in model order; layers a scheme cannot take are
    skipped with the reason."""
    chosen = select_rules(model, rules, source)
    plan = QuantPlan()
    for name, module in model.named_modules():
        q = chosen.get(name)
        if q is None:
            continue
        reason = cannot_quantize(module, q)
        if reason is None:
            plan.layers[name] = q
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
    elif q.backend == EXPORT_BACKEND:
        try:
            import onnxruntime  # noqa: F401  (the check: is it installed and does it load?)
        except Exception as exc:
            raise UnsupportedError(
                f"quantize.backend: onnxruntime needs the onnxruntime package, which failed to "
                f"import ({exc})"
            ) from None
    elif q.backend == "torchao":
        try:
            compat.torchao()
        except Exception as exc:  # ImportError, or a broken optional kernel
            raise UnsupportedError(
                f"quantize.scheme: {q.scheme} needs torchao, which failed to import ({exc})"
            ) from None


def quantize_layers(model: nn.Module, plan: QuantPlan) -> Iterator[str]:
    """Quantize the planned layers in place, one at a time, yielding each layer's name."""
    modules = dict(model.named_modules())
    for name, q in plan.layers.items():
        apply_to_layer(model, modules[name], name, q)
        yield name


def apply_to_layer(model: nn.Module, module: nn.Module, name: str, q: Quantize) -> None:
    """Quantize one layer of ``model`` in place (the legacy path swaps the module)."""
    SCHEMES[q.scheme].apply(model, module, name, q)

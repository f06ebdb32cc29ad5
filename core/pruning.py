"""Pruning with torch.nn.utils.prune: per-layer rules, global L1, permanent or masked.

Rules apply in order; a later rule that selects a layer replaces what an earlier rule said
about it, which is how per-layer amounts are written. ``global_unstructured`` rules prune all
their layers together against one L1 threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from core.errors import RecipeError
from core.inventory import PRUNABLE_TYPES, quantization_of, select
from core.methods import PRUNE_METHODS
from core.recipe import PruneRule


@dataclass(frozen=True)
class LayerPrune:
    """What pruning one layer gets: the winning rule and its index in the recipe."""

    name: str
    rule_index: int
    rule: PruneRule


def plan_pruning(model: nn.Module, rules: list[PruneRule], source: str) -> dict[str, LayerPrune]:
    """Resolve the rules to one plan per layer; a pattern that matches nothing is an error."""
    plan: dict[str, LayerPrune] = {}
    for index, rule in enumerate(rules):
        names, misses = select(model, rule.layers, rule.types, predicate=PRUNABLE_TYPES)
        for field, value in misses:
            what = "no prunable layer"
            if field == "layers" and rule.types:
                what = f"no prunable layer of type {', '.join(rule.types)}"
            raise RecipeError(f"{source}: prune[{index}].{field}: {value!r} matches {what}")
        modules = dict(model.named_modules())
        for name in names:
            quantized = quantization_of(modules[name])
            if quantized is not None:
                raise RecipeError(
                    f"{source}: prune[{index}]: {name} is already quantized ({quantized}); "
                    "prune the float model, then quantize"
                )
            _check_amount(modules[name], rule, f"{source}: prune[{index}]", name)
            plan[name] = LayerPrune(name, index, rule)
    return plan


def _check_amount(module: nn.Module, rule: PruneRule, where: str, name: str) -> None:
    if not isinstance(rule.amount, int):
        return
    weight = module.weight
    method = PRUNE_METHODS[rule.method]
    if method.removes:
        return  # core.structural checks a channel count against the layer's channels
    if method.structured:
        if not -weight.dim() <= rule.dim < weight.dim():
            raise RecipeError(
                f"{where}.dim: {rule.dim} is out of range for {name} (weight has "
                f"{weight.dim()} dimensions)"
            )
        total = weight.shape[rule.dim]
    else:
        total = weight.numel()
    if rule.amount > total:
        raise RecipeError(
            f"{where}.amount: {rule.amount} is more than the {total} {method.unit} of {name}"
        )


class Pruner:
    """Applies a pruning plan one layer at a time (global groups are decided together when
    their first layer comes up, then installed layer by layer).

    With ``hold_masks`` the masks are installed as torch.nn.utils.prune reparametrisations
    (weight_orig + weight_mask, for fine-tuning or saving with masks); without, each pruned
    weight is replaced by a new zeroed tensor and nothing else is kept. Weights are never
    changed in place, so a model whose tensors are shared with another is safe to prune.
    Rules with ``permanent: false`` always hold their masks.
    """

    def __init__(self, model: nn.Module, plan: dict[str, LayerPrune], hold_masks: bool) -> None:
        self.model = model
        self.plan = plan
        self.hold_masks = hold_masks
        self._pending: dict[str, torch.Tensor] = {}

    def apply(self, name: str, force_fold: bool = False) -> None:
        item = self.plan[name]
        rule = item.rule
        hold = (self.hold_masks or not rule.permanent) and not force_fold
        module = self.model.get_submodule(name)
        method = PRUNE_METHODS[rule.method]
        if method.scope == "layer":
            prune_layer(module, rule, hold)
            return
        if name not in self._pending:
            group = [n for n, p in self.plan.items() if p.rule_index == item.rule_index]
            weights = [self.model.get_submodule(n).weight for n in group]
            self._pending.update(zip(group, method.keep(weights, rule)))
        install_masks([module], [self._pending.pop(name)], hold)


def prune_layers(
    model: nn.Module, plan: dict[str, LayerPrune], hold_masks: bool = True
) -> Iterator[str]:
    """Apply the whole plan, yielding each layer's name when it is done (see Pruner)."""
    pruner = Pruner(model, plan, hold_masks)
    for name in plan:
        pruner.apply(name)
        yield name


def prune_layer(module: nn.Module, rule: PruneRule, hold: bool = True) -> None:
    """Prune one layer with its rule's (layer-scoped) method: masks held, or the weight
    replaced by a zeroed copy."""
    (keep,) = PRUNE_METHODS[rule.method].keep([module.weight], rule)
    install_masks([module], [keep], hold)


def install_masks(modules: list[nn.Module], keeps: list[torch.Tensor], hold: bool) -> None:
    """Apply keep-masks: as torch.nn.utils.prune reparametrisations (``hold``), or by
    replacing each weight with a zeroed copy (never changing a tensor in place)."""
    for module, keep in zip(modules, keeps):
        weight = module.weight
        if hold:
            # prune.custom_from_mask: weight_orig/weight_mask and prune.remove behave exactly
            # as for torch's own methods.
            prune.custom_from_mask(module, "weight", keep.to(weight.dtype))
        else:
            zeroed = weight.detach().masked_fill(~keep, 0)
            module.weight = nn.Parameter(zeroed, requires_grad=weight.requires_grad)


def make_permanent(model: nn.Module, names: list[str] | None = None) -> None:
    """Fold masks into plain weights (no weight_orig/weight_mask left) for the named layers."""
    for name, module in model.named_modules():
        if names is not None and name not in names:
            continue
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")

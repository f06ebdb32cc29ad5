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
from core.inventory import PRUNABLE_TYPES, select
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
            _check_amount(modules[name], rule, f"{source}: prune[{index}]", name)
            plan[name] = LayerPrune(name, index, rule)
    return plan


def _check_amount(module: nn.Module, rule: PruneRule, where: str, name: str) -> None:
    if not isinstance(rule.amount, int):
        return
    weight = module.weight
    if rule.method in ("ln_structured", "random_structured"):
        if not -weight.dim() <= rule.dim < weight.dim():
            raise RecipeError(
                f"{where}.dim: {rule.dim} is out of range for {name} (weight has "
                f"{weight.dim()} dimensions)"
            )
        total = weight.shape[rule.dim]
        unit = "channels"
    else:
        total = weight.numel()
        unit = "elements"
    if rule.amount > total:
        raise RecipeError(
            f"{where}.amount: {rule.amount} is more than the {total} {unit} of {name}"
        )


_CHUNK = 1 << 18


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
        if rule.method != "global_unstructured":
            _prune_one(module, rule, hold)
            return
        if name not in self._pending:
            group = [n for n, p in self.plan.items() if p.rule_index == item.rule_index]
            keeps = _l1_keep([self.model.get_submodule(n) for n in group], rule.amount)
            self._pending.update(zip(group, keeps))
        _install([module], [self._pending.pop(name)], hold)


def prune_layers(
    model: nn.Module, plan: dict[str, LayerPrune], hold_masks: bool = True
) -> Iterator[str]:
    """Apply the whole plan, yielding each layer's name when it is done (see Pruner)."""
    pruner = Pruner(model, plan, hold_masks)
    for name in plan:
        pruner.apply(name)
        yield name


def _prune_one(module: nn.Module, rule: PruneRule, hold: bool = True) -> None:
    """Prune one layer with its rule's method (masks held, or weights zeroed in place)."""
    if rule.method == "l1_unstructured":
        _install([module], _l1_keep([module], rule.amount), hold)
        return
    if rule.method == "random_unstructured":
        method: prune.BasePruningMethod = prune.RandomUnstructured(rule.amount)
    elif rule.method == "ln_structured":
        method = prune.LnStructured(rule.amount, n=rule.norm(), dim=rule.dim)
    elif rule.method == "random_structured":
        method = prune.RandomStructured(rule.amount, dim=rule.dim)
    else:  # pragma: no cover - the recipe's Literal type rules this out
        raise ValueError(f"unknown pruning method {rule.method!r}")
    weight = module.weight.detach()
    mask = method.compute_mask(weight, default_mask=torch.ones_like(weight))
    _install([module], [mask.bool()], hold)


def _l1_keep(modules: list[nn.Module], amount: int | float) -> list[torch.Tensor]:
    """Boolean keep-masks that drop the ``amount`` smallest-magnitude weights: per layer for
    one module, against one threshold across all of them for several (global L1).

    The same masks as torch's L1Unstructured / global_unstructured, which select with
    torch.topk. Here the threshold comes from numpy's in-place partition of one copy of the
    magnitudes (no index tensor, no second copy: topk and kthvalue each allocate two more
    layer-sized buffers), and the masks are built in chunks. Among weights of exactly equal
    magnitude at the threshold, which ones go is arbitrary in torch; here the first ones.
    """
    weights = [m.weight.detach() for m in modules]
    total = sum(w.numel() for w in weights)
    count = prune._compute_nparams_toprune(amount, total)
    prune._validate_pruning_amount(count, total)
    if count == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    flat = torch.cat([w.reshape(-1).abs().float() for w in weights])
    values = flat.numpy()
    values.partition(count - 1)  # in place: the count-th smallest lands at count - 1
    threshold = float(values[count - 1])
    del flat, values
    keeps = []
    dropped = 0
    for weight in weights:
        src = weight.reshape(-1)
        keep = torch.empty(src.numel(), dtype=torch.bool)
        for start in range(0, src.numel(), _CHUNK):
            part = src[start : start + _CHUNK]
            torch.ge(part.abs().float(), threshold, out=keep[start : start + _CHUNK])
        dropped += src.numel() - int(torch.count_nonzero(keep))
        keeps.append(keep)
    missing = count - dropped
    for weight, keep in zip(weights, keeps):
        if missing <= 0:
            break
        ties = torch.nonzero(weight.reshape(-1).abs().float() == threshold).flatten()[:missing]
        keep[ties] = False
        missing -= ties.numel()
    return [keep.view_as(w) for keep, w in zip(keeps, weights)]


def _install(modules: list[nn.Module], keeps: list[torch.Tensor], hold: bool) -> None:
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

"""Structural pruning: physically remove output channels, neurons and attention heads.

Unstructured pruning writes zeros into dense tensors, so the model keeps its size and speed.
Here the selected layers (the *roots*) lose whole output channels, and every layer coupled
with them follows: BatchNorm/LayerNorm/GroupNorm features, the next layer's inputs, residual
additions, depthwise and grouped convolutions, concatenations, a flatten into a Linear, and
attention heads together with the attributes that describe them. Torch-Pruning's
``DependencyGraph`` finds the coupling and executes the removal; this module decides what to
remove, refuses what Torch-Pruning gets wrong, and proves the result.

    plan = plan_removal(model, {"conv1": 0.5, "fc1": 0.5}, ((x,), {}))   # cheap: a trace
    plan.coupled()                           # every layer that will shrink -> its root
    gen = remove_channels(model_copy, plan)  # yields GroupRemoved per group, in place
    result = <StopIteration.value>           # RemovalResult: per-layer rows and notes

What Torch-Pruning 1.6.1 gets wrong, and what is done about it (each has a test):

- nn.MultiheadAttention (#196): its inner width is tied to the model width, and Torch-Pruning
  removes the model-width channels it is given from the inner q/k/v dimensions too, whatever
  head they fall in; heads then mix ("pseudo-random" pruning), and the softmax scale changes
  with ``head_dim``. Here the width is removed evenly from every head (the same positions in
  each) and the q projection is rescaled by sqrt(new/old head_dim), so the kept positions
  compute exactly what they did. Its head count stays.
- Hand-written attention (#287, #340, #393): Torch-Pruning updates the weights but not the
  block's ``num_heads``. Here whole heads are removed from q, k, v and o, ``num_heads`` (and
  known inner-width attributes) are updated, and ``head_dim`` is unchanged. A block whose
  forward does not follow ``num_heads`` is found by a trial on a copy and skipped.
- Grouped convolutions (#328): Torch-Pruning removes channels unevenly across groups (a crash,
  or a wrong mapping of channels to groups). Here channels are removed evenly from each group.
- MetaPruner with ``num_heads`` for nn.MultiheadAttention silently skips the model-width group;
  MetaPruner is not used here at all.

Every removal is checked: before anything is removed, the channels to remove are zeroed (and
LayerNorm/GroupNorm statistics restricted to the kept channels) to give a reference output;
after each group is removed the model must give that same output on the example input. A
model that runs but computes something else is therefore never produced: the removal stops
with an UnsupportedError naming the group.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from core.channel_scores import (
    channel_scores,
    choose,
    mask_item,
    own_parameters,
    restricted_norm,
    run_example,
    set_tensor,
    taylor_gradients,
    unit_scores,
    unit_width,
    weight_shape,
)
from core.coupling import (
    HEAD_COUNT_ATTRS,
    Batches,
    Example,
    Group,
    Live,
    Skip,
    Traced,
    error_line,
    eval_mode,
    heads_attr,
    inspect_root,
    keep_count,
    kind_of,
    out_size,
    own_parameters_trainable,
    plain_float,
    restore_flags,
    root_fn,
    same_outputs,
    trace,
    trainable_copy,
)
from core.errors import Cancelled, DataError, RecipeError, UnsupportedError
from core.methods import CHANNEL_SCOPES, IMPORTANCES

ROOT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.MultiheadAttention,
)


@dataclass(frozen=True)
class RemovalPlan:
    """What ``remove_channels`` will do: the groups, the skipped roots and why, the settings.

    Cheap to compute (one traced forward on the example input), so the window can show the
    coupled layers before a run.
    """

    groups: tuple[Group, ...]
    skipped: Mapping[str, str]
    importance: str
    scope: str
    round_to: int
    example: Example = field(repr=False, compare=False)

    def coupled(self) -> dict[str, str]:
        """Every layer that will shrink (roots included) -> the root of its group."""
        return {name: g.root for g in self.groups for name in g.layers}

    def group_of(self, name: str) -> Group | None:
        """The group ``name`` is a root of, else the group it follows, else None."""
        return next((g for g in self.groups if name in g.roots), None) or next(
            (g for g in self.groups if name in g.layers), None
        )


@dataclass(frozen=True)
class GroupRemoved:
    """Progress: one group's channels are gone and the model was checked."""

    step: int
    total: int
    root: str
    unit: str
    before: int
    after: int
    layers: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"removed {self.before - self.after} of {self.before} {self.unit} of {self.root} "
            f"({len(self.layers)} layers)"
        )


@dataclass(frozen=True)
class LayerChange:
    """One layer's shapes before and after (``shape_*`` is the weight's shape)."""

    name: str
    type: str
    shape_before: tuple[int, ...] | None
    shape_after: tuple[int, ...] | None
    parameters_before: int
    parameters_after: int
    root: str | None = None
    role: str | None = None
    detail: str | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("shape_before", "shape_after"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


@dataclass(frozen=True)
class RemovalResult:
    """Per-layer rows (every layer that changed, and every skipped root) and plain notes."""

    layers: tuple[LayerChange, ...]
    notes: tuple[str, ...]

    def rows(self) -> list[dict[str, Any]]:
        return [layer.to_dict() for layer in self.layers]


def _check_example(example: Any) -> Example:
    if (
        not isinstance(example, tuple)
        or len(example) != 2
        or not isinstance(example[0], tuple)
        or not isinstance(example[1], dict)
    ):
        raise TypeError("remove_channels: example must be (args tuple, kwargs dict)")
    return example


def _check_settings(importance: str, scope: str, round_to: Any) -> None:
    if importance not in IMPORTANCES:
        raise RecipeError(
            f"remove_channels: importance {importance!r} is not one of {', '.join(IMPORTANCES)}"
        )
    if scope not in CHANNEL_SCOPES:
        raise RecipeError(
            f"remove_channels: scope {scope!r} is not one of {', '.join(CHANNEL_SCOPES)}"
        )
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise RecipeError(f"remove_channels: round_to {round_to!r} is not a whole number >= 1")


def _check_amount(amount: Any, where: str, name: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise RecipeError(f"{where}.amount: {amount!r} for {name} is not a number")
    if isinstance(amount, float) and not 0.0 <= amount < 1.0:
        raise RecipeError(f"{where}.amount: {amount} for {name} is not in [0, 1)")
    if isinstance(amount, int) and amount < 0:
        raise RecipeError(f"{where}.amount: {amount} for {name} is negative")


def _refuse_unsupported_model(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedError(
            "remove_channels: a TorchScript model cannot lose channels (its code is compiled); "
            "load its state dict with --arch"
        )
    if isinstance(model, torch.fx.GraphModule):
        raise UnsupportedError(
            "remove_channels: an exported (.pt2) or traced graph cannot lose channels; "
            "load its state dict with --arch"
        )
    for name, module in model.named_modules():
        if any(p.endswith("_orig") for p, _ in module.named_parameters(recurse=False)):
            raise UnsupportedError(
                f"remove_channels: {name or 'the model'} holds pruning masks "
                "(torch.nn.utils.prune); make them permanent before removing channels"
            )


def _analyse(
    model: nn.Module,
    roots: Mapping[str, float | int],
    example: Example,
    round_to: int,
    sources: Mapping[str, str] | None,
) -> tuple[list[Live], dict[str, str], Traced]:
    """Trace ``model`` and turn the roots into checked groups bound to its modules."""
    modules = dict(model.named_modules())
    order = {name: i for i, name in enumerate(modules)}
    sources = sources or {}
    for name, amount in roots.items():
        where = sources.get(name, "remove_channels")
        if name not in modules or not name:
            raise RecipeError(f"{where}: the model has no layer named {name!r}")
        _check_amount(amount, where, name)
    traced = trace(model, example)
    graph = traced.graph
    seen: dict[int, int] = {}
    shared: set[int] = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            seen[id(p)] = seen.get(id(p), 0) + 1
            if seen[id(p)] > 1:
                shared.add(id(p))
    live: list[Live] = []
    owner: dict[nn.Module, Live] = {}
    skip_owner: dict[nn.Module, tuple[str, str]] = {}
    skipped: dict[str, str] = {}
    for name in sorted(roots, key=order.__getitem__):
        module = modules[name]
        amount = roots[name]
        where = sources.get(name, "remove_channels")
        if not isinstance(module, ROOT_TYPES):
            skipped[name] = (
                f"{type(module).__name__} is not a layer whose channels can be removed "
                "(Linear, Conv1d/2d/3d, MultiheadAttention)"
            )
            continue
        if name.endswith(".out_proj") and isinstance(
            modules.get(name.rpartition(".")[0]), nn.MultiheadAttention
        ):
            # nn.MultiheadAttention's output projection: its outputs are the attention's.
            module = modules[name.rpartition(".")[0]]
        if module in owner:
            group = owner[module]
            group.plan = dataclasses.replace(
                group.plan,
                roots=(*group.plan.roots, name),
                coupled=tuple(c for c in group.plan.coupled if c.name != name),
            )
            group.amounts.append(amount)
            continue
        if module in skip_owner:
            first, reason = skip_owner[module]
            skipped[name] = f"coupled with {first}, which is skipped: {reason}"
            continue
        weight = getattr(module, "weight", getattr(module, "in_proj_weight", None))
        if not plain_float(weight):
            skipped[name] = "already quantized: remove channels before quantizing"
            continue
        if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
            skipped[name] = "transposed convolutions are not supported"
            continue
        if module not in graph.module2node:
            skipped[name] = "is not called as a module by the forward on the example input"
            continue
        fn = root_fn(module)
        size = out_size(module)
        items = list(graph.get_pruning_group(module, fn, list(range(size))))
        outs = [
            it.dep.target.module
            for it in items
            if isinstance(it.dep.target.module, nn.Module)
            and graph.is_out_channel_pruning_fn(it.dep.handler)
        ]
        try:
            coupled, block, heads, mhas, notes = inspect_root(
                traced, model, name, module, items, shared
            )
        except Skip as why:
            skipped[name] = str(why)
            for m in outs:
                skip_owner.setdefault(m, (name, str(why)))
            continue
        coupled.sort(key=lambda c: order.get(c.name, len(order)))
        unit: Literal["channels", "heads"] = "heads" if heads is not None else "channels"
        units = heads.heads if heads is not None else size
        group = Group(
            roots=(name,),
            amount=amount,
            unit=unit,
            size=units,
            keep=units,
            blocks=block,
            coupled=tuple(coupled),
            notes=tuple(notes),
        )
        width = heads.head_dim if heads is not None else 1
        entry = Live(group, module, fn, width if heads is not None else block, items, heads, mhas)
        entry.amounts.append(amount)
        live.append(entry)
        for m in outs:
            owner[m] = entry
    for entry in live:
        plan = entry.plan
        # Roots coupled together are pruned once, by the amount that removes the least.
        requests = []
        for root, amount in zip(plan.roots, entry.amounts):
            remove = _units_to_remove(entry, amount)
            if (isinstance(amount, int) and amount >= plan.size) or remove >= entry.units:
                label = "heads" if plan.unit == "heads" else "output channels"
                where = sources.get(root, "remove_channels")
                raise RecipeError(
                    f"{where}.amount: {amount} would remove all {plan.size} {label} of {root}"
                )
            requests.append((remove, amount))
        remove, amount = min(requests, key=lambda r: r[0])
        kept_units = keep_count(entry.units, remove, unit_width(entry), round_to)
        keep = kept_units if plan.unit == "heads" else kept_units * plan.blocks
        entry.plan = dataclasses.replace(plan, amount=amount, keep=keep)
    return live, skipped, traced


def _units_to_remove(entry: Live, amount: float | int) -> int:
    """Units an amount asks for: a fraction of the units, or a count of heads, or of
    channels (whole positions of every block when channels go evenly per block)."""
    if isinstance(amount, float):
        return round(amount * entry.units)
    if entry.plan.unit == "heads" or entry.plan.blocks == 1:
        return amount
    return amount // entry.plan.blocks


def plan_removal(
    model: nn.Module,
    roots: Mapping[str, float | int],
    example: Example,
    importance: str = "l2",
    scope: str = "layer",
    round_to: int = 1,
    sources: Mapping[str, str] | None = None,
) -> RemovalPlan:
    """Which channels of which layers would go, without changing ``model``.

    ``roots`` maps layer names to amounts: a fraction of the layer's output channels (of its
    heads for hand-written attention) or a whole count. Roots coupled with each other form one
    group, which takes the smallest of their amounts. ``example`` is (args, kwargs) for one
    forward; one sample is enough. ``sources`` names where each root's amount came from, for
    error messages (default "remove_channels").

    Raises UnsupportedError (the model cannot be traced, or is TorchScript/exported) and
    RecipeError (an unknown layer, a bad setting, an amount that removes every channel).
    """
    _check_settings(importance, scope, round_to)
    example = _check_example(example)
    _refuse_unsupported_model(model)
    if not roots:
        raise RecipeError("remove_channels: no layer selected")
    work = trainable_copy(model)
    with eval_mode(work):
        live, skipped, _ = _analyse(work, roots, example, round_to, sources)
    return RemovalPlan(
        groups=tuple(g.plan for g in live),
        skipped=dict(skipped),
        importance=importance,
        scope=scope,
        round_to=round_to,
        example=example,
    )


def remove_channels(
    model: nn.Module,
    plan: RemovalPlan,
    data: Batches | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Generator[GroupRemoved, None, RemovalResult]:
    """Remove the planned channels from ``model`` in place, one group at a time.

    Yields a GroupRemoved after each group (cancel between groups: raises Cancelled when
    ``should_stop()`` is true); returns a RemovalResult. ``model`` is changed in place and
    left half-done on any error: the engine passes a copy and discards it. ``data`` is needed
    for taylor importance (gradients of a cross-entropy loss over its first batches).

    The model is re-traced (the plan may have been made on the original), the importance
    of every channel is computed, the channels to remove are zeroed to get a reference
    output, and after each group the model must still give that output: an UnsupportedError
    names the group otherwise.
    """
    _refuse_unsupported_model(model)
    if plan.importance == "taylor" and data is None:
        raise DataError(
            "remove_channels: importance taylor needs data to compute gradients with "
            "(give --data or --train-data), or use l1 or l2"
        )
    if should_stop():
        raise Cancelled()
    roots = {}
    for group in plan.groups:
        for name in group.roots:
            roots[name] = group.amount
    for name in plan.skipped:
        roots.setdefault(name, 0.0)
    flags = own_parameters_trainable(model)
    try:
        with eval_mode(model):
            return (yield from _remove(model, plan, roots, data, should_stop))
    finally:
        restore_flags(model, flags)


def _remove(
    model: nn.Module,
    plan: RemovalPlan,
    roots: dict[str, float | int],
    data: Batches | None,
    should_stop: Callable[[], bool],
) -> Generator[GroupRemoved, None, RemovalResult]:
    live, skipped, traced = _analyse(model, roots, plan.example, plan.round_to, None)
    if [g.plan.roots for g in live] != [g.roots for g in plan.groups]:
        raise RecipeError("remove_channels: the plan was made for a different model")
    for entry, planned in zip(live, plan.groups):
        entry.plan = dataclasses.replace(entry.plan, amount=planned.amount, keep=planned.keep)
    graph = traced.graph
    modules = dict(model.named_modules())
    names = traced.names
    order = {name: i for i, name in enumerate(modules)}
    touched = sorted(
        {name for g in live for name in g.plan.layers} | set(plan.skipped), key=order.__getitem__
    )
    before = {
        n: (type(modules[n]).__name__, weight_shape(modules[n]), own_parameters(modules[n]))
        for n in touched
    }
    heads_before = {g.heads.name: g.heads.heads for g in live if g.heads is not None}
    mha_before = {names[m]: m.head_dim for g in live for m in g.mhas}
    mha_dims = {id(m): m.head_dim for g in live for m in g.mhas}

    # importance, on the untouched weights
    if plan.importance == "taylor" and data is not None:  # remove_channels checked data
        taylor_gradients(model, data)
    scores = []
    for i, entry in enumerate(live):
        if should_stop():
            raise Cancelled()
        channel = channel_scores(entry, plan.importance, seed=i)
        scores.append(unit_scores(entry, channel))
    for p in model.parameters():
        p.grad = None
    chosen = choose(live, scores, plan.scope, plan.round_to)
    removals = [
        sorted(c for u in units for c in entry.unit_channels(u))
        for entry, units in zip(live, chosen)
    ]

    # reference: the channels to remove zeroed, norms restricted to the kept features
    hooks: dict[int, list[Any]] = {}
    try:
        for gi, (entry, idxs) in enumerate(zip(live, removals)):
            if not idxs:
                continue
            hooks[gi] = []
            for item in graph.get_pruning_group(entry.module, entry.fn, idxs):
                module = item.dep.target.module
                if not isinstance(module, nn.Module) or module not in names:
                    continue
                kind = kind_of(item.dep.handler)
                mask_item(module, kind, list(item.idxs))
                if kind in ("layernorm", "groupnorm"):
                    hooks[gi].append(restricted_norm(module, kind, list(item.idxs)))
        try:
            reference = run_example(model, plan.example)
        except Exception as exc:
            raise UnsupportedError(
                f"remove_channels: the model fails with the channels to remove zeroed "
                f"({error_line(exc, 160)}); it cannot be checked"
            ) from None
        for gi, (entry, idxs) in enumerate(zip(live, removals)):
            if should_stop():
                raise Cancelled()
            if idxs:
                graph.get_pruning_group(entry.module, entry.fn, idxs).prune()
                for h in hooks.pop(gi, []):
                    h.remove()
                _after_group(entry, len(chosen[gi]), mha_dims)
                _check(model, plan.example, reference, entry, len(chosen[gi]))
            size = entry.plan.size
            yield GroupRemoved(
                gi + 1,
                len(live),
                entry.plan.root,
                entry.plan.unit,
                size,
                size - len(chosen[gi]),
                entry.plan.layers,
            )
    finally:
        for handles in hooks.values():
            for h in handles:
                h.remove()
    return _result(model, live, skipped, before, heads_before, mha_before, touched)


def _check(
    model: nn.Module, example: Example, reference: list[torch.Tensor], entry: Live, removed: int
) -> None:
    """The model, one more group removed, must still give the reference outputs."""
    what = f"{removed} {entry.plan.unit} of {entry.plan.root}"
    try:
        got = run_example(model, example)
    except Exception as exc:
        raise UnsupportedError(
            f"remove_channels: after removing {what} the model no longer runs "
            f"({error_line(exc, 160)})"
        ) from None
    if [t.shape for t in got] != [t.shape for t in reference]:
        raise UnsupportedError(
            f"remove_channels: removing {what} changes the model's output shapes "
            f"({_shapes(reference)} -> {_shapes(got)})"
        )
    if not same_outputs(reference, got):
        raise UnsupportedError(
            f"remove_channels: after removing {what} the model computes something else than "
            "the original with those channels zeroed (an operation mixes channels in a way "
            "the dependency graph does not track); this group cannot be removed safely"
        )


def _shapes(outputs: list[torch.Tensor]) -> str:
    return ", ".join("x".join(map(str, t.shape)) for t in outputs)


def _after_group(entry: Live, removed_units: int, mha_dims: dict[int, int]) -> None:
    """What Torch-Pruning leaves stale: the head count of a hand-written attention block,
    and the softmax scale of an nn.MultiheadAttention whose head_dim shrank."""
    heads = entry.heads
    if heads is not None:
        new = heads.heads - removed_units
        for attr in heads.count_attrs:
            setattr(heads.block, attr, new)
        for attr in heads.width_attrs:
            setattr(heads.block, attr, new * heads.head_dim)
    for mha in entry.mhas:
        # Scores are q.k / sqrt(head_dim); scaling q by sqrt(new/old) keeps the kept
        # positions' scores what they were.
        factor = math.sqrt(mha.head_dim / mha_dims[id(mha)])
        e = mha.embed_dim
        with torch.no_grad():
            weight = mha.in_proj_weight.detach().clone()
            weight[:e] *= factor
            set_tensor(mha, "in_proj_weight", weight)
            if mha.in_proj_bias is not None:
                bias = mha.in_proj_bias.detach().clone()
                bias[:e] *= factor
                set_tensor(mha, "in_proj_bias", bias)


def _result(
    model: nn.Module,
    live: list[Live],
    skipped: dict[str, str],
    before: dict[str, tuple[str, tuple[int, ...] | None, int]],
    heads_before: dict[str, int],
    mha_before: dict[str, int],
    touched: list[str],
) -> RemovalResult:
    modules = dict(model.named_modules())
    root_of: dict[str, str] = {}
    role_of: dict[str, str] = {}
    for entry in live:
        for name in entry.plan.roots:
            root_of[name] = entry.plan.root
            role_of[name] = "root"
        for c in entry.plan.coupled:
            root_of.setdefault(c.name, entry.plan.root)
            role_of.setdefault(c.name, c.role)
    rows = []
    for name in touched:
        kind, shape, params = before[name]
        module = modules[name]
        detail = None
        if name in heads_before:
            count = next(getattr(module, a) for a in heads_attr(module, HEAD_COUNT_ATTRS))
            detail = f"heads {heads_before[name]} -> {count}"
        elif name in mha_before:
            detail = f"heads {module.num_heads}, head_dim {mha_before[name]} -> {module.head_dim}"
        rows.append(
            LayerChange(
                name=name,
                type=kind,
                shape_before=shape,
                shape_after=weight_shape(module),
                parameters_before=params,
                parameters_after=own_parameters(module),
                root=root_of.get(name),
                role=role_of.get(name),
                detail=detail,
                skipped=skipped.get(name),
            )
        )
    notes = [note for entry in live for note in entry.plan.notes]
    return RemovalResult(tuple(rows), tuple(notes))

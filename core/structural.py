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

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import Cancelled, DataError, ModelLoadError, RecipeError, UnsupportedError

IMPORTANCES: tuple[str, ...] = ("l1", "l2", "taylor", "random")
SCOPES: tuple[str, ...] = ("layer", "global")
ROOT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.MultiheadAttention,
)
SHAPES_VERSION = 1

# Attributes an attention block may keep its head count in, and its inner width in.
HEAD_COUNT_ATTRS: tuple[str, ...] = (
    "num_heads",
    "num_attention_heads",
    "n_heads",
    "n_head",
    "heads",
    "num_head",
)
HEAD_DIM_ATTRS: tuple[str, ...] = ("head_dim", "attention_head_size", "head_size", "d_head")
INNER_WIDTH_ATTRS: tuple[str, ...] = ("all_head_size", "inner_dim", "inner_size", "attn_dim")
# grad_fn names of the products that mix channels across attention heads.
_ATTENTION_OPS: tuple[str, ...] = ("bmm", "scaleddotproduct", "attention", "einsum")
_TOLERANCE = 1e-4  # relative to the largest output magnitude (float32; wider for halves)

Example = tuple[tuple[Any, ...], dict[str, Any]]


class Batches(Protocol):
    """What taylor importance needs from data (core.data.Dataset fits)."""

    source: str

    def batches(self, batch_size: int) -> Iterator[tuple[tuple, dict, torch.Tensor | None]]: ...


# ----------------------------------------------------------------------------- public data
@dataclass(frozen=True)
class Coupled:
    """A layer that shrinks with a group, and which of its dimensions does."""

    name: str
    type: str
    role: str


@dataclass(frozen=True)
class Group:
    """Layers whose channels are removed together, and how many go.

    ``unit`` is "channels" or "heads" (hand-written attention loses whole heads). ``size`` is
    how many units there are, ``keep`` how many stay (for scope "global" the ranking decides;
    ``keep`` is then this group's share of the request). ``blocks`` > 1 means channels are
    removed evenly from that many equal blocks (grouped convolutions, the heads of an
    nn.MultiheadAttention).
    """

    roots: tuple[str, ...]
    amount: float | int
    unit: Literal["channels", "heads"]
    size: int
    keep: int
    blocks: int
    coupled: tuple[Coupled, ...]
    notes: tuple[str, ...] = ()

    @property
    def root(self) -> str:
        return self.roots[0]

    @property
    def layers(self) -> tuple[str, ...]:
        """The roots, then every coupled layer (model order)."""
        return self.roots + tuple(c.name for c in self.coupled)


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


# ----------------------------------------------------------------------------- internals
@dataclass
class _Heads:
    """A hand-written attention block whose whole heads are removed."""

    block: nn.Module
    name: str
    count_attrs: list[str]
    width_attrs: list[str]
    heads: int
    head_dim: int


@dataclass
class _Live:
    """A group bound to the modules of one traced model."""

    plan: Group
    module: nn.Module
    fn: Callable
    width: int  # channels per unit
    items: list = field(default_factory=list)  # Torch-Pruning group items, all channels
    heads: _Heads | None = None
    mhas: list[nn.MultiheadAttention] = field(default_factory=list)
    amounts: list[float | int] = field(default_factory=list)  # one per root

    def unit_channels(self, unit: int) -> list[int]:
        """Root-coordinate channels that make up one unit (a channel, a position repeated in
        every block, or a head)."""
        if self.plan.unit == "heads":
            return list(range(unit * self.width, (unit + 1) * self.width))
        if self.plan.blocks > 1:
            step = self.plan.size // self.plan.blocks
            return [b * step + unit for b in range(self.plan.blocks)]
        return [unit]

    @property
    def units(self) -> int:
        if self.plan.blocks > 1:
            return self.plan.size // self.plan.blocks
        return self.plan.size


@dataclass
class _Traced:
    graph: Any
    names: dict[Any, str]
    outputs: list[torch.Tensor]
    output_fns: set[Any]
    block_inputs: dict[str, tuple[tuple, dict]]


def _tp():
    """Torch-Pruning, imported on first use (it is only needed for structural pruning)."""
    import torch_pruning

    return torch_pruning


def _flatten(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in _flatten(v)]
    if isinstance(output, list | tuple):
        return [t for v in output for t in _flatten(v)]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [t for f in dataclasses.fields(output) for t in _flatten(getattr(output, f.name))]
    return []


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
    if scope not in SCOPES:
        raise RecipeError(f"remove_channels: scope {scope!r} is not one of {', '.join(SCOPES)}")
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


def _plain_float(tensor: Any) -> bool:
    return (
        isinstance(tensor, torch.Tensor)
        and type(tensor) in (torch.Tensor, nn.Parameter)
        and tensor.is_floating_point()
    )


def _trainable_copy(model: nn.Module) -> nn.Module:
    """New module objects and new Parameter objects over the same storage: tracing needs
    gradients, and this leaves the caller's model (and its requires_grad flags) alone."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.detach(), requires_grad=p.is_floating_point())
    for b in model.buffers():
        memo[id(b)] = b
    return copy.deepcopy(model, memo)


def _own_parameters_trainable(model: nn.Module) -> dict[tuple[str, str], bool]:
    """Give every module its own Parameter objects (same storage, tying kept) that record
    gradients; return the original requires_grad flags by (module, name).

    The engine's copy may share Parameter objects with the original model; flags set here
    must never reach the original.
    """
    flags: dict[tuple[str, str], bool] = {}
    memo: dict[int, nn.Parameter] = {}
    for mname, module in model.named_modules():
        for pname, p in list(module._parameters.items()):
            if p is None:
                continue
            flags[(mname, pname)] = p.requires_grad
            if id(p) not in memo:
                memo[id(p)] = nn.Parameter(p.detach(), requires_grad=p.is_floating_point())
            module._parameters[pname] = memo[id(p)]
    return flags


def _restore_flags(model: nn.Module, flags: dict[tuple[str, str], bool]) -> None:
    default = all(flags.values()) if flags else False
    for mname, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None:
                p.requires_grad_(flags.get((mname, pname), default))
                p.grad = None


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _heads_attr(module: nn.Module, names: Sequence[str]) -> list[str]:
    return [
        n
        for n in names
        if isinstance(getattr(module, n, None), int) and not isinstance(getattr(module, n), bool)
    ]


def _trace(model: nn.Module, example: Example) -> _Traced:
    """Build Torch-Pruning's dependency graph with one forward on the example; also keep
    the model's outputs and the inputs of every block that declares a head count."""
    tp = _tp()
    args, kwargs = example
    captured: dict[str, Any] = {}
    block_inputs: dict[str, tuple[tuple, dict]] = {}
    hooks = []
    for name, module in model.named_modules():
        if name and _heads_attr(module, HEAD_COUNT_ATTRS):

            def keep(mod, a, kw, name=name):
                block_inputs.setdefault(name, (a, kw))

            hooks.append(module.register_forward_pre_hook(keep, with_kwargs=True))

    def forward(m: nn.Module, _inputs: Any) -> list[torch.Tensor]:
        tensors = [t for t in _flatten(m(*args, **kwargs)) if t.grad_fn is not None]
        captured["outputs"] = tensors
        return tensors

    label = type(model).__name__
    try:
        with torch.inference_mode(False), torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(
                model, example_inputs=example, forward_fn=forward, verbose=False
            )
    except Exception as exc:
        raise UnsupportedError(
            f"remove_channels: {label} cannot be traced on the example input "
            f"({type(exc).__name__}: {_line(exc)})"
        ) from None
    finally:
        for h in hooks:
            h.remove()
    outputs = captured.get("outputs") or []
    if not outputs:
        raise UnsupportedError(
            f"remove_channels: {label} cannot be traced: no output depends on its weights "
            "(does its forward run under torch.no_grad?)"
        )
    names = {module: name for name, module in model.named_modules()}
    detached = {k: (_detach(a), _detach(kw)) for k, (a, kw) in block_inputs.items()}
    return _Traced(graph, names, outputs, {t.grad_fn for t in outputs}, detached)


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    if isinstance(value, list):
        return [_detach(v) for v in value]
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


def _line(exc: BaseException, limit: int = 200) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return type(exc).__name__


def _root_fn(module: nn.Module) -> Callable:
    tp = _tp()
    if isinstance(module, nn.MultiheadAttention):
        return tp.prune_multihead_attention_out_channels
    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    if _is_depthwise(module):
        return tp.prune_depthwise_conv_out_channels
    return tp.prune_conv_out_channels


def _is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups == module.out_channels == module.in_channels
        and module.out_channels > 1
    )


def _out_size(module: nn.Module) -> int:
    if isinstance(module, nn.MultiheadAttention):
        return module.embed_dim
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.out_channels


def _kind(handler: Callable) -> str:
    """A short name for a Torch-Pruning pruning function."""
    tp = _tp()
    table = {
        tp.prune_linear_out_channels: "linear_out",
        tp.prune_linear_in_channels: "linear_in",
        tp.prune_conv_out_channels: "conv_out",
        tp.prune_conv_in_channels: "conv_in",
        tp.prune_depthwise_conv_out_channels: "depthwise",
        tp.prune_batchnorm_out_channels: "norm",
        tp.prune_instancenorm_out_channels: "norm",
        tp.prune_layernorm_out_channels: "layernorm",
        tp.prune_groupnorm_out_channels: "groupnorm",
        tp.prune_prelu_out_channels: "prelu",
        tp.prune_embedding_out_channels: "embedding",
        tp.prune_multihead_attention_out_channels: "mha",
        tp.prune_parameter_out_channels: "parameter",
    }
    for fn, name in table.items():
        if handler == fn:
            return name
    return "other"


_ROLES = {
    "linear_out": "output features",
    "linear_in": "input features",
    "conv_out": "output channels",
    "conv_in": "input channels",
    "depthwise": "depthwise channels",
    "norm": "normalized features",
    "layernorm": "normalized features",
    "groupnorm": "normalized features (evenly per group)",
    "prelu": "per-channel slopes",
    "embedding": "embedding size",
    "mha": "embed_dim (heads keep their count; head_dim shrinks)",
}


def _lcm(values: Iterable[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


class _Skip(Exception):
    """A group cannot be pruned safely; the message says why."""


def _inspect(
    traced: _Traced,
    model: nn.Module,
    root: str,
    module: nn.Module,
    items: list,
    shared: set[int],
) -> tuple[list[Coupled], int, _Heads | None, list[nn.MultiheadAttention], list[str]]:
    """Check a group item by item: what follows the root, the even-block constraint, and
    whether these are attention heads. Raises _Skip with the reason when it is unsafe."""
    tp = _tp()
    OPTYPE = tp.ops.OPTYPE
    n = _out_size(module)
    blocks: list[int] = []
    coupled: dict[str, Coupled] = {}
    mhas: list[nn.MultiheadAttention] = []
    attention_ops = False
    notes: list[str] = []
    linears: list[tuple[str, str, Any]] = []
    others: list[str] = []
    for item in items:
        dep = item.dep
        target = dep.target
        tmod = target.module
        if target.type == OPTYPE.OUTPUT or (
            target.grad_fn in traced.output_fns
            and traced.graph.is_out_channel_pruning_fn(dep.handler)
        ):
            where = traced.names.get(tmod)
            if where is None or where == root:
                raise _Skip("its outputs are the model's outputs")
            raise _Skip(f"its channels reach the model's outputs through {where}")
        if target.type in (OPTYPE.SPLIT, OPTYPE.UNBIND, OPTYPE.SLICE):
            raise _Skip(
                "its channels are split or sliced on the way (torch.split/chunk/unbind or "
                "slicing), which Torch-Pruning does not map reliably"
            )
        if target.type == OPTYPE.PARAMETER:
            pname = traced.graph._param_to_name.get(tmod, "a parameter")
            raise _Skip(f"a bare nn.Parameter ({pname}) is coupled with it: not supported")
        if target.type in (OPTYPE.ELEMENTWISE, OPTYPE.EXPAND):
            fn_name = str(getattr(tmod, "_grad_fn", "")).lower()
            if any(op in fn_name for op in _ATTENTION_OPS):
                attention_ops = True
            continue
        if target.type in (OPTYPE.RESHAPE, OPTYPE.CONCAT, OPTYPE.CUSTOMIZED):
            continue
        name = traced.names.get(tmod)
        if name is None:
            continue
        kind = _kind(dep.handler)
        tname = type(tmod).__name__
        if any(id(p) in shared for p in tmod.parameters(recurse=False)):
            raise _Skip(f"{name} shares its weights with another layer: not supported")
        weight = getattr(tmod, "weight", None)
        if weight is not None and not _plain_float(weight):
            raise _Skip(f"{name} is already quantized: remove channels before quantizing")
        if isinstance(tmod, nn.LSTM | nn.GRU | nn.RNN):
            raise _Skip(f"{name} is a recurrent layer ({tname}): not supported")
        if kind == "other":
            raise _Skip(f"{name} ({tname}) is coupled with it and cannot be pruned safely")
        identity = len(item.idxs) == n and list(item.idxs) == list(item.root_idxs)
        if isinstance(tmod, nn.modules.conv._ConvNd):
            if tmod.transposed:
                raise _Skip(f"{name} is a transposed convolution: not supported")
            if tmod.groups > 1 and not _is_depthwise(tmod):
                if kind == "depthwise":
                    raise _Skip(
                        f"{name} has groups == out_channels but in_channels "
                        f"{tmod.in_channels} != out_channels {tmod.out_channels}; Torch-Pruning "
                        "would treat it as depthwise and break it"
                    )
                channels = tmod.in_channels if kind == "conv_in" else tmod.out_channels
                if not identity or n != channels:
                    raise _Skip(
                        f"grouped convolution {name} (groups={tmod.groups}) takes these channels "
                        "through a concatenation or reshape: its groups cannot be kept even"
                    )
                blocks.append(tmod.groups)
        if kind == "layernorm" and len(tmod.normalized_shape) > 1:
            raise _Skip(f"{name} normalises over several dimensions: not supported")
        if kind == "groupnorm":
            if not identity or n != tmod.num_channels:
                raise _Skip(f"GroupNorm {name} takes these channels through a concatenation")
            blocks.append(tmod.num_groups)
        if kind == "mha":
            if not tmod._qkv_same_embed_dim:
                raise _Skip(
                    f"{name} has kdim/vdim different from embed_dim (separate q/k/v "
                    "weights): not supported"
                )
            if not identity or n != tmod.embed_dim:
                raise _Skip(f"{name} takes these channels through a concatenation or reshape")
            blocks.append(tmod.num_heads)
            mhas.append(tmod)
            inner = f"{name}.out_proj"
            if inner != root:
                coupled[inner] = Coupled(
                    inner, type(tmod.out_proj).__name__, "output and input features (inside it)"
                )
        if kind in ("linear_out", "linear_in"):
            linears.append((name, kind, item))
        elif name != root:
            others.append(name)
        is_root = name == root and kind in ("linear_out", "conv_out", "depthwise", "mha")
        if is_root:
            continue
        if name not in coupled:
            coupled[name] = Coupled(name, tname, _ROLES[kind])
        elif _ROLES[kind] not in coupled[name].role:
            role = f"{coupled[name].role}, {_ROLES[kind]}"
            coupled[name] = dataclasses.replace(coupled[name], role=role)
    heads = None
    if attention_ops and not mhas:
        heads = _attention_heads(traced, model, root, module, linears, others, n)
        coupled = {
            k: dataclasses.replace(
                c, role="heads (output)" if c.role == "output features" else "heads (input)"
            )
            for k, c in coupled.items()
        }
        coupled[heads.name] = Coupled(heads.name, type(heads.block).__name__, "num_heads")
        return list(coupled.values()), 1, heads, mhas, notes
    block = _lcm(blocks) if blocks else 1
    if n % block:
        raise _Skip(f"its {n} channels do not split evenly into {block} groups")
    if block > 1 and n // block == 1:
        raise _Skip(
            f"each of its {block} channel groups (grouped convolution or heads) holds one "
            "channel: none can be removed evenly"
        )
    for mha in mhas:
        notes.append(
            f"{traced.names[mha]} (nn.MultiheadAttention) keeps its {mha.num_heads} heads; each "
            "loses the same positions (its inner width is its embed_dim), and the scores are "
            "rescaled so kept positions compute as before"
        )
    return list(coupled.values()), block, None, mhas, notes


def _attention_heads(
    traced: _Traced,
    model: nn.Module,
    root: str,
    module: nn.Module,
    linears: list[tuple[str, str, Any]],
    others: list[str],
    n: int,
) -> _Heads:
    """The attention block whose whole heads this group removes, after checking that its
    weights and its forward agree with its ``num_heads``."""
    if not isinstance(module, nn.Linear):
        raise _Skip("attention products couple these channels across heads")
    parts = root.split(".")
    block_name = None
    for i in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:i])
        if _heads_attr(model.get_submodule(candidate), HEAD_COUNT_ATTRS):
            block_name = candidate
            break
    if block_name is None:
        raise _Skip(
            "attention products couple these channels across heads, and no enclosing block "
            f"has a head-count attribute ({', '.join(HEAD_COUNT_ATTRS[:3])}...) to update"
        )
    block = model.get_submodule(block_name)
    if others:
        raise _Skip(f"{others[0]} is coupled with the heads of {block_name}: not supported")
    outside = [name for name, _, _ in linears if not name.startswith(block_name + ".")]
    if outside:
        raise _Skip(f"{outside[0]} is outside {block_name} but coupled with its heads")
    for name, _, item in linears:
        if len(item.idxs) != n or list(item.idxs) != list(item.root_idxs):
            raise _Skip(
                f"{name} does not line up channel for channel with {root} (fused q/k/v "
                "projections and grouped-query attention are not supported)"
            )
    count_attrs = _heads_attr(block, HEAD_COUNT_ATTRS)
    counts = {getattr(block, a) for a in count_attrs}
    if len(counts) != 1:
        raise _Skip(f"{block_name} has head counts that disagree: {sorted(counts)}")
    heads = counts.pop()
    if heads < 2:
        raise _Skip(f"{block_name} has {heads} head: none can be removed")
    if n % heads:
        raise _Skip(f"{root} has {n} outputs, not a multiple of {block_name}'s {heads} heads")
    head_dim = n // heads
    for attr in _heads_attr(block, HEAD_DIM_ATTRS):
        if getattr(block, attr) != head_dim:
            raise _Skip(
                f"{block_name}.{attr} is {getattr(block, attr)}, but {root} has {n} outputs "
                f"for {heads} heads"
            )
    width_attrs = [a for a in _heads_attr(block, INNER_WIDTH_ATTRS) if getattr(block, a) == n]
    found = _Heads(block, block_name, count_attrs, width_attrs, heads, head_dim)
    _trial_heads(traced, found, linears)
    return found


def _trial_heads(traced: _Traced, heads: _Heads, linears: list[tuple[str, str, Any]]) -> None:
    """Remove the last head from a copy of the block and compare with the block whose last
    head's output is zeroed: a forward that does not follow ``num_heads`` (a constant, or a
    width read elsewhere) shows up here, before anything is changed."""
    inputs = traced.block_inputs.get(heads.name)
    if inputs is None:
        raise _Skip(f"{heads.name} is not called as a module in the forward")
    args, kwargs = inputs
    prefix = heads.name + "."
    keep = list(range((heads.heads - 1) * heads.head_dim))
    drop = list(range((heads.heads - 1) * heads.head_dim, heads.heads * heads.head_dim))
    masked = copy.deepcopy(heads.block)
    trial = copy.deepcopy(heads.block)
    with torch.no_grad():
        for name, kind, _ in linears:
            rel = name[len(prefix) :]
            if kind == "linear_in":
                lin = masked.get_submodule(rel)
                lin.weight = nn.Parameter(lin.weight.detach().clone().index_fill_(1, _idx(drop), 0))
            lin = trial.get_submodule(rel)
            if kind == "linear_out":
                lin.weight = nn.Parameter(lin.weight.detach()[keep].clone())
                if lin.bias is not None:
                    lin.bias = nn.Parameter(lin.bias.detach()[keep].clone())
                lin.out_features = len(keep)
            else:
                lin.weight = nn.Parameter(lin.weight.detach()[:, keep].clone())
                lin.in_features = len(keep)
        for attr in heads.count_attrs:
            setattr(trial, attr, heads.heads - 1)
        for attr in heads.width_attrs:
            setattr(trial, attr, len(keep))
        masked.eval()
        trial.eval()
        expected = _flatten(masked(*args, **kwargs))
        try:
            got = _flatten(trial(*args, **kwargs))
        except Exception as exc:
            raise _Skip(
                f"{heads.name}'s forward fails once a head is removed ({_line(exc, 120)}): it "
                "does not follow its num_heads"
            ) from None
    if not _same(expected, got):
        raise _Skip(
            f"{heads.name}'s forward does not follow its num_heads (removing one head changes "
            "what the others compute)"
        )


def _idx(values: Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(list(values), dtype=torch.long)


def _same(expected: list[torch.Tensor], got: list[torch.Tensor]) -> bool:
    if len(expected) != len(got):
        return False
    for a, b in zip(expected, got):
        if a.shape != b.shape:
            return False
        if a.is_floating_point():
            if not a.numel():
                continue
            scale = max(1.0, float(a.detach().abs().max()))
            tolerance = max(_TOLERANCE, 50 * torch.finfo(a.dtype).eps)
            if float((a.detach() - b.detach()).abs().max()) > tolerance * scale:
                return False
        elif not torch.equal(a, b):
            return False
    return True


def _keep_count(units: int, requested_remove: int, width: int, round_to: int) -> int:
    """Units kept: never fewer than asked for, and the kept channel count a multiple of
    ``round_to`` where possible (otherwise everything is kept)."""
    kept = max(units - requested_remove, 1)
    multiple = round_to // math.gcd(round_to, width)
    kept = -(-kept // multiple) * multiple
    return min(kept, units)


def _analyse(
    model: nn.Module,
    roots: Mapping[str, float | int],
    example: Example,
    round_to: int,
    sources: Mapping[str, str] | None,
) -> tuple[list[_Live], dict[str, str], _Traced]:
    """Trace ``model`` and turn the roots into checked groups bound to its modules."""
    modules = dict(model.named_modules())
    order = {name: i for i, name in enumerate(modules)}
    sources = sources or {}
    for name, amount in roots.items():
        where = sources.get(name, "remove_channels")
        if name not in modules or not name:
            raise RecipeError(f"{where}: the model has no layer named {name!r}")
        _check_amount(amount, where, name)
    traced = _trace(model, example)
    graph = traced.graph
    seen: dict[int, int] = {}
    shared: set[int] = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            seen[id(p)] = seen.get(id(p), 0) + 1
            if seen[id(p)] > 1:
                shared.add(id(p))
    live: list[_Live] = []
    owner: dict[nn.Module, _Live] = {}
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
        if not _plain_float(weight):
            skipped[name] = "already quantized: remove channels before quantizing"
            continue
        if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
            skipped[name] = "transposed convolutions are not supported"
            continue
        if module not in graph.module2node:
            skipped[name] = "is not called as a module by the forward on the example input"
            continue
        fn = _root_fn(module)
        size = _out_size(module)
        items = list(graph.get_pruning_group(module, fn, list(range(size))))
        outs = [
            it.dep.target.module
            for it in items
            if isinstance(it.dep.target.module, nn.Module)
            and graph.is_out_channel_pruning_fn(it.dep.handler)
        ]
        try:
            coupled, block, heads, mhas, notes = _inspect(
                traced, model, name, module, items, shared
            )
        except _Skip as why:
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
        entry = _Live(group, module, fn, width if heads is not None else block, items, heads, mhas)
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
        kept_units = _keep_count(entry.units, remove, _unit_width(entry), round_to)
        keep = kept_units if plan.unit == "heads" else kept_units * plan.blocks
        entry.plan = dataclasses.replace(plan, amount=amount, keep=keep)
    return live, skipped, traced


def _units_to_remove(entry: _Live, amount: float | int) -> int:
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
    work = _trainable_copy(model)
    with _eval_mode(work):
        live, skipped, _ = _analyse(work, roots, example, round_to, sources)
    return RemovalPlan(
        groups=tuple(g.plan for g in live),
        skipped=dict(skipped),
        importance=importance,
        scope=scope,
        round_to=round_to,
        example=example,
    )


# ----------------------------------------------------------------------------- importance
def _metric(importance: str) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    if importance == "l1":
        return lambda w, g: w.abs()
    if importance == "l2":
        return lambda w, g: w.pow(2)
    return lambda w, g: (w * g).abs() if g is not None else torch.zeros_like(w)


def _rows(tensor: torch.Tensor | None, idxs: torch.Tensor, dim: int, metric) -> torch.Tensor:
    if tensor is None:
        return torch.zeros(len(idxs))
    w = tensor.detach().float().index_select(dim, idxs)
    g = tensor.grad
    g = g.detach().float().index_select(dim, idxs) if g is not None else None
    value = metric(w, g)
    return value.movedim(dim, 0).reshape(len(idxs), -1).sum(1)


def _item_scores(module: nn.Module, kind: str, idxs: list[int], metric) -> torch.Tensor | None:
    """One coupled layer's contribution to the importance of the channels ``idxs``."""
    ix = _idx(idxs)
    if kind in ("linear_out", "conv_out", "depthwise"):
        return _rows(module.weight, ix, 0, metric)
    if kind == "linear_in":
        return _rows(module.weight, ix, 1, metric)
    if kind == "conv_in":
        if module.groups == 1:
            return _rows(module.weight, ix, 1, metric)
        per_in = module.in_channels // module.groups
        per_out = module.out_channels // module.groups
        w = module.weight
        out = []
        for c in idxs:
            g, j = divmod(c, per_in)
            rows = w[g * per_out : (g + 1) * per_out, j : j + 1]
            grad = (
                w.grad[g * per_out : (g + 1) * per_out, j : j + 1] if w.grad is not None else None
            )
            out.append(metric(rows.detach().float(), grad).sum())
        return torch.stack(out)
    if kind in ("norm", "layernorm", "groupnorm", "prelu"):
        weight = getattr(module, "weight", None)
        if weight is None:
            return None
        return _rows(weight, ix, weight.dim() - 1 if kind == "layernorm" else 0, metric)
    if kind == "embedding":
        return _rows(module.weight, ix, 1, metric)
    if kind == "mha":
        e = module.embed_dim
        rows = torch.cat([ix, ix + e, ix + 2 * e])
        inner = _rows(module.in_proj_weight, rows, 0, metric).view(3, -1).sum(0)
        inputs = _rows(module.in_proj_weight, ix, 1, metric)
        out_rows = _rows(module.out_proj.weight, ix, 0, metric)
        out_cols = _rows(module.out_proj.weight, ix, 1, metric)
        return inner + inputs + out_rows + out_cols
    return None


def _channel_scores(entry: _Live, importance: str, seed: int) -> torch.Tensor:
    """Importance of each root channel: the mean over coupled layers of their per-channel
    magnitude (l1, l2) or |weight x gradient| (taylor); seeded noise for random."""
    n = _out_size(entry.module)
    if importance == "random":
        return torch.rand(n, generator=torch.Generator().manual_seed(seed))
    metric = _metric(importance)
    total = torch.zeros(n, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.float64)
    for item in entry.items:
        module = item.dep.target.module
        if not isinstance(module, nn.Module) or any(r is None for r in item.root_idxs):
            continue
        scores = _item_scores(module, _kind(item.dep.handler), list(item.idxs), metric)
        if scores is None:
            continue
        roots = _idx(item.root_idxs)
        total.scatter_add_(0, roots, scores.double())
        count.scatter_add_(0, roots, torch.ones(len(roots), dtype=torch.float64))
    return (total / count.clamp(min=1)).float()


def _unit_scores(entry: _Live, channel: torch.Tensor) -> torch.Tensor:
    if entry.plan.unit == "heads":
        return channel.view(entry.plan.size, entry.width).sum(1)
    if entry.plan.blocks > 1:
        return channel.view(entry.plan.blocks, -1).mean(0)
    return channel


def _choose(
    live: list[_Live], scores: list[torch.Tensor], scope: str, round_to: int
) -> list[list[int]]:
    """Units to remove per group: the least important ones; for scope "global" one ranking
    across all groups (scores normalised by each group's mean) removes as many channels as
    the amounts ask for in total."""
    if scope == "layer":
        out = []
        for entry, s in zip(live, scores):
            remove = entry.units - _units_kept(entry)
            out.append(sorted(torch.argsort(s, stable=True)[:remove].tolist()))
        return out
    budget = sum((e.units - _units_kept(e)) * _unit_width(e) for e in live)
    ranked: list[tuple[float, int, int]] = []
    for gi, s in enumerate(scores):
        mean = float(s.mean()) if s.numel() else 0.0
        norm = s / mean if mean > 0 else s
        ranked += [(float(v), gi, u) for u, v in enumerate(norm.tolist())]
    ranked.sort()
    taken: list[list[int]] = [[] for _ in live]
    removed = 0
    for _, gi, unit in ranked:
        if removed >= budget:
            break
        if len(taken[gi]) < live[gi].units - 1:
            taken[gi].append(unit)
            removed += _unit_width(live[gi])
    out = []
    for entry, chosen, s in zip(live, taken, scores):
        kept = _keep_count(entry.units, len(chosen), _unit_width(entry), round_to)
        chosen = sorted(chosen, key=lambda u: float(s[u]))[: entry.units - kept]
        out.append(sorted(chosen))
    return out


def _units_kept(entry: _Live) -> int:
    if entry.plan.unit == "heads":
        return entry.plan.keep
    return entry.plan.keep // entry.plan.blocks


def _unit_width(entry: _Live) -> int:
    return entry.width if entry.plan.unit == "heads" else entry.plan.blocks


def _taylor_gradients(model: nn.Module, data: Batches, max_samples: int = 256) -> None:
    """Accumulate gradients of a cross-entropy loss (labels, or the model's own top-1 when
    there are none) over up to ``max_samples`` samples."""
    seen = 0
    source = getattr(data, "source", "data")
    with torch.inference_mode(False), torch.enable_grad():
        for args, kwargs, y in data.batches(32):
            outputs = [t for t in _flatten(model(*args, **kwargs)) if t.is_floating_point()]
            if not outputs or outputs[0].dim() != 2 or outputs[0].shape[1] < 2:
                raise DataError(
                    f"{source}: taylor importance needs a model that outputs class logits "
                    "(batch x classes); use l1 or l2"
                )
            logits = outputs[0]
            target = y if y is not None else logits.detach().argmax(1)
            F.cross_entropy(logits, target.long()).backward()
            seen += logits.shape[0]
            if seen >= max_samples:
                break
    if seen == 0:
        raise DataError(f"{source}: holds no samples to compute taylor importance with")


# ----------------------------------------------------------------------------- masking
def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace a parameter or buffer by a new tensor (never in place: the engine's copy may
    share storage with the original model)."""
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        setattr(module, name, value)


def _zero(module: nn.Module, name: str, dim: int, idxs: torch.Tensor) -> None:
    tensor = getattr(module, name, None)
    if tensor is None:
        return
    _set_tensor(module, name, tensor.detach().clone().index_fill_(dim, idxs, 0))


def _mask_item(module: nn.Module, kind: str, idxs: list[int]) -> None:
    """Zero what the removal of channels ``idxs`` will delete from one coupled layer, so the
    model computes what it will compute once they are gone."""
    ix = _idx(idxs)
    if kind in ("linear_out", "conv_out", "depthwise"):
        _zero(module, "weight", 0, ix)
        _zero(module, "bias", 0, ix)
    elif kind == "linear_in" or (kind == "conv_in" and module.groups == 1):
        _zero(module, "weight", 1, ix)
    elif kind == "conv_in":
        per_in = module.in_channels // module.groups
        per_out = module.out_channels // module.groups
        w = module.weight.detach().clone()
        for c in idxs:
            g, j = divmod(c, per_in)
            w[g * per_out : (g + 1) * per_out, j] = 0
        _set_tensor(module, "weight", w)
    elif kind in ("norm", "prelu", "groupnorm"):
        if kind == "prelu" and module.num_parameters == 1:
            return
        _zero(module, "weight", 0, ix)
        _zero(module, "bias", 0, ix)
    elif kind == "layernorm":
        _zero(module, "weight", -1, ix)
        _zero(module, "bias", -1, ix)
    elif kind == "embedding":
        _zero(module, "weight", 1, ix)
    elif kind == "mha":
        e = module.embed_dim
        rows = torch.cat([ix, ix + e, ix + 2 * e])
        _zero(module, "in_proj_weight", 0, rows)
        _zero(module, "in_proj_weight", 1, ix)
        _zero(module, "in_proj_bias", 0, rows)
        _zero(module.out_proj, "weight", 0, ix)
        _zero(module.out_proj, "weight", 1, ix)
        _zero(module.out_proj, "bias", 0, ix)
        _zero(module, "bias_k", 2, ix)
        _zero(module, "bias_v", 2, ix)


def _restricted_norm(module: nn.Module, kind: str, idxs: list[int]) -> Any:
    """A forward hook that makes a LayerNorm/GroupNorm normalise over its kept features only,
    as it will once the others are removed."""
    size = module.normalized_shape[-1] if kind == "layernorm" else module.num_channels
    keep = _idx(sorted(set(range(size)) - set(idxs)))

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        out = torch.zeros_like(output)
        w = mod.weight[keep] if mod.weight is not None else None
        b = mod.bias[keep] if mod.bias is not None else None
        if kind == "layernorm":
            shape = (*mod.normalized_shape[:-1], len(keep))
            if len(mod.normalized_shape) > 1:
                raise UnsupportedError("multi-dimensional LayerNorm")
            out[..., keep] = F.layer_norm(x[..., keep], shape, w, b, mod.eps)
        else:
            out[:, keep] = F.group_norm(x[:, keep], mod.num_groups, w, b, mod.eps)
        return out

    return module.register_forward_hook(hook)


# ----------------------------------------------------------------------------- removal
def _weight_shape(module: nn.Module) -> tuple[int, ...] | None:
    weight = getattr(module, "weight", None)
    if weight is None and isinstance(module, nn.MultiheadAttention):
        weight = module.in_proj_weight
    if isinstance(weight, torch.Tensor):
        return tuple(weight.shape)
    return None


def _own_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _run(model: nn.Module, example: Example) -> list[torch.Tensor]:
    args, kwargs = example
    with torch.no_grad():
        return [t.detach() for t in _flatten(model(*args, **kwargs))]


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
    flags = _own_parameters_trainable(model)
    try:
        with _eval_mode(model):
            return (yield from _remove(model, plan, roots, data, should_stop))
    finally:
        _restore_flags(model, flags)


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
        n: (type(modules[n]).__name__, _weight_shape(modules[n]), _own_parameters(modules[n]))
        for n in touched
    }
    heads_before = {g.heads.name: g.heads.heads for g in live if g.heads is not None}
    mha_before = {names[m]: m.head_dim for g in live for m in g.mhas}
    mha_dims = {id(m): m.head_dim for g in live for m in g.mhas}

    # importance, on the untouched weights
    if plan.importance == "taylor" and data is not None:  # remove_channels checked data
        _taylor_gradients(model, data)
    scores = []
    for i, entry in enumerate(live):
        if should_stop():
            raise Cancelled()
        channel = _channel_scores(entry, plan.importance, seed=i)
        scores.append(_unit_scores(entry, channel))
    for p in model.parameters():
        p.grad = None
    chosen = _choose(live, scores, plan.scope, plan.round_to)
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
                kind = _kind(item.dep.handler)
                _mask_item(module, kind, list(item.idxs))
                if kind in ("layernorm", "groupnorm"):
                    hooks[gi].append(_restricted_norm(module, kind, list(item.idxs)))
        try:
            reference = _run(model, plan.example)
        except Exception as exc:
            raise UnsupportedError(
                f"remove_channels: the model fails with the channels to remove zeroed "
                f"({_line(exc, 160)}); it cannot be checked"
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
    model: nn.Module, example: Example, reference: list[torch.Tensor], entry: _Live, removed: int
) -> None:
    """The model, one more group removed, must still give the reference outputs."""
    what = f"{removed} {entry.plan.unit} of {entry.plan.root}"
    try:
        got = _run(model, example)
    except Exception as exc:
        raise UnsupportedError(
            f"remove_channels: after removing {what} the model no longer runs ({_line(exc, 160)})"
        ) from None
    if [t.shape for t in got] != [t.shape for t in reference]:
        raise UnsupportedError(
            f"remove_channels: removing {what} changes the model's output shapes "
            f"({_shapes(reference)} -> {_shapes(got)})"
        )
    if not _same(reference, got):
        raise UnsupportedError(
            f"remove_channels: after removing {what} the model computes something else than "
            "the original with those channels zeroed (an operation mixes channels in a way "
            "the dependency graph does not track); this group cannot be removed safely"
        )


def _shapes(outputs: list[torch.Tensor]) -> str:
    return ", ".join("x".join(map(str, t.shape)) for t in outputs)


def _after_group(entry: _Live, removed_units: int, mha_dims: dict[int, int]) -> None:
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
            _set_tensor(mha, "in_proj_weight", weight)
            if mha.in_proj_bias is not None:
                bias = mha.in_proj_bias.detach().clone()
                bias[:e] *= factor
                _set_tensor(mha, "in_proj_bias", bias)


def _result(
    model: nn.Module,
    live: list[_Live],
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
            count = next(getattr(module, a) for a in _heads_attr(module, HEAD_COUNT_ATTRS))
            detail = f"heads {heads_before[name]} -> {count}"
        elif name in mha_before:
            detail = f"heads {module.num_heads}, head_dim {mha_before[name]} -> {module.head_dim}"
        rows.append(
            LayerChange(
                name=name,
                type=kind,
                shape_before=shape,
                shape_after=_weight_shape(module),
                parameters_before=params,
                parameters_after=_own_parameters(module),
                root=root_of.get(name),
                role=role_of.get(name),
                detail=detail,
                skipped=skipped.get(name),
            )
        )
    notes = [note for entry in live for note in entry.plan.notes]
    return RemovalResult(tuple(rows), tuple(notes))


# ----------------------------------------------------------------------------- saving
_SKIP_ATTRS = frozenset({"training"})


def _simple(value: Any) -> bool:
    if isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, tuple | list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _attributes(module: nn.Module) -> dict[str, Any]:
    """The plain attributes a constructor sets (sizes, counts, flags), by name."""
    out = {}
    for key, value in vars(module).items():
        if key in _SKIP_ATTRS or (key.startswith("_") and key != "_qkv_same_embed_dim"):
            continue
        if _simple(value):
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _tensors(module: nn.Module) -> dict[str, list[int]]:
    """Shapes of the module's own state-dict tensors (parameters and persistent buffers)."""
    out = {}
    for key, p in module._parameters.items():
        if p is not None:
            out[key] = list(p.shape)
    for key, b in module._buffers.items():
        if b is not None and key not in module._non_persistent_buffers_set:
            out[key] = list(b.shape)
    return out


def shapes_of(model: nn.Module, original: nn.Module | None = None) -> dict[str, Any]:
    """What rebuilds a model whose shapes were changed by ``remove_channels``, as JSON data.

    For every module whose tensor shapes or plain attributes differ from ``original`` (the
    model as its architecture builds it): its type, the attributes that changed
    (in/out features and channels, groups, num_features, normalized_shape, embed_dim,
    head_dim, num_heads...) and the shape of each of its state-dict tensors. Without
    ``original``, every module with tensors or attributes is recorded. Call it on the float
    model (before quantization): the types must be the ones ``--arch`` builds.
    """
    reference = dict(original.named_modules()) if original is not None else {}
    modules: dict[str, Any] = {}
    for name, module in model.named_modules():
        attrs = _attributes(module)
        tensors = _tensors(module)
        base = reference.get(name)
        if base is not None:
            if type(base) is not type(module):
                raise UnsupportedError(
                    f"shapes_of: {name or 'the model'} is a {type(module).__name__} here but a "
                    f"{type(base).__name__} in the original (record shapes before quantizing)"
                )
            base_attrs = _attributes(base)
            attrs = {k: v for k, v in attrs.items() if base_attrs.get(k, v) != v}
            if not attrs and tensors == _tensors(base):
                continue
        elif original is not None:
            raise UnsupportedError(f"shapes_of: {name} is not in the original model")
        if attrs or tensors:
            modules[name] = {"type": type(module).__name__, "attributes": attrs, "tensors": tensors}
    return {"shapes_version": SHAPES_VERSION, "modules": modules}


def apply_shapes(model: nn.Module, shapes: Mapping[str, Any], source: str = "sidecar") -> None:
    """Resize a freshly built architecture (on any device, meta included) to recorded shapes.

    Sets the recorded attributes and replaces each recorded tensor by an uninitialised one of
    the recorded shape (same dtype, device and kind), so ``load_state_dict(strict=True)`` of
    the pruned weights fits and the forward uses the new sizes. Raises ModelLoadError naming
    ``source`` when the record does not fit the model.
    """
    if not isinstance(shapes, Mapping) or shapes.get("shapes_version") != SHAPES_VERSION:
        found = shapes.get("shapes_version") if isinstance(shapes, Mapping) else shapes
        raise ModelLoadError(
            f"{source}: shapes_version {found!r} is not {SHAPES_VERSION} (written by another "
            "version of Secateur?)"
        )
    records = shapes.get("modules")
    if not isinstance(records, Mapping):
        raise ModelLoadError(f"{source}: 'modules' is not a mapping of layer names")
    modules = dict(model.named_modules())
    for name, record in records.items():
        module = modules.get(name)
        if module is None:
            raise ModelLoadError(f"{source}: names layer {name!r}, which the architecture lacks")
        kind = record.get("type") if isinstance(record, Mapping) else None
        if kind != type(module).__name__:
            raise ModelLoadError(
                f"{source}: {name} was a {kind} but the architecture builds a "
                f"{type(module).__name__}"
            )
        for key, value in dict(record.get("attributes", {})).items():
            if not _simple(value):
                raise ModelLoadError(f"{source}: {name}.{key}: {value!r} is not a plain value")
            current = getattr(module, key, None)
            setattr(module, key, tuple(value) if isinstance(current, tuple) else value)
        for key, shape in dict(record.get("tensors", {})).items():
            if not _simple(shape) or isinstance(shape, str | int | float):
                raise ModelLoadError(f"{source}: {name}.{key}: {shape!r} is not a shape")
            if key in module._parameters and module._parameters[key] is not None:
                old = module._parameters[key]
                new = torch.empty(shape, dtype=old.dtype, device=old.device)
                module._parameters[key] = nn.Parameter(new, requires_grad=old.requires_grad)
            elif key in module._buffers and module._buffers[key] is not None:
                old = module._buffers[key]
                module._buffers[key] = torch.empty(shape, dtype=old.dtype, device=old.device)
            else:
                raise ModelLoadError(f"{source}: {name} has no tensor named {key!r}")

"""How the channels of a model hang together: tracing, coupling groups and their checks.

``core.structural`` plans and performs the removal of channels, neurons and heads; this module
holds what both need: Torch-Pruning's dependency graph traced over the model, the inspection
of each root's coupling group (which layers follow it, in which role, and why a group cannot
be removed safely), attention heads and the attributes that describe them, and the equality
check that proves a removal computes what the model computed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from core.errors import UnsupportedError

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
ATTENTION_OPS: tuple[str, ...] = ("bmm", "scaleddotproduct", "attention", "einsum")

TOLERANCE = 1e-4  # relative to the largest output magnitude (float32; wider for halves)

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


# ----------------------------------------------------------------------------- internals
@dataclass
class Heads:
    """A hand-written attention block whose whole heads are removed."""

    block: nn.Module
    name: str
    count_attrs: list[str]
    width_attrs: list[str]
    heads: int
    head_dim: int


@dataclass
class Live:
    """A group bound to the modules of one traced model."""

    plan: Group
    module: nn.Module
    fn: Callable
    width: int  # channels per unit
    items: list = field(default_factory=list)  # Torch-Pruning group items, all channels
    heads: Heads | None = None
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
class Traced:
    graph: Any
    names: dict[Any, str]
    outputs: list[torch.Tensor]
    output_fns: set[Any]
    block_inputs: dict[str, tuple[tuple, dict]]


def torch_pruning():
    """Torch-Pruning, imported on first use (it is only needed for structural pruning)."""
    import torch_pruning

    return torch_pruning


def flatten_tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in flatten_tensors(v)]
    if isinstance(output, list | tuple):
        return [t for v in output for t in flatten_tensors(v)]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [
            t for f in dataclasses.fields(output) for t in flatten_tensors(getattr(output, f.name))
        ]
    return []


def plain_float(tensor: Any) -> bool:
    return (
        isinstance(tensor, torch.Tensor)
        and type(tensor) in (torch.Tensor, nn.Parameter)
        and tensor.is_floating_point()
    )


def trainable_copy(model: nn.Module) -> nn.Module:
    """New module objects and new Parameter objects over the same storage: tracing needs
    gradients, and this leaves the caller's model (and its requires_grad flags) alone."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.detach(), requires_grad=p.is_floating_point())
    for b in model.buffers():
        memo[id(b)] = b
    return copy.deepcopy(model, memo)


def own_parameters_trainable(model: nn.Module) -> dict[tuple[str, str], bool]:
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


def restore_flags(model: nn.Module, flags: dict[tuple[str, str], bool]) -> None:
    default = all(flags.values()) if flags else False
    for mname, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None:
                p.requires_grad_(flags.get((mname, pname), default))
                p.grad = None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.train(mode)


def heads_attr(module: nn.Module, names: Sequence[str]) -> list[str]:
    return [
        n
        for n in names
        if isinstance(getattr(module, n, None), int) and not isinstance(getattr(module, n), bool)
    ]


def trace(model: nn.Module, example: Example) -> Traced:
    """Build Torch-Pruning's dependency graph with one forward on the example; also keep
    the model's outputs and the inputs of every block that declares a head count."""
    tp = torch_pruning()
    args, kwargs = example
    captured: dict[str, Any] = {}
    block_inputs: dict[str, tuple[tuple, dict]] = {}
    hooks = []
    for name, module in model.named_modules():
        if name and heads_attr(module, HEAD_COUNT_ATTRS):

            def keep(mod, a, kw, name=name):
                block_inputs.setdefault(name, (a, kw))

            hooks.append(module.register_forward_pre_hook(keep, with_kwargs=True))

    def forward(m: nn.Module, _inputs: Any) -> list[torch.Tensor]:
        tensors = [t for t in flatten_tensors(m(*args, **kwargs)) if t.grad_fn is not None]
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
            f"({type(exc).__name__}: {error_line(exc)})"
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
    detached = {k: (detach_all(a), detach_all(kw)) for k, (a, kw) in block_inputs.items()}
    return Traced(graph, names, outputs, {t.grad_fn for t in outputs}, detached)


def detach_all(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(detach_all(v) for v in value)
    if isinstance(value, list):
        return [detach_all(v) for v in value]
    if isinstance(value, dict):
        return {k: detach_all(v) for k, v in value.items()}
    return value


def error_line(exc: BaseException, limit: int = 200) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return type(exc).__name__


def root_fn(module: nn.Module) -> Callable:
    tp = torch_pruning()
    if isinstance(module, nn.MultiheadAttention):
        return tp.prune_multihead_attention_out_channels
    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    if is_depthwise(module):
        return tp.prune_depthwise_conv_out_channels
    return tp.prune_conv_out_channels


def is_depthwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups == module.out_channels == module.in_channels
        and module.out_channels > 1
    )


def out_size(module: nn.Module) -> int:
    if isinstance(module, nn.MultiheadAttention):
        return module.embed_dim
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.out_channels


def kind_of(handler: Callable) -> str:
    """A short name for a Torch-Pruning pruning function."""
    tp = torch_pruning()
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


ROLES = {
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


def lcm(values: Iterable[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


class Skip(Exception):
    """A group cannot be pruned safely; the message says why."""


def inspect_root(
    traced: Traced,
    model: nn.Module,
    root: str,
    module: nn.Module,
    items: list,
    shared: set[int],
) -> tuple[list[Coupled], int, Heads | None, list[nn.MultiheadAttention], list[str]]:
    """Check a group item by item: what follows the root, the even-block constraint, and
    whether these are attention heads. Raises Skip with the reason when it is unsafe."""
    tp = torch_pruning()
    OPTYPE = tp.ops.OPTYPE
    n = out_size(module)
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
                raise Skip("its outputs are the model's outputs")
            raise Skip(f"its channels reach the model's outputs through {where}")
        if target.type in (OPTYPE.SPLIT, OPTYPE.UNBIND, OPTYPE.SLICE):
            raise Skip(
                "its channels are split or sliced on the way (torch.split/chunk/unbind or "
                "slicing), which Torch-Pruning does not map reliably"
            )
        if target.type == OPTYPE.PARAMETER:
            pname = traced.graph._param_to_name.get(tmod, "a parameter")
            raise Skip(f"a bare nn.Parameter ({pname}) is coupled with it: not supported")
        if target.type in (OPTYPE.ELEMENTWISE, OPTYPE.EXPAND):
            fn_name = str(getattr(tmod, "_grad_fn", "")).lower()
            if any(op in fn_name for op in ATTENTION_OPS):
                attention_ops = True
            continue
        if target.type in (OPTYPE.RESHAPE, OPTYPE.CONCAT, OPTYPE.CUSTOMIZED):
            continue
        name = traced.names.get(tmod)
        if name is None:
            continue
        kind = kind_of(dep.handler)
        tname = type(tmod).__name__
        if any(id(p) in shared for p in tmod.parameters(recurse=False)):
            raise Skip(f"{name} shares its weights with another layer: not supported")
        weight = getattr(tmod, "weight", None)
        if weight is not None and not plain_float(weight):
            raise Skip(f"{name} is already quantized: remove channels before quantizing")
        if isinstance(tmod, nn.LSTM | nn.GRU | nn.RNN):
            raise Skip(f"{name} is a recurrent layer ({tname}): not supported")
        if kind == "other":
            raise Skip(f"{name} ({tname}) is coupled with it and cannot be pruned safely")
        identity = len(item.idxs) == n and list(item.idxs) == list(item.root_idxs)
        if isinstance(tmod, nn.modules.conv._ConvNd):
            if tmod.transposed:
                raise Skip(f"{name} is a transposed convolution: not supported")
            if tmod.groups > 1 and not is_depthwise(tmod):
                if kind == "depthwise":
                    raise Skip(
                        f"{name} has groups == out_channels but in_channels "
                        f"{tmod.in_channels} != out_channels {tmod.out_channels}; Torch-Pruning "
                        "would treat it as depthwise and break it"
                    )
                channels = tmod.in_channels if kind == "conv_in" else tmod.out_channels
                if not identity or n != channels:
                    raise Skip(
                        f"grouped convolution {name} (groups={tmod.groups}) takes these channels "
                        "through a concatenation or reshape: its groups cannot be kept even"
                    )
                blocks.append(tmod.groups)
        if kind == "layernorm" and len(tmod.normalized_shape) > 1:
            raise Skip(f"{name} normalises over several dimensions: not supported")
        if kind == "groupnorm":
            if not identity or n != tmod.num_channels:
                raise Skip(f"GroupNorm {name} takes these channels through a concatenation")
            blocks.append(tmod.num_groups)
        if kind == "mha":
            if not tmod._qkv_same_embed_dim:
                raise Skip(
                    f"{name} has kdim/vdim different from embed_dim (separate q/k/v "
                    "weights): not supported"
                )
            if not identity or n != tmod.embed_dim:
                raise Skip(f"{name} takes these channels through a concatenation or reshape")
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
            coupled[name] = Coupled(name, tname, ROLES[kind])
        elif ROLES[kind] not in coupled[name].role:
            role = f"{coupled[name].role}, {ROLES[kind]}"
            coupled[name] = dataclasses.replace(coupled[name], role=role)
    heads = None
    if attention_ops and not mhas:
        heads = attention_heads(traced, model, root, module, linears, others, n)
        coupled = {
            k: dataclasses.replace(
                c, role="heads (output)" if c.role == "output features" else "heads (input)"
            )
            for k, c in coupled.items()
        }
        coupled[heads.name] = Coupled(heads.name, type(heads.block).__name__, "num_heads")
        return list(coupled.values()), 1, heads, mhas, notes
    block = lcm(blocks) if blocks else 1
    if n % block:
        raise Skip(f"its {n} channels do not split evenly into {block} groups")
    if block > 1 and n // block == 1:
        raise Skip(
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


def attention_heads(
    traced: Traced,
    model: nn.Module,
    root: str,
    module: nn.Module,
    linears: list[tuple[str, str, Any]],
    others: list[str],
    n: int,
) -> Heads:
    """The attention block whose whole heads this group removes, after checking that its
    weights and its forward agree with its ``num_heads``."""
    if not isinstance(module, nn.Linear):
        raise Skip("attention products couple these channels across heads")
    parts = root.split(".")
    block_name = None
    for i in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:i])
        if heads_attr(model.get_submodule(candidate), HEAD_COUNT_ATTRS):
            block_name = candidate
            break
    if block_name is None:
        raise Skip(
            "attention products couple these channels across heads, and no enclosing block "
            f"has a head-count attribute ({', '.join(HEAD_COUNT_ATTRS[:3])}...) to update"
        )
    block = model.get_submodule(block_name)
    if others:
        raise Skip(f"{others[0]} is coupled with the heads of {block_name}: not supported")
    outside = [name for name, _, _ in linears if not name.startswith(block_name + ".")]
    if outside:
        raise Skip(f"{outside[0]} is outside {block_name} but coupled with its heads")
    for name, _, item in linears:
        if len(item.idxs) != n or list(item.idxs) != list(item.root_idxs):
            raise Skip(
                f"{name} does not line up channel for channel with {root} (fused q/k/v "
                "projections and grouped-query attention are not supported)"
            )
    count_attrs = heads_attr(block, HEAD_COUNT_ATTRS)
    counts = {getattr(block, a) for a in count_attrs}
    if len(counts) != 1:
        raise Skip(f"{block_name} has head counts that disagree: {sorted(counts)}")
    heads = counts.pop()
    if heads < 2:
        raise Skip(f"{block_name} has {heads} head: none can be removed")
    if n % heads:
        raise Skip(f"{root} has {n} outputs, not a multiple of {block_name}'s {heads} heads")
    head_dim = n // heads
    for attr in heads_attr(block, HEAD_DIM_ATTRS):
        if getattr(block, attr) != head_dim:
            raise Skip(
                f"{block_name}.{attr} is {getattr(block, attr)}, but {root} has {n} outputs "
                f"for {heads} heads"
            )
    width_attrs = [a for a in heads_attr(block, INNER_WIDTH_ATTRS) if getattr(block, a) == n]
    found = Heads(block, block_name, count_attrs, width_attrs, heads, head_dim)
    trial_heads(traced, found, linears)
    return found


def trial_heads(traced: Traced, heads: Heads, linears: list[tuple[str, str, Any]]) -> None:
    """Remove the last head from a copy of the block and compare with the block whose last
    head's output is zeroed: a forward that does not follow ``num_heads`` (a constant, or a
    width read elsewhere) shows up here, before anything is changed."""
    inputs = traced.block_inputs.get(heads.name)
    if inputs is None:
        raise Skip(f"{heads.name} is not called as a module in the forward")
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
                lin.weight = nn.Parameter(
                    lin.weight.detach().clone().index_fill_(1, index_tensor(drop), 0)
                )
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
        expected = flatten_tensors(masked(*args, **kwargs))
        try:
            got = flatten_tensors(trial(*args, **kwargs))
        except Exception as exc:
            raise Skip(
                f"{heads.name}'s forward fails once a head is removed ({error_line(exc, 120)}): it "
                "does not follow its num_heads"
            ) from None
    if not same_outputs(expected, got):
        raise Skip(
            f"{heads.name}'s forward does not follow its num_heads (removing one head changes "
            "what the others compute)"
        )


def index_tensor(values: Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(list(values), dtype=torch.long)


def same_outputs(expected: list[torch.Tensor], got: list[torch.Tensor]) -> bool:
    if len(expected) != len(got):
        return False
    for a, b in zip(expected, got):
        if a.shape != b.shape:
            return False
        if a.is_floating_point():
            if not a.numel():
                continue
            scale = max(1.0, float(a.detach().abs().max()))
            tolerance = max(TOLERANCE, 50 * torch.finfo(a.dtype).eps)
            if float((a.detach() - b.detach()).abs().max()) > tolerance * scale:
                return False
        elif not torch.equal(a, b):
            return False
    return True


def keep_count(units: int, requested_remove: int, width: int, round_to: int) -> int:
    """Units kept: never fewer than asked for, and the kept channel count a multiple of
    ``round_to`` where possible (otherwise everything is kept)."""
    kept = max(units - requested_remove, 1)
    multiple = round_to // math.gcd(round_to, width)
    kept = -(-kept // multiple) * multiple
    return min(kept, units)

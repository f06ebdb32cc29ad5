"""Which channels go: importance scores per channel and per head, and the masks that give a
removal's reference output (the channels to remove zeroed, norms restricted to the kept ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.coupling import (
    Batches,
    Example,
    Live,
    flatten_tensors,
    index_tensor,
    keep_count,
    kind_of,
    out_size,
)
from core.errors import DataError, UnsupportedError


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
    ix = index_tensor(idxs)
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


def channel_scores(entry: Live, importance: str, seed: int) -> torch.Tensor:
    """Importance of each root channel: the mean over coupled layers of their per-channel
    magnitude (l1, l2) or |weight x gradient| (taylor); seeded noise for random."""
    n = out_size(entry.module)
    if importance == "random":
        return torch.rand(n, generator=torch.Generator().manual_seed(seed))
    metric = _metric(importance)
    total = torch.zeros(n, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.float64)
    for item in entry.items:
        module = item.dep.target.module
        if not isinstance(module, nn.Module) or any(r is None for r in item.root_idxs):
            continue
        scores = _item_scores(module, kind_of(item.dep.handler), list(item.idxs), metric)
        if scores is None:
            continue
        roots = index_tensor(item.root_idxs)
        total.scatter_add_(0, roots, scores.double())
        count.scatter_add_(0, roots, torch.ones(len(roots), dtype=torch.float64))
    return (total / count.clamp(min=1)).float()


def unit_scores(entry: Live, channel: torch.Tensor) -> torch.Tensor:
    if entry.plan.unit == "heads":
        return channel.view(entry.plan.size, entry.width).sum(1)
    if entry.plan.blocks > 1:
        return channel.view(entry.plan.blocks, -1).mean(0)
    return channel


def choose(
    live: list[Live], scores: list[torch.Tensor], scope: str, round_to: int
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
    budget = sum((e.units - _units_kept(e)) * unit_width(e) for e in live)
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
            removed += unit_width(live[gi])
    out = []
    for entry, chosen, s in zip(live, taken, scores):
        kept = keep_count(entry.units, len(chosen), unit_width(entry), round_to)
        chosen = sorted(chosen, key=lambda u: float(s[u]))[: entry.units - kept]
        out.append(sorted(chosen))
    return out


def _units_kept(entry: Live) -> int:
    if entry.plan.unit == "heads":
        return entry.plan.keep
    return entry.plan.keep // entry.plan.blocks


def unit_width(entry: Live) -> int:
    return entry.width if entry.plan.unit == "heads" else entry.plan.blocks


def taylor_gradients(model: nn.Module, data: Batches, max_samples: int = 256) -> None:
    """Accumulate gradients of a cross-entropy loss (labels, or the model's own top-1 when
    there are none) over up to ``max_samples`` samples."""
    seen = 0
    source = getattr(data, "source", "data")
    with torch.inference_mode(False), torch.enable_grad():
        for args, kwargs, y in data.batches(32):
            outputs = [t for t in flatten_tensors(model(*args, **kwargs)) if t.is_floating_point()]
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
def set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
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
    set_tensor(module, name, tensor.detach().clone().index_fill_(dim, idxs, 0))


def mask_item(module: nn.Module, kind: str, idxs: list[int]) -> None:
    """Zero what the removal of channels ``idxs`` will delete from one coupled layer, so the
    model computes what it will compute once they are gone."""
    ix = index_tensor(idxs)
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
        set_tensor(module, "weight", w)
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


def restricted_norm(module: nn.Module, kind: str, idxs: list[int]) -> Any:
    """A forward hook that makes a LayerNorm/GroupNorm normalise over its kept features only,
    as it will once the others are removed."""
    size = module.normalized_shape[-1] if kind == "layernorm" else module.num_channels
    keep = index_tensor(sorted(set(range(size)) - set(idxs)))

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
def weight_shape(module: nn.Module) -> tuple[int, ...] | None:
    weight = getattr(module, "weight", None)
    if weight is None and isinstance(module, nn.MultiheadAttention):
        weight = module.in_proj_weight
    if isinstance(weight, torch.Tensor):
        return tuple(weight.shape)
    return None


def own_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def run_example(model: nn.Module, example: Example) -> list[torch.Tensor]:
    args, kwargs = example
    with torch.no_grad():
        return [t.detach() for t in flatten_tensors(model(*args, **kwargs))]

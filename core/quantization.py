"""Quantization schemes: torchao (default) and the legacy torch.ao.quantization path.

| scheme            | backend  | what it does                                                |
|-------------------|----------|-------------------------------------------------------------|
| int8_dynamic      | torchao  | Int8DynamicActivationInt8WeightConfig on nn.Linear          |
| int8_dynamic      | legacy   | torch.ao dynamic quantized Linear (fbgemm/x86 kernels)      |
| int8_weight_only  | torchao  | Int8WeightOnlyConfig on nn.Linear (often slower on CPUs)    |
| fp16 / bf16       | (cast)   | weights cast, inputs cast in and outputs cast back per layer |

A selected layer a scheme cannot handle is left alone and reported with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from core import compat
from core.errors import RecipeError, UnsupportedError
from core.inventory import quantization_of, select
from core.recipe import Quantize

CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class QuantPlan:
    """Layers to quantize and selected layers left alone, with why."""

    layers: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def describe(q: Quantize) -> str:
    """How the window and reports name a scheme: 'int8_dynamic (torchao, per_channel)'."""
    if q.scheme in CAST_DTYPES:
        return q.scheme
    return f"{q.scheme} ({q.backend}, {q.granularity})"


def plan_quantization(model: nn.Module, q: Quantize, source: str) -> QuantPlan:
    names, misses = select(model, q.layers, q.types)
    for field_name, value in misses:
        raise RecipeError(f"{source}: quantize.{field_name}: {value!r} matches no layer")
    plan = QuantPlan()
    modules = dict(model.named_modules())
    for name in names:
        reason = _cannot(modules[name], q)
        if reason is None:
            plan.layers.append(name)
        else:
            plan.skipped[name] = reason
    return plan


def _cannot(module: nn.Module, q: Quantize) -> str | None:
    if quantization_of(module) is not None:
        return f"already quantized ({quantization_of(module)})"
    weight = getattr(module, "weight", None)
    if q.scheme in CAST_DTYPES:
        if not any(p.is_floating_point() for p in module.parameters(recurse=False)):
            return f"{q.scheme} casts weights and {type(module).__name__} has none of its own"
        return None
    if not isinstance(module, nn.Linear):
        return f"{q.scheme} ({q.backend}) handles nn.Linear only, not {type(module).__name__}"
    if not isinstance(weight, torch.Tensor) or weight.dtype != torch.float32:
        return f"{q.scheme} needs a float32 weight"
    return None


def check_machine(q: Quantize) -> None:
    """Raise UnsupportedError when this machine's torch cannot run the scheme."""
    if q.backend == "legacy":
        engines = torch.backends.quantized.supported_engines
        usable = [e for e in engines if e in ("x86", "fbgemm", "qnnpack", "onednn")]
        if not usable:
            raise UnsupportedError(
                "quantize.backend: 'legacy' needs a quantized engine and this torch build "
                f"has none ({engines}); use backend: torchao"
            )
    elif q.scheme in ("int8_dynamic", "int8_weight_only"):
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
    """Quantize one layer of ``model`` in place (swapping the module for the legacy path)."""
    if q.scheme in CAST_DTYPES:
        cast_layer(module, CAST_DTYPES[q.scheme])
    elif q.backend == "legacy":
        tq, nnqd = compat.legacy()
        module.qconfig = (
            tq.per_channel_dynamic_qconfig
            if q.granularity == "per_channel"
            else tq.default_dynamic_qconfig
        )
        with compat.quiet():
            swapped = nnqd.Linear.from_float(module)
        del module.qconfig
        _set_submodule(model, name, swapped)
    else:
        ao = compat.torchao()
        gran = ao.PerRow() if q.granularity == "per_channel" else ao.PerTensor()
        if q.scheme == "int8_dynamic":
            config = ao.Int8DynamicActivationInt8WeightConfig(granularity=gran)
        else:
            config = ao.Int8WeightOnlyConfig(granularity=gran)
        with compat.quiet():
            ao.quantize_(module, config, filter_fn=lambda m, fqn: m is module)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _cast_in(module: nn.Module, args: tuple, kwargs: dict, *, dtype: torch.dtype):
    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        return value

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _cast_out(module: nn.Module, args: tuple, kwargs: dict, output, *, dtype: torch.dtype):
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return output.to(dtype)
    return output


def cast_layer(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast the layer's own parameters and buffers to ``dtype``, with hooks so its neighbours
    still see float32: inputs are cast on the way in and the output back on the way out."""
    for pname, param in list(module._parameters.items()):
        if param is not None and param.is_floating_point():
            module._parameters[pname] = nn.Parameter(param.detach().to(dtype), requires_grad=False)
    for bname, buf in list(module._buffers.items()):
        if buf is not None and buf.is_floating_point():
            module._buffers[bname] = buf.to(dtype)
    module.register_forward_pre_hook(functools.partial(_cast_in, dtype=dtype), with_kwargs=True)
    module.register_forward_hook(
        functools.partial(_cast_out, dtype=torch.float32), with_kwargs=True
    )

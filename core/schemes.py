"""Quantization schemes and backends: each declared once, with what implements it.

| scheme            | backends         | what it does                                             |
|-------------------|------------------|----------------------------------------------------------|
| int8_dynamic      | torchao, legacy  | int8 weights, activations quantized on the fly (Linear)  |
| int8_weight_only  | torchao          | int8 weights, float activations (Linear)                 |
| fp16 / bf16       | (a cast)         | weights cast; inputs cast in and outputs back per layer  |

A scheme entry says which backends may run it (none for a plain cast), which layers it
cannot handle and why, and how to apply it to one layer. The recipe's ``scheme`` and
``backend`` types, the command line's choices and the window's combo boxes read these
registries. torch, torchao and torch.ao are imported only when a scheme is applied.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import compat
from core.errors import UnsupportedError
from core.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Backend:
    """Who runs a scheme's kernels. ``deprecated`` backends are said so to the user."""

    name: str
    label: str
    tooltip: str
    library: str  # what the user would import: torchao, torch.ao.quantization
    deprecated: bool = False


BACKENDS: Registry[Backend] = Registry(
    "quantization backend",
    [
        Backend(
            "torchao",
            "torchao",
            "PyTorch's current quantization library (the default)",
            "torchao",
        ),
        Backend(
            "legacy",
            "legacy torch.ao",
            "torch.ao.quantization's fbgemm/x86 kernels: often the fastest int8 path on a CPU, "
            "but deprecated upstream (int8 dynamic only)",
            "torch.ao.quantization",
            deprecated=True,
        ),
        Backend(
            "onnxruntime",
            "ONNX Runtime",
            "ONNX Runtime quantizes every MatMul/Gemm while the model is exported (--format "
            "onnx only); often the fastest int8 on a CPU, in ONNX Runtime",
            "onnxruntime",
        ),
    ],
)
EXPORT_BACKEND = "onnxruntime"  # quantizes at export: nothing is quantized in torch
DEFAULT_BACKEND = "torchao"


@dataclass(frozen=True)
class Scheme:
    """One quantization scheme. ``cannot(module, q)`` says why a layer cannot take it (or
    None); ``apply(model, module, name, q)`` quantizes that one layer in place."""

    name: str
    label: str
    tooltip: str
    backends: tuple[str, ...]
    cannot: Callable[[nn.Module, Any], str | None]
    apply: Callable[[nn.Module, nn.Module, str, Any], None]

    @property
    def is_cast(self) -> bool:
        """A plain dtype cast: no backend, no granularity."""
        return not self.backends


def _int8_cannot(module: nn.Module, q: Any) -> str | None:
    import torch
    from torch import nn

    if not isinstance(module, nn.Linear):
        return f"{q.scheme} ({q.backend}) handles nn.Linear only, not {type(module).__name__}"
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dtype != torch.float32:
        return f"{q.scheme} needs a float32 weight"
    return None


def _cast_cannot(module: nn.Module, q: Any) -> str | None:
    if not any(p.is_floating_point() for p in module.parameters(recurse=False)):
        return f"{q.scheme} casts weights and {type(module).__name__} has none of its own"
    return None


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _apply_int8(model: nn.Module, module: nn.Module, name: str, q: Any) -> None:
    if q.backend == EXPORT_BACKEND:
        raise UnsupportedError(
            f"{name}: backend onnxruntime quantizes while exporting to ONNX, not in torch"
        )
    if q.backend == "legacy":
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
        return
    ao = compat.torchao()
    gran = ao.PerRow() if q.granularity == "per_channel" else ao.PerTensor()
    if q.scheme == "int8_dynamic":
        config = ao.Int8DynamicActivationInt8WeightConfig(granularity=gran)
    else:
        config = ao.Int8WeightOnlyConfig(granularity=gran)
    with compat.quiet():
        ao.quantize_(module, config, filter_fn=lambda m, fqn: m is module)


def _cast_in(module: nn.Module, args: tuple, kwargs: dict, *, dtype: torch.dtype) -> Any:
    def cast(value: Any) -> Any:
        if getattr(value, "is_floating_point", None) and value.is_floating_point():
            return value.to(dtype)
        return value

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _cast_out(
    module: nn.Module, args: tuple, kwargs: dict, output: Any, *, dtype: torch.dtype
) -> Any:
    if getattr(output, "is_floating_point", None) and output.is_floating_point():
        return output.to(dtype)
    return output


def cast_layer(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast the layer's own parameters and buffers to ``dtype``, with hooks so its neighbours
    still see float32: inputs are cast on the way in and the output back on the way out."""
    import torch
    from torch import nn

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


def _caster(dtype_name: str) -> Callable[[nn.Module, nn.Module, str, Any], None]:
    def apply(model: nn.Module, module: nn.Module, name: str, q: Any) -> None:
        import torch

        cast_layer(module, getattr(torch, dtype_name))

    return apply


SCHEMES: Registry[Scheme] = Registry(
    "quantization scheme",
    [
        Scheme(
            "int8_dynamic",
            "int8 dynamic",
            "int8 weights, activations quantized on the fly",
            ("torchao", "legacy", "onnxruntime"),
            _int8_cannot,
            _apply_int8,
        ),
        Scheme(
            "int8_weight_only",
            "int8 weight-only",
            "int8 weights, float activations (a smaller file; often slower on CPUs)",
            ("torchao",),
            _int8_cannot,
            _apply_int8,
        ),
        Scheme(
            "fp16",
            "float16",
            "weights cast to half precision",
            (),
            _cast_cannot,
            _caster("float16"),
        ),
        Scheme(
            "bf16",
            "bfloat16",
            "weights cast to bfloat16",
            (),
            _cast_cannot,
            _caster("bfloat16"),
        ),
    ],
)

GRANULARITIES: tuple[tuple[str, str], ...] = (
    ("per_channel", "per channel"),
    ("per_tensor", "per tensor"),
)


@dataclass(frozen=True)
class Candidate:
    """One choice the planner measures for a layer: a scheme with its backend and
    granularity, or keeping the layer float (``scheme`` None). Named ``scheme:backend`` or
    ``scheme:backend:per_tensor`` (per channel is the default), ``bf16``, ``fp16``, ``float``."""

    name: str
    label: str
    tooltip: str
    scheme: str | None
    backend: str = DEFAULT_BACKEND
    granularity: str = "per_channel"

    def settings(self) -> dict[str, str] | None:
        """The quantize-rule fields this candidate stands for (None: keep float)."""
        if self.scheme is None:
            return None
        if SCHEMES[self.scheme].is_cast:
            return {"scheme": self.scheme}
        return {"scheme": self.scheme, "backend": self.backend, "granularity": self.granularity}


KEEP_FLOAT = "float"

CANDIDATES: Registry[Candidate] = Registry(
    "plan candidate",
    [
        Candidate(KEEP_FLOAT, "float", "keep the layer as it is", None),
        Candidate(
            "int8_dynamic:legacy",
            "int8 legacy",
            "torch.ao dynamic int8, per channel (fbgemm/x86)",
            "int8_dynamic",
            "legacy",
        ),
        Candidate(
            "int8_dynamic:legacy:per_tensor",
            "int8 legacy/tensor",
            "torch.ao dynamic int8, one scale per tensor",
            "int8_dynamic",
            "legacy",
            "per_tensor",
        ),
        Candidate(
            "int8_dynamic:torchao",
            "int8 torchao",
            "torchao dynamic int8, per row",
            "int8_dynamic",
        ),
        Candidate(
            "int8_weight_only:torchao",
            "int8 weight-only",
            "torchao int8 weights, float activations",
            "int8_weight_only",
        ),
        Candidate("bf16", "bf16", "weights cast to bfloat16", "bf16"),
        Candidate("fp16", "fp16", "weights cast to float16", "fp16"),
    ],
)

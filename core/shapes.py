"""The shapes of a model whose channels were removed, as JSON data, and back.

``remove_channels`` changes layer sizes, so the user's ``--arch`` alone no longer rebuilds
the model. ``shapes_of`` records, for every changed module, its constructor-relevant attributes
and tensor shapes; ``apply_shapes`` resizes a freshly built architecture (on the meta device
too) to them, so the pruned weights load with ``load_state_dict(strict=True)``: weights-only,
no pickled module state (not Torch-Pruning's ``tp.state_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from core.errors import ModelLoadError, UnsupportedError

SHAPES_VERSION = 1

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

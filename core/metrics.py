"""Measurements taken on the real artifact, the same way before and after compression.

- ``state_dict_bytes``: bytes of ``torch.save(model.state_dict())``.
- ``latency_ms``: median of at least 10 forward passes after warm-up, under
  torch.inference_mode, same thread count and same input before and after.
- fidelity (``core.fidelity``): compressed vs original outputs on the same inputs.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.data import Dataset
from core.errors import Cancelled, DataError, first_line
from core.fidelity import looks_like_logits
from core.inventory import layer_weight, quantization_of

EVAL_BATCH = 256


class CountingSink:
    """A write-only file that counts bytes, so sizes need no memory or disk."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        n = len(data)
        self.size += n
        return n

    def flush(self) -> None:
        pass


def state_dict_bytes(model: nn.Module) -> int:
    sink = CountingSink()
    torch.save(model.state_dict(), sink)
    return sink.size


@dataclass
class ModelStats:
    """Sizes and sparsity of a model, taken in one pass over its tensors."""

    parameters: int
    nonzero_parameters: int
    state_dict_bytes: int
    sparsity: dict[str, float]  # per layer with a weight: fraction of exact zeros

    def numbers(self) -> dict[str, int]:
        return {
            "parameters": self.parameters,
            "nonzero_parameters": self.nonzero_parameters,
            "state_dict_bytes": self.state_dict_bytes,
        }


_PLAIN = (torch.Tensor, nn.Parameter)
_STATS_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[Any, ModelStats]] = (
    weakref.WeakKeyDictionary()
)


def _fingerprint(model: nn.Module) -> Any:
    """Identity and in-place version of every tensor: changes whenever a weight changes."""
    try:
        return tuple(
            (k, v.data_ptr(), v._version, tuple(v.shape), v.dtype) if type(v) in _PLAIN else k
            for k, v in model.state_dict().items()
        )
    except Exception:
        return None


def model_stats(model: nn.Module, cache: bool = False) -> ModelStats:
    """Parameters, nonzero parameters, per-layer sparsity and state-dict bytes.

    With ``cache`` the result is remembered for this model object until one of its tensors
    changes (the engine never changes the original, so its "before" numbers are taken once).
    """
    key = _fingerprint(model) if cache else None
    if key is not None:
        try:
            hit = _STATS_CACHE.get(model)
        except TypeError:
            hit = None
        if hit is not None and hit[0] == key:
            return hit[1]
    total = nonzero = 0
    sparsity: dict[str, float] = {}
    for name, module in model.named_modules():
        weight = layer_weight(module)
        skip: set[str] = set()
        if weight is not None and weight.numel():
            nz = int(torch.count_nonzero(weight))
            sparsity[name] = 1.0 - nz / weight.numel()
            total += weight.numel()
            nonzero += nz
            skip = {"weight", "weight_orig"}
        if quantization_of(module) == "int8_dynamic (legacy)":
            bias = module.bias()
            tensors = [bias] if bias is not None else []
        else:
            tensors = [p for n, p in module.named_parameters(recurse=False) if n not in skip]
        for tensor in tensors:
            data = getattr(tensor, "qdata", tensor)
            total += data.numel()
            nonzero += int(torch.count_nonzero(data))
    stats = ModelStats(total, nonzero, state_dict_bytes(model), sparsity)
    if key is not None:
        try:
            _STATS_CACHE[model] = (key, stats)
        except TypeError:
            pass
    return stats


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, nonzero parameters) over every module's own parameters."""
    stats = model_stats(model)
    return stats.parameters, stats.nonzero_parameters


def call(model: nn.Module, args: tuple, kwargs: dict) -> Any:
    return model(*args, **kwargs)


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """Every tensor in a model output: tensors, tuples, lists, dicts, dataclasses."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in flatten_outputs(v)]
    if isinstance(output, list | tuple):
        return [t for v in output for t in flatten_outputs(v)]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [
            t for f in dataclasses.fields(output) for t in flatten_outputs(getattr(output, f.name))
        ]
    return []


def run_outputs(
    model: nn.Module, data: Dataset, batch_size: int = EVAL_BATCH
) -> list[list[torch.Tensor]]:
    """The model's outputs per batch, as flat tensor lists (float32, on the CPU)."""
    outs = []
    with torch.inference_mode():
        for args, kwargs, _ in data.batches(batch_size):
            try:
                result = call(model, args, kwargs)
            except Exception as exc:
                raise DataError(
                    f"{data.source}: x does not fit the model ({first_line(exc, 200)})"
                ) from None
            tensors = [t.detach().float() for t in flatten_outputs(result)]
            if not tensors:
                raise DataError(f"{data.source}: the model returned no tensors for this input")
            outs.append(tensors)
    return outs


def accuracy(outputs: list[list[torch.Tensor]], data: Dataset) -> float | None:
    """Top-1 accuracy against the labels, or None without labels or logits."""
    if data.y is None or not looks_like_logits(outputs):
        return None
    logits = torch.cat([b[0] for b in outputs])
    classes = logits.shape[1]
    top = int(data.y.max())
    if top >= classes:
        raise DataError(
            f"{data.source}: y holds label {top} but the model outputs {classes} classes"
        )
    return float((logits.argmax(1) == data.y).float().mean())


def latency_ms(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    min_runs: int = 10,
    max_runs: int = 200,
    budget_s: float = 0.5,
    warmup: int = 3,
) -> float:
    """Median wall time of one forward pass in milliseconds (>= ``min_runs`` runs)."""
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            call(model, args, kwargs)
        start = time.perf_counter()
        while len(times) < min_runs or (
            len(times) < max_runs and time.perf_counter() - start < budget_s
        ):
            t0 = time.perf_counter()
            call(model, args, kwargs)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def paired_latency_ms(
    first: nn.Module,
    second: nn.Module,
    args: tuple,
    kwargs: dict,
    min_runs: int = 10,
    max_runs: int = 200,
    budget_s: float = 1.0,
    warmup: int = 3,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[float, float]:
    """Median forward time of two models, measured alternately on the same input.

    Interleaving puts both under the same machine load (these machines are shared), so
    their ratio is trustworthy even when the absolute numbers wander.
    """
    times: tuple[list[float], list[float]] = ([], [])
    models = (first, second)
    with torch.inference_mode():
        for model in models:
            for _ in range(warmup):
                call(model, args, kwargs)
        start = time.perf_counter()
        while len(times[0]) < min_runs or (
            len(times[0]) < max_runs and time.perf_counter() - start < budget_s
        ):
            if should_stop is not None and should_stop():
                raise Cancelled()
            for model, bucket in zip(models, times):
                for _ in range(3):
                    t0 = time.perf_counter()
                    call(model, args, kwargs)
                    bucket.append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1000.0, statistics.median(times[1]) * 1000.0

"""Output fidelity: how closely the compressed model's outputs follow the original's.

Each metric is declared once: its report key, label, display format, ideal value, whether lower
is better, and how it is computed from the two models' outputs on the same inputs (every output
tensor flattened into one vector). The report, the command line's table and the window's
Metrics tab all read this registry; adding a metric is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.registry import Registry

if TYPE_CHECKING:
    import torch

Outputs = list[list["torch.Tensor"]]
"""A model's outputs per batch, each batch a flat list of float tensors."""


@dataclass(frozen=True)
class Flat:
    """Both models' outputs, flattened to float64 vectors, and per batch for logits."""

    reference: Outputs
    candidate: Outputs
    a: torch.Tensor
    b: torch.Tensor


@dataclass(frozen=True)
class FidelityMetric:
    """One fidelity number of the report's ``fidelity`` section."""

    name: str  # the report key
    label: str
    tooltip: str
    fmt: str  # "frac" (0.9876) or "pct" (98.76%)
    ideal: float  # the value when the outputs are identical
    lower_is_better: bool
    compute: Callable[[Flat], float | None]


def looks_like_logits(outputs: Outputs) -> bool:
    """One (batch, classes) tensor per batch, with more than one class."""
    first = outputs[0]
    return len(first) == 1 and first[0].dim() == 2 and first[0].shape[1] > 1


def _cosine(f: Flat) -> float:
    norm_a, norm_b = f.a.norm(), f.b.norm()
    if norm_a == 0 and norm_b == 0:
        return 1.0
    if norm_a == 0 or norm_b == 0:
        return 0.0
    return float(f.a.dot(f.b) / (norm_a * norm_b))


def _relative_error(f: Flat) -> float:
    norm_a = f.a.norm()
    diff = (f.a - f.b).norm()
    return float(diff / norm_a) if norm_a > 0 else float(diff)


def _top1(f: Flat) -> float | None:
    if not (looks_like_logits(f.reference) and looks_like_logits(f.candidate)):
        return None
    import torch

    ra = torch.cat([x[0] for x in f.reference]).argmax(1)
    rb = torch.cat([x[0] for x in f.candidate]).argmax(1)
    return float((ra == rb).float().mean())


FIDELITY_METRICS: Registry[FidelityMetric] = Registry(
    "fidelity metric",
    [
        FidelityMetric(
            "cosine_similarity",
            "Cosine similarity",
            "Cosine of the angle between the original's and the result's outputs (1 = same)",
            "frac",
            1.0,
            False,
            _cosine,
        ),
        FidelityMetric(
            "relative_error",
            "Relative error",
            "|result - original| / |original| over all outputs (0 = same)",
            "frac",
            0.0,
            True,
            _relative_error,
        ),
        FidelityMetric(
            "top1_agreement",
            "Top-1 agreement",
            "Share of samples whose predicted class is the original's (class logits only)",
            "pct",
            1.0,
            False,
            _top1,
        ),
    ],
)


def empty() -> dict[str, float | None]:
    """Every fidelity key, unmeasured."""
    return {m.name: None for m in FIDELITY_METRICS}


def fidelity(reference: Outputs, candidate: Outputs) -> dict[str, float | None]:
    """Every registered metric of ``candidate`` against ``reference`` (None where the outputs
    differ in size, or where a metric does not apply)."""
    import torch

    a = torch.cat([t.reshape(-1) for batch in reference for t in batch]).double()
    b = torch.cat([t.reshape(-1) for batch in candidate for t in batch]).double()
    if a.shape != b.shape:
        return empty()
    flat = Flat(reference, candidate, a, b)
    return {m.name: m.compute(flat) for m in FIDELITY_METRICS}

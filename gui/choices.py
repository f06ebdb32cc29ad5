"""What the user can choose in the window, as combo-box entries read from core's registries.

Pruning methods (``core.methods``), quantization schemes, backends and granularities
(``core.schemes``), fine-tune losses (the recipe's type) and save formats (``core.formats``)
are declared once in core; this module only shapes them for the settings panel, the sweep
controller and the save dialog. A new entry in a registry appears here with no change.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from core.formats import SAVE_FORMATS as FORMAT_REGISTRY
from core.methods import CHANNEL_SCOPES, IMPORTANCES, PRUNE_METHODS
from core.recipe import AUTO, NORM_NAMES, Finetune
from core.schemes import BACKENDS as BACKEND_REGISTRY
from core.schemes import CANDIDATES, DEFAULT_BACKEND, KEEP_FLOAT
from core.schemes import GRANULARITIES as GRANULARITY_NAMES
from core.schemes import SCHEMES as SCHEME_REGISTRY
from gui.layer_selection import LayerScheme


@dataclass(frozen=True)
class Choice:
    """One entry of a combo box: the value the recipe holds, what the user reads, a tip."""

    value: str
    label: str
    tip: str = ""


@dataclass(frozen=True)
class MethodChoice(Choice):
    """A pruning method the settings panel offers (one per checked layer)."""

    structured: bool = False  # zeroes whole channels: the dimension applies
    uses_norm: bool = False  # ranks channels by an Ln norm: n applies
    removes: bool = False  # removes channels (shapes change): importance, scope, round_to


@dataclass(frozen=True)
class SchemeChoice(Choice):
    """A quantization scheme: which backends and whether a granularity applies."""

    backends: tuple[str, ...] = ()
    granular: bool = False


@dataclass(frozen=True)
class FormatChoice(Choice):
    """A save format: ``label`` is the file dialog's filter, ``suffix`` the default one."""

    suffix: str = ".pt"


# The panel's "Global" scope is the method whose scope is global; the combo lists the others.
GLOBAL_METHOD = next(m.name for m in PRUNE_METHODS if m.scope == "global")
DEFAULT_METHOD = next(m.name for m in PRUNE_METHODS if m.scope == "layer")

METHODS: tuple[MethodChoice, ...] = tuple(
    MethodChoice(m.name, m.label, m.tooltip, m.structured, "n" in m.options, m.removes)
    for m in PRUNE_METHODS
    if m.scope == "layer"
)
_IMPORTANCE_TIPS = {
    "l1": "L1 norm of each channel's weights",
    "l2": "L2 norm of each channel's weights (the default)",
    "taylor": "First-order Taylor: |weight \u00d7 gradient| on the training data (or the "
    "evaluation data); the channels the loss needs least go",
    "random": "Random channels (a baseline to compare with)",
}
IMPORTANCES_SHOWN: tuple[Choice, ...] = tuple(
    Choice(v, v, _IMPORTANCE_TIPS.get(v, "")) for v in IMPORTANCES
)
"""remove_channels: how channels are ranked (``core.methods.IMPORTANCES``)."""
_SCOPE_LABELS = {
    "layer": ("in each layer", "Each checked layer loses its own fraction of channels"),
    "global": (
        "across checked layers",
        "One ranking across every checked layer: the fraction of all their channels goes, "
        "more from some layers than others",
    ),
}
CHANNEL_SCOPES_SHOWN: tuple[Choice, ...] = tuple(
    Choice(v, *_SCOPE_LABELS.get(v, (v, ""))) for v in CHANNEL_SCOPES
)
"""remove_channels: one ranking per layer or across layers (``core.methods.CHANNEL_SCOPES``)."""
DEFAULT_IMPORTANCE, DEFAULT_CHANNEL_SCOPE = "l2", "layer"
SCHEMES: tuple[SchemeChoice, ...] = (
    *(SchemeChoice(s.name, s.label, s.tooltip, s.backends, not s.is_cast) for s in SCHEME_REGISTRY),
    SchemeChoice(
        AUTO,
        "auto (measured plan)",
        "Measure every candidate scheme of each selected layer on this machine and keep the "
        "fastest plan whose measured drop stays within the max drop",
    ),
    SchemeChoice(
        KEEP_FLOAT,
        "keep float",
        "Leave the selected layers float; the Quant column's per-layer choices still apply",
    ),
)
"""The settings panel's schemes: the registry's, then a measured plan and keeping float."""
BACKENDS: tuple[Choice, ...] = tuple(Choice(b.name, b.label, b.tooltip) for b in BACKEND_REGISTRY)
GRANULARITIES: tuple[Choice, ...] = tuple(Choice(v, label) for v, label in GRANULARITY_NAMES)
_LOSS_TIPS = {
    "auto": "cross-entropy when the data has labels, else distillation",
    "cross_entropy": "train on the labels",
    "distillation": "match the original model's outputs",
}
FINETUNE_LOSSES: tuple[Choice, ...] = tuple(
    Choice(v, v.replace("_", "-"), _LOSS_TIPS.get(v, ""))
    for v in typing.get_args(Finetune.model_fields["loss"].annotation)
)
NORMS = ("1", "2", *NORM_NAMES)

SAVE_FORMATS: tuple[FormatChoice, ...] = tuple(
    FormatChoice(f.name, f.dialog_filter, f.tooltip, f.suffix) for f in FORMAT_REGISTRY
)
SAVE_FILTERS = {f.value: f.label for f in SAVE_FORMATS}
SAVE_SUFFIX = {f.value: f.suffix for f in SAVE_FORMATS}


def method(value: str) -> MethodChoice | None:
    """The method entry for ``value`` (None for the global method and unknown names)."""
    return next((m for m in METHODS if m.value == value), None)


def is_structured(value: str) -> bool:
    entry = method(value)
    return entry is not None and entry.structured


def uses_norm(value: str) -> bool:
    entry = method(value)
    return entry is not None and entry.uses_norm


def removes_channels(value: str) -> bool:
    """Whether the method removes channels (its options: importance, scope, round_to)."""
    entry = method(value)
    return entry is not None and entry.removes


def scheme(value: str) -> SchemeChoice | None:
    return next((s for s in SCHEMES if s.value == value), None)


def scheme_label(value: str) -> str:
    """What the user reads for a scheme ('int8 dynamic'); the value itself when unknown."""
    entry = scheme(value)
    return entry.label if entry is not None else value


# ------------------------------------------------------------------ the Quant column
@dataclass(frozen=True)
class LayerSchemeChoice(Choice):
    """One entry of the Quant column's editor: a plan candidate as a per-layer scheme."""

    scheme: LayerScheme = field(default_factory=lambda: LayerScheme(KEEP_FLOAT))


def _layer_scheme(candidate_name: str) -> LayerScheme:
    fields = CANDIDATES[candidate_name].settings()
    if fields is None:
        return LayerScheme(KEEP_FLOAT)
    return LayerScheme(
        fields["scheme"],
        fields.get("backend", DEFAULT_BACKEND),
        fields.get("granularity", "per_channel"),
    )


LAYER_SCHEMES: tuple[LayerSchemeChoice, ...] = tuple(
    LayerSchemeChoice(c.name, c.label, c.tooltip, _layer_scheme(c.name)) for c in CANDIDATES
)
"""What the Quant column offers: keep float and every plan candidate (core.schemes)."""
SHORT_SCHEMES = {"int8_dynamic": "int8 dyn.", "int8_weight_only": "int8 w-only"}


def layer_scheme_of(candidate_name: str) -> LayerScheme:
    """The per-layer scheme a plan candidate stands for."""
    return _layer_scheme(candidate_name)


def layer_scheme_choice(scheme: LayerScheme) -> LayerSchemeChoice | None:
    """The Quant column's entry for a scheme (None: no candidate is exactly it)."""
    normal = normalized(scheme)
    return next((c for c in LAYER_SCHEMES if c.scheme == normal), None)


def normalized(scheme: LayerScheme) -> LayerScheme:
    """A cast or float has no backend or granularity: compare them without."""
    entry = SCHEME_REGISTRY.get(scheme.scheme)
    if scheme.scheme == KEEP_FLOAT or (entry is not None and entry.is_cast):
        return LayerScheme(scheme.scheme)
    return scheme


def short_scheme(scheme: LayerScheme) -> str:
    """What the Quant column shows: 'int8 dyn.', 'int8 legacy', 'int8 legacy/t', 'bf16', 'float'."""
    normal = normalized(scheme)
    text = SHORT_SCHEMES.get(normal.scheme, normal.scheme)
    if normal.backend != DEFAULT_BACKEND:
        text = (
            f"int8 {normal.backend}"
            if normal.scheme == "int8_dynamic"
            else f"{text} {normal.backend}"
        )
    if normal.granularity != "per_channel":
        text += "/t"
    return text


def scheme_from_label(label: str) -> LayerScheme:
    """'int8_dynamic (legacy, per_channel)' (``core.quantization.describe``) -> its scheme."""
    scheme, _, rest = label.partition(" (")
    parts = [p.strip() for p in rest.rstrip(")").split(",")] if rest else []
    backend = parts[0] if parts else DEFAULT_BACKEND
    granularity = parts[1] if len(parts) > 1 else "per_channel"
    return LayerScheme(scheme, backend, granularity)


def long_scheme(scheme: LayerScheme) -> str:
    """The Quant column's tooltip for a scheme: the candidate's label and tip, or the fields."""
    choice = layer_scheme_choice(scheme)
    if choice is not None:
        return f"{choice.label}: {choice.tip}"
    return f"{scheme.scheme} ({scheme.backend}, {scheme.granularity})"

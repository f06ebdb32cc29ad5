"""What the user can choose in the window: pruning methods, quantization schemes and
backends, fine-tune losses, save formats.

Every combo box, every "is this method structured?" and every save filter reads this one
module. The engine does not declare these lists yet; when it does (registries in core), this
module becomes a thin view of them and nothing else in the window changes.
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class SchemeChoice(Choice):
    """A quantization scheme: which backends and whether a granularity applies."""

    backends: tuple[str, ...] = ("torchao",)
    granular: bool = False


@dataclass(frozen=True)
class FormatChoice(Choice):
    """A save format: ``label`` is the file dialog's filter, ``suffix`` the default one."""

    suffix: str = ".pt"


GLOBAL_METHOD = "global_unstructured"  # the panel's "Global" scope, not a combo entry
DEFAULT_METHOD = "l1_unstructured"

METHODS: tuple[MethodChoice, ...] = (
    MethodChoice("l1_unstructured", "L1 magnitude", "Zero the smallest weights of each layer"),
    MethodChoice("random_unstructured", "Random", "Zero randomly chosen weights (a baseline)"),
    MethodChoice(
        "ln_structured",
        "Ln norm, channels",
        "Zero whole channels with the smallest Ln norm",
        structured=True,
        uses_norm=True,
    ),
    MethodChoice(
        "random_structured",
        "Random, channels",
        "Zero randomly chosen whole channels",
        structured=True,
    ),
)

SCHEMES: tuple[SchemeChoice, ...] = (
    SchemeChoice(
        "int8_dynamic",
        "int8 dynamic",
        "int8 weights, activations quantized on the fly",
        backends=("torchao", "legacy"),
        granular=True,
    ),
    SchemeChoice(
        "int8_weight_only", "int8 weight-only", "int8 weights, float activations", granular=True
    ),
    SchemeChoice("fp16", "float16", "weights cast to half precision"),
    SchemeChoice("bf16", "bfloat16", "weights cast to bfloat16"),
)

BACKENDS: tuple[Choice, ...] = (Choice("torchao", "torchao"), Choice("legacy", "legacy torch.ao"))
GRANULARITIES: tuple[Choice, ...] = (
    Choice("per_channel", "per channel"),
    Choice("per_tensor", "per tensor"),
)
FINETUNE_LOSSES: tuple[Choice, ...] = (
    Choice("auto", "auto", "cross-entropy when the data has labels, else distillation"),
    Choice("cross_entropy", "cross-entropy", "train on the labels"),
    Choice("distillation", "distillation", "match the original model's outputs"),
)
NORMS = ("1", "2", "inf", "-inf", "fro", "nuc")

SAVE_FORMATS: tuple[FormatChoice, ...] = (
    FormatChoice("state_dict", "State dict (*.pt *.pth *.safetensors)", suffix=".pt"),
    FormatChoice("pickle", "Pickled model (*.pt *.pth)", suffix=".pt"),
    FormatChoice("torchscript", "TorchScript archive (*.pt *.ts)", suffix=".pt"),
    FormatChoice("exported", "Exported program (*.pt2)", suffix=".pt2"),
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


def scheme(value: str) -> SchemeChoice | None:
    return next((s for s in SCHEMES if s.value == value), None)


def scheme_label(value: str) -> str:
    """What the user reads for a scheme ('int8 dynamic'); the value itself when unknown."""
    entry = scheme(value)
    return entry.label if entry is not None else value

"""Pruning methods: each declared once, with the mask that implements it.

A method is a registry entry: its name (what recipes write), label and tooltip (what the
window shows), what a whole-number amount counts, which extra recipe fields it reads, and its
``keep`` function, which turns weights into boolean keep-masks. Adding a method is one entry
here: the recipe's ``method`` type, ``--method`` choices, the window's method list and the
sensitivity sweep all read this registry.

torch is imported inside the mask functions, so that the registry (and ``secateur --help``)
loads without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.registry import Registry

if TYPE_CHECKING:
    import torch

KeepFn = Callable[[Sequence["torch.Tensor"], Any], list["torch.Tensor"]]
"""(weights, rule) -> one boolean keep-mask per weight. Layer-scoped methods get one weight;
global ones get the weights of every layer their rule selects."""


@dataclass(frozen=True)
class PruneMethod:
    """One pruning method. ``keep`` gives its masks (None: the method removes channels
    instead of zeroing weights, ``core.structural``). ``scope`` is "layer" (each layer on
    its own) or "global" (one ranking across every layer a rule selects); ``unit`` is what a
    count amount counts; ``options`` are the rule's extra fields the method reads."""

    name: str
    label: str
    tooltip: str
    keep: KeepFn | None
    unit: str = "elements"
    options: tuple[str, ...] = ()
    scope: str = "layer"
    sweepable: bool = True

    @property
    def structured(self) -> bool:
        """True when whole slices along ``dim`` (channels) are zeroed together."""
        return "dim" in self.options

    @property
    def removes(self) -> bool:
        """True when channels are physically removed (shapes change), not zeroed."""
        return self.keep is None


# remove_channels: how channels are ranked, and whether one ranking spans the layers.
IMPORTANCES: tuple[str, ...] = ("l1", "l2", "taylor", "random")
CHANNEL_SCOPES: tuple[str, ...] = ("layer", "global")
REMOVE_CHANNELS = "remove_channels"


_CHUNK = 1 << 18


def l1_keep(weights: Sequence[torch.Tensor], amount: int | float) -> list[torch.Tensor]:
    """Boolean keep-masks that drop the ``amount`` smallest-magnitude weights: per layer for
    one weight, against one threshold across all of them for several (global L1).

    The same masks as torch's L1Unstructured / global_unstructured, which select with
    torch.topk. Here the threshold comes from numpy's in-place partition of one copy of the
    magnitudes (no index tensor, no second copy: topk and kthvalue each allocate two more
    layer-sized buffers), and the masks are built in chunks. Among weights of exactly equal
    magnitude at the threshold, which ones go is arbitrary in torch; here the first ones.
    """
    import torch
    from torch.nn.utils import prune

    weights = [w.detach() for w in weights]
    total = sum(w.numel() for w in weights)
    count = prune._compute_nparams_toprune(amount, total)
    prune._validate_pruning_amount(count, total)
    if count == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    flat = torch.cat([w.reshape(-1).abs().float() for w in weights])
    values = flat.numpy()
    values.partition(count - 1)  # in place: the count-th smallest lands at count - 1
    threshold = float(values[count - 1])
    del flat, values
    keeps = []
    dropped = 0
    for weight in weights:
        src = weight.reshape(-1)
        keep = torch.empty(src.numel(), dtype=torch.bool)
        for start in range(0, src.numel(), _CHUNK):
            part = src[start : start + _CHUNK]
            torch.ge(part.abs().float(), threshold, out=keep[start : start + _CHUNK])
        dropped += src.numel() - int(torch.count_nonzero(keep))
        keeps.append(keep)
    missing = count - dropped
    for weight, keep in zip(weights, keeps):
        if missing <= 0:
            break
        ties = torch.nonzero(weight.reshape(-1).abs().float() == threshold).flatten()[:missing]
        keep[ties] = False
        missing -= ties.numel()
    return [keep.view_as(w) for keep, w in zip(keeps, weights)]


def _torch_method(factory: Callable[[Any], Any]) -> KeepFn:
    """A keep function from one of torch.nn.utils.prune's own methods (one layer)."""

    def keep(weights: Sequence[torch.Tensor], rule: Any) -> list[torch.Tensor]:
        import torch

        (weight,) = weights
        weight = weight.detach()
        mask = factory(rule).compute_mask(weight, default_mask=torch.ones_like(weight))
        return [mask.bool()]

    return keep


def _random_unstructured(rule: Any) -> Any:
    from torch.nn.utils import prune

    return prune.RandomUnstructured(rule.amount)


def _ln_structured(rule: Any) -> Any:
    from torch.nn.utils import prune

    return prune.LnStructured(rule.amount, n=rule.norm(), dim=rule.dim)


def _random_structured(rule: Any) -> Any:
    from torch.nn.utils import prune

    return prune.RandomStructured(rule.amount, dim=rule.dim)


def _l1(weights: Sequence[torch.Tensor], rule: Any) -> list[torch.Tensor]:
    return l1_keep(weights, rule.amount)


PRUNE_METHODS: Registry[PruneMethod] = Registry(
    "pruning method",
    [
        PruneMethod(
            "l1_unstructured", "L1 magnitude", "Zero the smallest weights of each layer", _l1
        ),
        PruneMethod(
            "random_unstructured",
            "Random",
            "Zero randomly chosen weights (a baseline)",
            _torch_method(_random_unstructured),
        ),
        PruneMethod(
            "ln_structured",
            "Ln norm, channels",
            "Zero whole channels with the smallest Ln norm",
            _torch_method(_ln_structured),
            unit="channels",
            options=("n", "dim"),
        ),
        PruneMethod(
            "random_structured",
            "Random, channels",
            "Zero randomly chosen whole channels",
            _torch_method(_random_structured),
            unit="channels",
            options=("dim",),
        ),
        PruneMethod(
            "global_unstructured",
            "Global L1 magnitude",
            "One L1 threshold across all selected layers: the fraction of all their weights "
            "goes, more from some layers than others",
            _l1,
            scope="global",
            sweepable=False,
        ),
        PruneMethod(
            REMOVE_CHANNELS,
            "Remove channels",
            "Physically remove whole output channels, neurons and heads, and shrink every "
            "coupled layer with them: a smaller file and a faster forward",
            None,
            unit="channels",
            options=("importance", "scope", "round_to"),
        ),
    ],
)

"""The recipe's ``remove_channels`` rules, planned before any work and run on the copy.

Rules with different settings (importance, scope, round_to) are planned separately (their
groups never overlap: a later rule that selects a layer has replaced what an earlier one said
about it). The plan is made on the original with a small slice of the evaluation input, so a
recipe that cannot be carried out is refused before anything is copied.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from core.coupling import Batches
from core.data import Dataset
from core.errors import RecipeError
from core.methods import PRUNE_METHODS
from core.metrics import run_outputs
from core.progress import Progress
from core.pruning import LayerPrune
from core.structural import RemovalPlan, plan_removal, remove_channels

EXAMPLE_SAMPLES = 2  # samples the model is traced and checked on (a batch of 1 may be special)


@dataclass
class ChannelRemoval:
    """Every remove_channels rule's plan, and what the run found (rows and notes)."""

    plans: list[RemovalPlan]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(len(p.groups) for p in self.plans)

    def coupled(self) -> dict[str, str]:
        """Every layer that will shrink (roots included) -> the root of its group."""
        return {name: root for plan in self.plans for name, root in plan.coupled().items()}

    def skipped(self) -> dict[str, str]:
        return {name: why for plan in self.plans for name, why in plan.skipped.items()}

    def roots(self) -> list[str]:
        """The layers that lose output channels of their own (several roots coupled with
        each other share one group)."""
        return [root for plan in self.plans for group in plan.groups for root in group.roots]

    def followers(self) -> dict[str, list[tuple[str, str]]]:
        """Every layer that shrinks because a root loses channels -> (that root, how it
        shrinks: "input channels", "normalized features"...), for each group it follows.
        A root can follow another root too (conv2's inputs follow conv1)."""
        out: dict[str, list[tuple[str, str]]] = {}
        for plan in self.plans:
            for group in plan.groups:
                for coupled in group.coupled:
                    out.setdefault(coupled.name, []).append((group.root, coupled.role))
        return out

    def kept(self) -> dict[str, float]:
        """An estimate, before the run, of the fraction of each shrinking layer's weight
        that stays: each group the layer is in keeps ``keep / size`` of one of its
        dimensions (a root's outputs, a follower's inputs or features), and the fractions
        multiply (conv2 keeping half its outputs and half its inputs keeps a quarter).
        A layer fed by a concatenation of several groups is estimated low."""
        out: dict[str, float] = {}
        for plan in self.plans:
            for group in plan.groups:
                fraction = group.keep / group.size if group.size else 1.0
                for name in group.layers:
                    out[name] = out.get(name, 1.0) * fraction
        return out


def split(
    prune_plan: Mapping[str, LayerPrune],
) -> tuple[dict[str, LayerPrune], dict[str, LayerPrune]]:
    """(layers whose weights are zeroed by a mask, layers whose channels are removed)."""
    masks, removes = {}, {}
    for name, item in prune_plan.items():
        (removes if PRUNE_METHODS[item.rule.method].removes else masks)[name] = item
    return masks, removes


def example_of(
    model: nn.Module, data: Dataset | None, source: str, where: str
) -> tuple[tuple, dict]:
    """The input the model is traced and checked on (the first samples of the data). Data
    the model cannot run on is the data's fault, said as such (not as a failed trace)."""
    if data is None:
        raise RecipeError(
            f"{source}: {where}.method: remove_channels traces the model on an input: give "
            "evaluation data (--data) or an input shape (--input-shape)"
        )
    count = min(EXAMPLE_SAMPLES, len(data))
    run_outputs(model, data.subset(count), batch_size=count)  # DataError names the file
    args, kwargs, _ = data.slice(0, count)
    return args, kwargs


def plan_channels(
    model: nn.Module, removes: Mapping[str, LayerPrune], data: Dataset | None, source: str
) -> ChannelRemoval:
    """Plan every remove_channels rule on ``model`` (not changed): refusals come now."""
    by_settings: dict[tuple[str, str, int], dict[str, LayerPrune]] = {}
    for name, item in removes.items():
        rule = item.rule
        key = (rule.importance or "l2", rule.scope or "layer", rule.round_to or 1)
        by_settings.setdefault(key, {})[name] = item
    plans = []
    for (importance, scope, round_to), items in by_settings.items():
        first = min(item.rule_index for item in items.values())
        example = example_of(model, data, source, f"prune[{first}]")
        plans.append(
            plan_removal(
                model,
                {name: item.rule.amount for name, item in items.items()},
                example,
                importance=importance,
                scope=scope,
                round_to=round_to,
                sources={
                    name: f"{source}: prune[{item.rule_index}]" for name, item in items.items()
                },
            )
        )
    return ChannelRemoval(plans)


def run_removal(
    model: nn.Module,
    removal: ChannelRemoval,
    data: Batches | None,
    should_stop: Callable[[], bool],
) -> Generator[Progress, None, None]:
    """Remove the planned channels from ``model`` in place, a group per progress event; the
    per-layer rows and notes are kept in ``removal``."""
    for plan in removal.plans:
        gen = remove_channels(model, plan, data=data, should_stop=should_stop)
        while True:
            try:
                event = next(gen)
            except StopIteration as done:
                result = done.value
                break
            yield Progress("prune", event.step, event.total, event.message)
        removal.rows.extend(result.rows())
        removal.notes.extend(result.notes)

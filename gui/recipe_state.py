"""What the window shows <-> one Recipe, both ways, without Qt.

The window's state is: the checked layers of the tree, a per-layer amount for some of them,
one pruning method with its amount (and n, dim, permanent), per-layer or global, the
optional fine-tune, the settings panel's quantize rule and the Quant column's per-layer
schemes. ``build_recipe`` writes that as the most compact recipe that selects exactly the
checked layers (``layers: ["*"]`` and ``types`` when they select exactly those, else the
layer names), plus one override rule per distinct per-layer amount; under ``quantize:`` the
panel's rule comes first, then one rule per distinct per-layer scheme (a later rule
overrides an earlier one; ``scheme: float`` keeps a layer float). ``state_from_recipe``
resolves any recipe's patterns against the model and gives the state back: the first
quantize rule is the panel's, and every layer whose final scheme differs from what that rule
alone gives gets its own scheme. What one method per window cannot show is warned about.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from core.errors import RecipeError
from core.inventory import PRUNABLE_TYPES, LayerInfo, select
from core.plan import Plan
from core.pruning import plan_pruning
from core.quantization import cannot_quantize, select_rules
from core.recipe import Finetune, PruneRule, Quantize, Recipe
from core.schemes import KEEP_FLOAT
from gui import choices
from gui.layer_selection import LayerScheme

Amount = int | float


@dataclass
class PruneSettings:
    """The pruning half of the settings panel."""

    method: str = choices.DEFAULT_METHOD
    amount: Amount = 0.5
    n: int | float | str = 2
    dim: int = 0
    permanent: bool = True
    # remove_channels only; None is the recipe's default (l2, layer, no rounding)
    importance: str | None = None
    scope: str | None = None
    round_to: int | None = None

    @property
    def removes(self) -> bool:
        return choices.removes_channels(self.method)

    def channel_options(self) -> dict[str, Any]:
        """The remove_channels fields a recipe rule writes (only those set)."""
        if not self.removes:
            return {}
        fields = {"importance": self.importance, "scope": self.scope, "round_to": self.round_to}
        return {k: v for k, v in fields.items() if v is not None}

    @property
    def is_global(self) -> bool:
        return self.method == choices.GLOBAL_METHOD


@dataclass
class WindowState:
    """Everything that makes up the recipe the window shows."""

    checked: list[str] = field(default_factory=list)
    overrides: dict[str, Amount] = field(default_factory=dict)
    prune: PruneSettings = field(default_factory=PruneSettings)
    finetune: Finetune | None = None
    quantize: Quantize | None = None
    schemes: dict[str, LayerScheme] = field(default_factory=dict)


def escape_name(name: str) -> str:
    """A module name as a glob pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _exact(names: Iterable[str]) -> list[str]:
    return [escape_name(n) for n in names]


def _selection(
    model: nn.Module, layers: list[Any], checked: Sequence[str]
) -> tuple[list[str], list[str] | None]:
    """The shortest (layers, types) that select exactly ``checked`` among prunable modules."""
    wanted = set(checked)
    by_name = {info.name: info for info in layers}
    candidates: list[tuple[list[str], list[str] | None]] = []
    types = sorted({by_name[n].type for n in checked if n in by_name})
    if types:
        candidates.append((["*"], types))  # reads best: says which kinds of layer
    candidates.append((["*"], None))
    for pattern, type_list in candidates:
        names, _ = select(model, pattern, type_list, predicate=PRUNABLE_TYPES)
        if set(names) == wanted and len(names) == len(wanted):
            return pattern, type_list
    return _exact(checked), None


def selection_patterns(
    model: nn.Module, layers: Sequence[LayerInfo], checked: Sequence[str]
) -> tuple[list[str], list[str] | None]:
    """The shortest (layer patterns, types) that select exactly the ``checked`` layers:
    ``["*"]`` with their types when that is exact (so a sweep of every Conv2d and Linear
    layer shares its cache entry with the command line's default), else their names."""
    return _selection(model, list(layers), checked)


def build_recipe(model: nn.Module, layers: Sequence[LayerInfo], state: WindowState) -> Recipe:
    """The one recipe the window shows. Raises RecipeError for invalid settings."""
    rules: list[dict[str, Any]] = []
    if state.checked:
        p = state.prune
        common: dict[str, Any] = {"method": p.method, "permanent": p.permanent}
        if choices.uses_norm(p.method):
            common["n"] = p.n
        if choices.is_structured(p.method):
            common["dim"] = p.dim
        common.update(p.channel_options())
        pattern, types = _selection(model, list(layers), state.checked)
        base: dict[str, Any] = {"layers": pattern}
        if types is not None:
            base["types"] = types
        rules.append({**base, **common, "amount": p.amount})
        if not p.is_global:
            groups: dict[Amount, list[str]] = {}
            for name in state.checked:
                amount = state.overrides.get(name)
                if amount is not None and amount != p.amount:
                    groups.setdefault(amount, []).append(name)
            for amount, names in groups.items():
                rules.append({"layers": _exact(names), **common, "amount": amount})
    data: dict[str, Any] = {"version": 1}
    if rules:
        data["prune"] = rules
    if state.finetune is not None:
        data["finetune"] = state.finetune.model_dump(mode="json")
    quantize = scheme_rules(layers, state.quantize, state.schemes)
    if quantize:
        data["quantize"] = [q.model_dump(mode="json") for q in quantize]
    return Recipe.from_dict(data, "settings")


def scheme_rule(scheme: LayerScheme, names: Sequence[str], types: list[str]) -> Quantize:
    """The rule that gives exactly these layers this scheme."""
    fields: dict[str, Any] = {"scheme": scheme.scheme, "layers": _exact(names), "types": types}
    normal = choices.normalized(scheme)
    if normal.backend != LayerScheme(normal.scheme).backend:
        fields["backend"] = normal.backend
    if normal.granularity != LayerScheme(normal.scheme).granularity:
        fields["granularity"] = normal.granularity
    return Quantize(**fields)


def scheme_rules(
    layers: Sequence[LayerInfo], panel: Quantize | None, schemes: Mapping[str, LayerScheme]
) -> list[Quantize]:
    """The quantize rules: the panel's first, then one per distinct per-layer scheme (in
    model order of the first layer that has it)."""
    if panel is not None and panel.is_auto and schemes:
        raise RecipeError(
            "settings: quantize.scheme: auto plans every selected layer, and "
            f"{len(schemes)} layer{'s' * (len(schemes) != 1)} have their own scheme in the Quant "
            "column; choose another scheme, or Recommend to see the plan first"
        )
    rules = [panel] if panel is not None else []
    type_of = {info.name: info.type for info in layers}
    groups: dict[LayerScheme, list[str]] = {}
    for info in layers:
        scheme = schemes.get(info.name)
        if scheme is not None:
            groups.setdefault(choices.normalized(scheme), []).append(info.name)
    for scheme, names in groups.items():
        rules.append(scheme_rule(scheme, names, sorted({type_of[n] for n in names})))
    return rules


def _effect(rule: Quantize | None) -> LayerScheme:
    """What a rule (None: none, or a float rule) does to a layer it selects."""
    if rule is None or rule.keeps_float:
        return LayerScheme(KEEP_FLOAT)
    return choices.normalized(LayerScheme(rule.scheme, rule.backend, rule.granularity))


def split_quantize(
    model: nn.Module, rules: Sequence[Quantize], source: str
) -> tuple[Quantize | None, dict[str, LayerScheme]]:
    """(the panel's rule, the per-layer schemes) that give the same scheme to every layer
    as ``rules``. RecipeError when a pattern matches nothing."""
    if not rules:
        return None, {}
    panel = rules[0]
    if len(rules) == 1:
        return panel, {}
    final = select_rules(model, list(rules), source)
    alone = select_rules(model, [panel], source)
    schemes: dict[str, LayerScheme] = {}
    for name, rule in final.items():
        effect = _effect(rule)
        if effect != _effect(alone.get(name)):
            schemes[name] = effect
    return panel, schemes


def schemes_from_plan(plan: Plan) -> dict[str, LayerScheme]:
    """The plan's choice for every layer it measured (float where nothing pays)."""
    chosen = plan.final_choices()
    return {
        row["name"]: choices.layer_scheme_of(chosen.get(row["name"], KEEP_FLOAT))
        for row in plan.layers
    }


def scheme_options(model: nn.Module, name: str) -> list[choices.LayerSchemeChoice]:
    """The Quant column's choices a layer can take (keep float, and the candidates whose
    scheme can quantize it)."""
    module = dict(model.named_modules()).get(name) if name else model
    if module is None:
        return []
    options = []
    for choice in choices.LAYER_SCHEMES:
        scheme = choice.scheme
        if scheme.scheme == KEEP_FLOAT:
            options.append(choice)
            continue
        q = Quantize(scheme=scheme.scheme, backend=scheme.backend, granularity=scheme.granularity)
        if cannot_quantize(module, q) is None:
            options.append(choice)
    return options


def _config(rule: PruneRule) -> tuple[Any, ...]:
    return (
        rule.method,
        rule.n,
        rule.dim,
        rule.permanent,
        rule.importance,
        rule.scope,
        rule.round_to,
    )


def state_from_recipe(model: nn.Module, recipe: Recipe) -> tuple[WindowState, list[str]]:
    """The window state for ``recipe``, and warnings for what the window cannot show.

    Raises RecipeError when a pattern matches nothing (as a run would).
    """
    warnings: list[str] = []
    plan = plan_pruning(model, recipe.prune, recipe.source) if recipe.prune else {}
    panel, schemes = split_quantize(model, recipe.quantize, recipe.source)
    state = WindowState(finetune=recipe.finetune, quantize=panel, schemes=schemes)
    if not plan:
        return state, warnings
    configs = Counter(_config(item.rule) for item in plan.values())
    (method, n, dim, permanent, importance, scope, round_to), _ = configs.most_common(1)[0]
    if len(configs) > 1:
        others = sorted({item.rule.method for item in plan.values()} - {method})
        detail = (
            f"other methods: {', '.join(others)}"
            if others
            else "other n, dim, permanent, importance, scope or round_to"
        )
        warnings.append(
            f"{recipe.source}: uses several pruning settings ({detail}); the window applies "
            f"one method to every checked layer, so all of them now use {method}"
        )
    amounts = Counter(item.rule.amount for item in plan.values() if item.rule.method == method)
    amount = _base_amount(plan, amounts)
    if isinstance(amount, int):  # the panel's amount is a fraction: counts go per layer
        fractions = [a for a in amounts if isinstance(a, float)]
        amount = fractions[0] if fractions else 0.5
        if method == choices.GLOBAL_METHOD:
            warnings.append(
                f"{recipe.source}: a global amount given as a count of weights cannot be "
                f"shown; the window uses {amount:g} of all checked weights instead"
            )
    state.prune = PruneSettings(method, amount, n, dim, permanent, importance, scope, round_to)
    state.checked = list(plan)
    if method != choices.GLOBAL_METHOD:
        state.overrides = {
            name: item.rule.amount for name, item in plan.items() if item.rule.amount != amount
        }
    return state, warnings


def _base_amount(plan: Mapping[str, Any], amounts: Counter) -> Amount:
    """The amount most layers get; ties go to the earlier rule (the broad one)."""
    best = max(amounts.values())
    tied = {a for a, c in amounts.items() if c == best}
    for item in sorted(plan.values(), key=lambda i: i.rule_index):
        if item.rule.amount in tied:
            return item.rule.amount
    return next(iter(tied))

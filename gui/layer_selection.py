"""Which layers to prune and by how much, and how each layer is quantized, as plain Python
(no Qt).

``LayerSelection`` holds, for one model's inventory: which layers are checked, the per-layer
amounts that differ from the default, the default amount and whether pruning is global (one
threshold over all checked layers), and the per-layer quantization schemes chosen in the
Quant column (which override the settings panel's rule, as a later recipe rule overrides an
earlier one). A parent's tri-state is derived from counters kept up to
date incrementally, so reading one row's state is O(1). Every change tells its listeners which
rows it touched; the layer tree's item model is one such listener and turns the news into
``dataChanged``. Rows are indices into ``layers`` (the inventory, in ``named_modules()`` order,
parents before their children).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from torch import nn

from core.inventory import LayerInfo

Amount = int | float


class Kind(Enum):
    """The layer kinds the selection helpers check (Check All Linear / Conv Layers)."""

    LINEAR = "linear"
    CONV = "conv"


# Convolutions as the helpers mean them: nn.Conv1d/2d/3d and their subclasses, not the
# transposed ones (which torch also derives from _ConvNd).
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_kinds(model: nn.Module) -> dict[str, Kind]:
    """Each Linear or Conv module's kind by name, found with ``isinstance`` (so subclasses
    count and a ConvTranspose2d is not a Conv); computed once when a model opens."""
    kinds: dict[str, Kind] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            kinds[name] = Kind.LINEAR
        elif isinstance(module, CONV_TYPES):
            kinds[name] = Kind.CONV
    return kinds


@dataclass(frozen=True)
class LayerScheme:
    """How one layer is quantized when the Quant column says so: a scheme of
    ``core.schemes`` with its backend and granularity, or ``float`` (kept as it is)."""

    scheme: str
    backend: str = "torchao"
    granularity: str = "per_channel"


GLOB_CHARS = frozenset("*?[")


def name_matcher(text: str) -> Callable[[str, str], bool]:
    """A test of (module name, type name) for what the user typed in a filter or search box.

    Glob patterns (``*``, ``?``, ``[...]``) match the whole dotted name, as in recipes.
    Anything else matches whole name segments: ``features.1`` finds ``features.1`` and what
    is inside it, not ``features.10``; it also finds a type it begins (``linear``,
    ``conv2`` for Conv2d). Case is ignored."""
    needle = text.strip().lower()
    if not needle:
        return lambda name, type_name: True
    if GLOB_CHARS & set(needle):
        rx = re.compile(fnmatch.translate(needle))
        return lambda name, type_name: bool(
            rx.fullmatch(name.lower()) or rx.fullmatch(type_name.lower())
        )
    parts = needle.split(".")
    width = len(parts)

    def match(name: str, type_name: str) -> bool:
        if type_name.lower().startswith(needle):
            return True
        segments = name.lower().split(".")
        return any(segments[i : i + width] == parts for i in range(len(segments) - width + 1))

    return match


class Change(Enum):
    RESETTING = "resetting"  # new layers are about to replace the old ones
    RESET = "reset"  # they have
    CHECKS = "checks"
    AMOUNTS = "amounts"
    SCHEMES = "schemes"


@dataclass(frozen=True)
class SelectionEvent:
    """What changed (``change``) and in which rows; a check change also touches the rows of
    every ancestor, whose tri-state follows."""

    change: Change
    rows: frozenset[int] = field(default_factory=frozenset)


Listener = Callable[[SelectionEvent], None]


class LayerSelection:
    """The checked layers, their amounts, the default amount and the scope; see the module
    docstring. Only prunable layers can be checked."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._layers: list[LayerInfo] = []
        self._ids: dict[str, int] = {}
        self._parent: list[int] = []
        self._checked: list[bool] = []
        self._n_checkable: list[int] = []
        self._n_checked: list[int] = []
        self._override: dict[int, Amount] = {}
        self._schemes: dict[int, LayerScheme] = {}
        self._kinds: dict[str, Kind] = {}
        self._default_amount: Amount = 0.5
        self._global = False

    # ------------------------------------------------------------------ listeners
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _notify(self, change: Change, rows: Iterable[int] = ()) -> None:
        event = SelectionEvent(change, frozenset(rows))
        if change in (Change.CHECKS, Change.AMOUNTS, Change.SCHEMES) and not event.rows:
            return
        for listener in list(self._listeners):
            listener(event)

    # ------------------------------------------------------------------ the layers
    def reset(self, layers: Sequence[LayerInfo], kinds: Mapping[str, Kind] | None = None) -> None:
        """A new model's inventory: nothing checked, no per-layer amounts. ``kinds`` (from
        ``layer_kinds``) serves ``check_kind``; the default amount and scope stay."""
        self._notify(Change.RESETTING)
        self._layers = list(layers)
        self._kinds = dict(kinds or {})
        n = len(self._layers)
        self._ids = {info.name: i for i, info in enumerate(self._layers)}
        self._parent = [-1] * n
        for i, info in enumerate(self._layers):
            if i == 0:
                continue
            p = self._ids.get(info.parent or "", 0)
            self._parent[i] = p if p < i else 0  # keep the tree acyclic whatever the names
        self._checked = [False] * n
        self._n_checked = [0] * n
        self._n_checkable = [1 if info.prunable else 0 for info in self._layers]
        for i in range(n - 1, 0, -1):
            self._n_checkable[self._parent[i]] += self._n_checkable[i]
        self._override = {}
        self._schemes = {}
        self._notify(Change.RESET)

    @property
    def layers(self) -> list[LayerInfo]:
        return self._layers

    def parents(self) -> list[int]:
        """Each row's parent row (-1 for the root)."""
        return self._parent

    def row(self, name: str) -> int | None:
        return self._ids.get(name)

    def kind(self, name: str) -> Kind | None:
        return self._kinds.get(name)

    # ------------------------------------------------------------------ checks
    def is_checkable(self, name: str) -> bool:
        i = self._ids.get(name)
        return i is not None and self._layers[i].prunable

    def is_checked(self, name: str) -> bool:
        i = self._ids.get(name)
        return i is not None and self._checked[i]

    def checked_at(self, i: int) -> bool:
        return self._checked[i]

    def checkable_below(self, i: int) -> int:
        """Prunable layers at row ``i`` and under it (0: the row has no check box)."""
        return self._n_checkable[i]

    def check_state_at(self, i: int) -> bool | None:
        """The row's box: True all checked, False none, None some (a parent, partly)."""
        done = self._n_checked[i]
        if done == 0:
            return False
        return True if done == self._n_checkable[i] else None

    def checked_names(self) -> list[str]:
        """Checked layers in model order."""
        return [info.name for info, on in zip(self._layers, self._checked) if on]

    def checked_summary(self) -> tuple[int, int, int]:
        """(checked layers, prunable layers, parameters in checked layers)."""
        params = sum(info.parameters for info, on in zip(self._layers, self._checked) if on)
        total = self._n_checkable[0] if self._layers else 0
        done = self._n_checked[0] if self._layers else 0
        return done, total, params

    def _set_one(self, i: int, on: bool, touched: set[int]) -> None:
        if not self._layers[i].prunable or self._checked[i] == on:
            return
        self._checked[i] = on
        delta = 1 if on else -1
        j = i
        while j >= 0:
            self._n_checked[j] += delta
            touched.add(j)
            j = self._parent[j]

    def set_checked(self, name: str, on: bool) -> None:
        touched: set[int] = set()
        self._set_one(self._ids[name], on, touched)
        self._notify(Change.CHECKS, touched)

    def set_subtree(self, i: int, on: bool, children: Sequence[Sequence[int]]) -> None:
        """Check (or uncheck) row ``i`` and every prunable layer under it (a parent's box);
        ``children`` is each row's child rows."""
        touched: set[int] = set()
        stack = [i]
        while stack:
            j = stack.pop()
            self._set_one(j, on, touched)
            stack.extend(children[j])
        self._notify(Change.CHECKS, touched)

    def set_checked_names(self, names: Iterable[str]) -> list[str]:
        """Check exactly these layers; returns the names that cannot be checked."""
        wanted = set(names)
        refused = sorted(n for n in wanted if not self.is_checkable(n))
        touched: set[int] = set()
        for i, info in enumerate(self._layers):
            self._set_one(i, info.name in wanted, touched)
        self._notify(Change.CHECKS, touched)
        return refused

    def check_where(self, predicate: Callable[[LayerInfo], bool], on: bool = True) -> None:
        """Check (or uncheck) every prunable layer the predicate accepts."""
        touched: set[int] = set()
        for i, info in enumerate(self._layers):
            if info.prunable and predicate(info):
                self._set_one(i, on, touched)
        self._notify(Change.CHECKS, touched)

    def check_kind(self, kind: Kind) -> None:
        """Check every prunable layer of this kind (others stay as they are)."""
        self.check_where(lambda info: self._kinds.get(info.name) is kind)

    def invert(self) -> None:
        touched: set[int] = set()
        for i, info in enumerate(self._layers):
            if info.prunable:
                self._set_one(i, not self._checked[i], touched)
        self._notify(Change.CHECKS, touched)

    # ------------------------------------------------------------------ amounts
    @property
    def default_amount(self) -> Amount:
        return self._default_amount

    @property
    def is_global(self) -> bool:
        return self._global

    def set_default_amount(self, amount: Amount, is_global: bool) -> None:
        """The settings panel's amount and scope (global: per-layer amounts do not apply)."""
        if amount == self._default_amount and is_global == self._global:
            return
        self._default_amount = amount
        self._global = is_global
        self._notify(Change.AMOUNTS, (i for i, on in enumerate(self._checked) if on))

    def has_override_at(self, i: int) -> bool:
        return i in self._override

    def amount_at(self, i: int) -> Amount | None:
        """What row ``i`` will be pruned by (None: not checked)."""
        if not self._checked[i]:
            return None
        if self._global:
            return self._default_amount
        return self._override.get(i, self._default_amount)

    def effective_amount(self, name: str) -> Amount | None:
        i = self._ids.get(name)
        return None if i is None else self.amount_at(i)

    def overrides(self) -> dict[str, Amount]:
        """Per-layer amounts of the checked layers (others keep theirs, but do not count)."""
        return {
            self._layers[i].name: a for i, a in sorted(self._override.items()) if self._checked[i]
        }

    def set_override(self, name: str, amount: Amount | None) -> None:
        """A per-layer amount; None (or the default amount) removes it."""
        i = self._ids[name]
        if amount is not None and not isinstance(amount, int):
            amount = round(float(amount), 4)
        if amount is None or amount == self._default_amount or amount < 0:
            changed = self._override.pop(i, None) is not None
        else:
            changed = self._override.get(i) != amount
            self._override[i] = amount
        if changed:
            self._notify(Change.AMOUNTS, {i})

    def set_overrides(self, overrides: Mapping[str, Amount]) -> None:
        """Replace every per-layer amount (names not in the model are ignored)."""
        old = set(self._override)
        self._override = {self._ids[n]: a for n, a in overrides.items() if n in self._ids}
        self._notify(Change.AMOUNTS, old | set(self._override))

    # ------------------------------------------------------------------ schemes
    def scheme_at(self, i: int) -> LayerScheme | None:
        """The layer's own quantization scheme (None: the settings panel's rule decides)."""
        return self._schemes.get(i)

    def scheme(self, name: str) -> LayerScheme | None:
        i = self._ids.get(name)
        return None if i is None else self._schemes.get(i)

    def schemes(self) -> dict[str, LayerScheme]:
        """Every per-layer scheme, in model order."""
        return {self._layers[i].name: s for i, s in sorted(self._schemes.items())}

    def set_scheme(self, name: str, scheme: LayerScheme | None) -> None:
        """A layer's own scheme; None goes back to the settings panel's rule."""
        self.set_schemes_of({name: scheme})

    def set_schemes_of(self, schemes: Mapping[str, LayerScheme | None]) -> None:
        """Set (or, with None, remove) the schemes of these layers; others keep theirs."""
        touched: set[int] = set()
        for name, scheme in schemes.items():
            i = self._ids.get(name)
            if i is None:
                continue
            old = self._schemes.get(i)
            if scheme is None:
                self._schemes.pop(i, None)
            else:
                self._schemes[i] = scheme
            if old != scheme:
                touched.add(i)
        self._notify(Change.SCHEMES, touched)

    def set_schemes(self, schemes: Mapping[str, LayerScheme]) -> None:
        """Replace every per-layer scheme (names not in the model are ignored)."""
        old = dict(self._schemes)
        self._schemes = {self._ids[n]: s for n, s in schemes.items() if n in self._ids}
        touched = {i for i in set(old) | set(self._schemes) if old.get(i) != self._schemes.get(i)}
        self._notify(Change.SCHEMES, touched)

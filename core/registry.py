"""A registry: the one place where the choices of one kind are declared.

Pruning methods, quantization schemes and backends, save formats and fidelity metrics are
each declared once, as frozen entries in a ``Registry``; the recipe's types, the command
line's ``choices``, the window's combo boxes and the report's rows all read them from there.
Registries import no torch, so ``secateur --help`` can list the choices instantly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar


class Entry(Protocol):
    """What every registry entry has: a stable name, a label and a one-line tooltip."""

    @property
    def name(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def tooltip(self) -> str: ...


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """An ordered, read-only set of entries of one kind, looked up by name."""

    def __init__(self, kind: str, entries: Iterable[E]) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise ValueError(f"{kind}: {entry.name!r} is declared twice")
            self._entries[entry.name] = entry

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a {self.kind} (one of {self.choices()})") from None

    def get(self, name: str | None) -> E | None:
        return self._entries.get(name) if name is not None else None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def choices(self) -> str:
        """The names as a user reads them in an error: 'a, b, c'."""
        return ", ".join(self._entries)

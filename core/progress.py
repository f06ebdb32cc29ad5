"""Progress of long work: every job is a generator of ``Progress`` events returning a result.

The command line drives a job with ``run`` and a progress bar, the window on its worker
thread, tests with neither. A job checks its ``should_stop`` flag between steps and raises
``core.errors.Cancelled``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any


@dataclass
class Progress:
    """One step of a job. ``layer`` carries a partial result when a layer is done."""

    stage: str
    step: int
    total: int
    message: str
    layer: dict[str, Any] | None = None
    loss: float | None = None


def never() -> bool:
    return False


def run(gen: Generator[Any, None, Any], on_event: Callable[[Any], None] | None = None) -> Any:
    """Drive a job generator to its end and return its result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)

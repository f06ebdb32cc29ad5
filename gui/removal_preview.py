"""Before a run: which layers a ``remove_channels`` recipe will shrink, and why not.

Removing a layer's output channels shrinks every layer coupled with it (its BatchNorm, the
next layer's inputs, residual partners). Which those are is the core's removal plan
(``core.tasks.plan_channel_removal``): one traced forward of the original, up to a second or
more on a big model, so it runs as a background job on the worker thread, never on the GUI
thread, and a newer request replaces one not yet done. ``changed`` fires when the plan (or
the reason there is none) is known; the tree marks the coupled layers, the settings panel says
what will shrink and the sparsity chart draws what each layer will keep.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, Signal

from core import tasks
from core.errors import UserError, first_line
from core.recipe import Recipe
from core.removal import ChannelRemoval
from gui.session import Session
from gui.worker import JobRunner

JOB = "removal preview"


class RemovalPreview(QObject):
    """The removal plan of the recipe the window shows (see the module docstring)."""

    changed = Signal()

    def __init__(self, session: Session, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.runner = runner
        self.plan: ChannelRemoval | None = None
        self.error: str | None = None
        self._key: tuple[Any, ...] | None = None

    @property
    def pending(self) -> bool:
        """Whether a requested plan is still being made."""
        return self.runner.background_pending(JOB)

    def request(self, recipe: Recipe | None, input_shape: tuple[int, ...] | None) -> None:
        """Plan ``recipe``'s channel removal in the background (None, or a recipe that
        removes no channels: nothing shrinks). The same request twice is planned once."""
        loaded = self.session.loaded
        removes = recipe is not None and any(r.method == "remove_channels" for r in recipe.prune)
        if loaded is None or not loaded.eager or recipe is None or not removes:
            self._key = None
            if self.plan is not None or self.error is not None:
                self.plan, self.error = None, None
                self.changed.emit()
            return
        data = self.session.eval_data
        key = (
            id(loaded),
            json.dumps(recipe.to_dict().get("prune"), sort_keys=True),
            id(data),
            input_shape if data is None else None,
        )
        if key == self._key:
            return
        self._key = key
        prune_only = Recipe.from_dict(
            {"version": 1, "prune": recipe.to_dict()["prune"]}, recipe.source
        )
        self.runner.background(
            JOB,
            partial(tasks.plan_channel_removal, loaded, prune_only, data, input_shape),
            on_finished=self._on_planned,
            on_failed=self._on_failed,
        )

    def invalidate(self) -> None:
        """Plan again at the next request (the data changed)."""
        self._key = None

    def _on_planned(self, plan: ChannelRemoval | None) -> None:
        self.plan, self.error = plan, None
        self.changed.emit()

    def _on_failed(self, exc: BaseException, trace: str) -> None:
        self.plan = None
        self.error = str(exc) if isinstance(exc, UserError) else first_line(exc, 200)
        self.changed.emit()

    # ------------------------------------------------------------------ reading
    def kept(self) -> dict[str, float]:
        """The estimated fraction of each shrinking layer's weight that stays."""
        return self.plan.kept() if self.plan is not None else {}

    def summary(self) -> str:
        """One line for the settings panel: what shrinks, what is skipped."""
        if self.error is not None:
            return self.error
        plan = self.plan
        if plan is None:
            return ""
        roots, followers, skipped = plan.roots(), plan.followers(), plan.skipped()
        shrink = sorted(set(followers) - set(roots))
        parts = [
            f"Removes channels of {len(roots)} layer{'s' * (len(roots) != 1)}"
            + (f"; {len(shrink)} more follow ({_names(shrink)})" if shrink else "")
        ]
        if skipped:
            name, why = next(iter(skipped.items()))
            more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
            parts.append(f"skips {name}{more}: {why}")
        return ". ".join(parts) + "."


def _names(names: list[str], shown: int = 4) -> str:
    text = ", ".join(names[:shown])
    return text + (f", \u2026 (+{len(names) - shown})" if len(names) > shown else "")

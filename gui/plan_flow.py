"""Recommend: the measured quantization plan, in the background, into the Quant column.

It plans the layers the quantize settings select (their layers and types, with the max
drop), on the evaluation data or, without it, a random input of the settings' shape. While
it runs the progress bar counts its measurements and Cancel stops it between two: nothing is
changed then (the model never is; the tree only when the plan is done). Done, every planned
layer gets the plan's choice as its own scheme in the Quant column (keep float where nothing
pays), where the user can change any of them before Compress; the Plan tab shows what was
measured and why this choice.
"""

from __future__ import annotations

import html
import re
import time
from functools import partial

from PySide6.QtCore import QObject, Signal

from core import tasks
from core.data import Dataset, random_data
from core.errors import RecipeError, UserError
from core.plan import Plan
from core.progress import Progress
from core.recipe import AUTO
from core.schemes import KEEP_FLOAT
from gui.cluster_link import ClusterLink, where_text
from gui.feedback import Feedback
from gui.plan_tab import chosen_line
from gui.recipe_state import schemes_from_plan
from gui.results_area import ResultsArea
from gui.session import Session
from gui.settings_panel import SettingsPanel
from gui.worker import JobRunner

NEEDS_DATA = (
    "Recommend times each layer on this machine with real inputs: choose evaluation data "
    "(File \u203a Open Evaluation Data) or give an input shape in the settings"
)


class PlanFlow(QObject):
    """One Recommend at a time; see the module docstring. ``candidates``, when set, limits
    the schemes tried (None: every candidate of ``core.schemes``, or the settings' own)."""

    finished = Signal(object)  # Plan
    cancelled = Signal()
    failed = Signal(object)  # the exception

    def __init__(
        self,
        session: Session,
        runner: JobRunner,
        feedback: Feedback,
        settings: SettingsPanel,
        results: ResultsArea,
        link: ClusterLink,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = runner
        self.feedback = feedback
        self.settings = settings
        self.results = results
        self.link = link
        self.candidates: tuple[str, ...] | None = None
        self._started = 0.0
        session.planChanged.connect(lambda: results.show_plan(session.plan))

    def _data(self) -> Dataset:
        if self.session.eval_data is not None:
            return self.session.eval_data
        shape = self.settings.input_shape()
        if shape is None:
            raise RecipeError(NEEDS_DATA)
        return random_data(shape)

    def run(self) -> None:
        """Measure and plan the selected layers in the background."""
        loaded = self.session.loaded
        if self.runner.busy or loaded is None:
            return
        refusal = self.session.not_eager_error()
        if refusal is not None:
            self.feedback.error(refusal)
            return
        try:
            if self.link.problem is not None:
                raise RecipeError(self.link.problem)
            rule = self.settings.selection_rule()
            if self.candidates is not None:
                rule = rule.model_copy(update={"candidates": list(self.candidates)})
            data = self._data()
        except UserError as exc:
            self.feedback.error(exc)
            return
        self._started = time.perf_counter()
        self.feedback.log(
            f"recommend: layers {rule.layers}, types {rule.types}, max drop {rule.max_drop}, "
            f"on {data.source}; fidelity evaluated on {where_text(self.link.address)}, every "
            "timing on this machine"
        )
        self.runner.start(
            "plan",
            self.link.job(
                partial(tasks.plan_model, loaded, data, rule, "Recommend"),
                lambda m: Progress("plan", 0, 0, m),
            ),
            on_progress=self._on_progress,
            on_finished=self._on_finished,
            on_cancelled=self._on_cancelled,
            on_failed=self._on_failed,
        )

    def _on_progress(self, event: Progress | None, layers: list) -> None:
        del layers
        if event is not None and event.step in (1, event.total):
            self.feedback.log(f"recommend: {event.message}")

    def _on_finished(self, plan: Plan) -> None:
        seconds = time.perf_counter() - self._started
        schemes = schemes_from_plan(plan)
        self.session.selection.set_schemes_of(schemes)
        quantize = self.settings.quantize()
        if quantize is not None and quantize.scheme == AUTO:
            # the choices are per layer now: the panel's rule keeps the rest float
            self.settings.set_scheme(KEEP_FLOAT)
        self.session.set_plan(plan)
        final = plan.final_choices()
        line = html.unescape(re.sub(r"<[^>]+>", "", chosen_line(plan)))
        self.feedback.log(f"recommend: done in {seconds:.1f} s; {line}")
        for note in plan.notes:
            self.feedback.log(f"recommend: {note}")
        for name in schemes:
            self.feedback.log(f"recommend: {name} \u2192 {final.get(name, KEEP_FLOAT)}")
        changed = sum(1 for name in schemes if final.get(name, KEEP_FLOAT) != KEEP_FLOAT)
        self.feedback.status(
            f"Recommended in {seconds:.0f} s: {changed} of {len(schemes)} layers quantized "
            "(Quant column, bold); change any of them, then Compress"
        )
        self.results.show_plan_tab()
        self.finished.emit(plan)

    def _on_cancelled(self) -> None:
        self.feedback.log("recommend cancelled: nothing was changed")
        self.feedback.status("Recommend cancelled: nothing was changed")
        self.cancelled.emit()

    def _on_failed(self, exc: BaseException, trace: str) -> None:
        self.feedback.status("Recommend failed: nothing was changed")
        self.failed.emit(exc)
        self.feedback.error(exc, trace)

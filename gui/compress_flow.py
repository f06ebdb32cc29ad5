"""Compressing the open model with the recipe the window shows, in the background.

Before it starts: the memory check (a job that may not fit asks first). While it runs: each
finished layer appears in the tree, each fine-tune epoch in the loss chart. At the end the
result goes into the session, the results are shown and the Log names every step (each layer
pruned, quantized or skipped, and how); a cancelled or failed run puts the tree back as it
was, and the model is unchanged either way (the engine works on a copy).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from core import tasks
from core.data import Dataset
from core.engine import CompressionResult
from core.errors import RecipeError
from core.loading import LoadedModel
from core.memory import estimate
from core.progress import Progress
from core.recipe import Recipe
from core.report import Report
from core.saving import FormatOption
from gui.feedback import Feedback, Question
from gui.layer_tree_model import LayerTreeModel
from gui.report_rows import size_ratio, step_lines
from gui.results_area import ResultsArea
from gui.session import Session
from gui.worker import JobRunner

MAX_LOGGED_STEPS = 500


def memory_question(warning: str) -> Question:
    """'This job may not fit in memory': run anyway? (Unattended, it runs.)"""
    return Question(
        "Not enough memory?",
        "This job may not fit in memory.",
        f"{warning[0].upper()}{warning[1:]}. Run it anyway?",
        yes_text="Run Anyway",
        warning=True,
        unattended=True,
    )


def compress_and_size(
    loaded: LoadedModel,
    recipe: Recipe,
    data: Dataset | None,
    train_data: Dataset | None,
    input_shape: tuple[int, ...] | None,
    should_stop: Callable[[], bool],
) -> Generator[Progress, None, tuple[CompressionResult, list[FormatOption]]]:
    """The compression, then every save format's refusal and predicted size for its result
    (what the save dialog lists), both on the worker thread."""
    result = yield from tasks.compress_model(
        loaded, recipe, data, train_data, input_shape, should_stop=should_stop
    )
    stem = loaded.path.stem if loaded.format != "demo" and loaded.path else "demo"
    formats = yield from tasks.save_formats(result, Path(f"{stem}-compressed"), should_stop)
    return result, formats


class CompressFlow(QObject):
    """One compression at a time; ``show_report`` draws a report (None: no result) in the
    tree and the results area."""

    finished = Signal(object)  # CompressionResult
    cancelled = Signal()
    failed = Signal(object)  # the exception

    def __init__(
        self,
        session: Session,
        runner: JobRunner,
        feedback: Feedback,
        tree_model: LayerTreeModel,
        results: ResultsArea,
        show_report: Callable[[Report | None], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = runner
        self.feedback = feedback
        self.tree_model = tree_model
        self.results = results
        self._show_report = show_report
        self._snapshot: Any = None
        self._started = 0.0
        self._inputs: tuple[Any, ...] = ()

    def run(self, recipe: Recipe, input_shape: tuple[int, ...] | None) -> None:
        """Compress a copy of the open model with ``recipe`` (after the checks)."""
        loaded = self.session.loaded
        if self.runner.busy or loaded is None:
            return
        refusal = self.session.not_eager_error()
        if refusal is not None:
            self.feedback.error(refusal)
            return
        if recipe.is_empty():
            self.feedback.error(
                RecipeError("nothing to do: check layers to prune, or turn on quantization")
            )
            return
        warning = estimate(loaded.model, recipe).warning()
        if warning is not None:
            self.feedback.log(f"memory: {warning}")
            if not self.feedback.confirm(memory_question(warning)):
                return
        self._snapshot = self.tree_model.results()
        self._started = time.perf_counter()
        self._inputs = (self.session.eval_data, input_shape)
        self.results.start_finetune(recipe.finetune.epochs if recipe.finetune else 0)
        self.feedback.log(f"compress: {json.dumps(recipe.to_dict())}")
        session = self.session
        self.runner.start(
            "compress",
            partial(
                compress_and_size,
                loaded,
                recipe,
                session.eval_data,
                session.train_data,
                input_shape,
            ),
            on_progress=self._on_progress,
            on_losses=self.results.add_losses,
            on_finished=partial(self._on_finished, recipe),
            on_cancelled=self._on_cancelled,
            on_failed=self._on_failed,
        )

    def _on_progress(self, event: Progress | None, layers: list[dict[str, Any]]) -> None:
        self.tree_model.set_partial(layers)
        if event is not None and event.stage not in ("prune", "quantize"):
            self.feedback.log(event.message)  # the layers' steps are logged, all, at the end

    def _on_finished(
        self, recipe: Recipe, done: tuple[CompressionResult, list[FormatOption]]
    ) -> None:
        seconds = time.perf_counter() - self._started
        result, formats = done
        self.session.set_result(result, recipe, self._inputs, formats)
        report = result.report
        self._show_report(report)
        steps = step_lines(report)
        if len(steps) > MAX_LOGGED_STEPS:  # the report names every layer; the log the first
            more = len(steps) - MAX_LOGGED_STEPS
            steps = [*steps[:MAX_LOGGED_STEPS], f"\u2026 and {more:,} more steps (in the report)"]
        self.feedback.log_lines(steps)
        after = report.after
        ratio = size_ratio(report)
        self.feedback.log(
            f"done in {seconds:.1f} s: state dict {ratio:.2f}x, non-zero parameters "
            f"{after.nonzero_parameters:,} of {after.parameters:,}"
        )
        for note in report.notes:
            self.feedback.log(f"note: {note}")
        self.feedback.status(
            f"Done in {seconds:.1f} s \u2014 size {ratio:.2f}\u00d7 of the original; "
            "File \u203a Save Compressed Model to keep it"
        )
        self.results.finish_finetune(report.finetune)
        self.results.show_results_tab()
        self.finished.emit(result)

    def _restore_tree(self) -> None:
        if self._snapshot is not None:
            self.tree_model.restore_results(self._snapshot)

    def _on_cancelled(self) -> None:
        self._restore_tree()
        self.results.stop_finetune(cancelled=True)
        self.feedback.log("cancelled: the model is unchanged")
        self.feedback.status("Cancelled: nothing was changed")
        self.cancelled.emit()

    def _on_failed(self, exc: BaseException, trace: str) -> None:
        self._restore_tree()
        self.results.stop_finetune(cancelled=False)
        self.feedback.status("Compression failed: nothing was changed")
        self.failed.emit(exc)
        self.feedback.error(exc, trace)

"""The open document: the loaded model and everything the window knows about it.

``Session`` holds the model (its inventory, its "before" numbers, its layer kinds), the
evaluation and training data with their files, the last compression result with the recipe it
ran, whether the settings changed since (out of date) and its save outcome, the last
sensitivity sweep (complete, or what a cancelled one finished), the last quantization plan,
the recipe the model was opened with, whether the result is unsaved, and the layer
selection. It holds no widgets: each part has its own change signal, and the widgets listen.
Flows change it; tests can read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from core.data import Dataset
from core.engine import CompressionResult
from core.errors import UnsupportedError
from core.inventory import LayerInfo
from core.loading import LoadedModel
from core.plan import Plan
from core.recipe import Recipe
from core.saving import FormatOption, SaveOutcome
from core.tasks import Opened
from gui.layer_selection import Kind, LayerSelection, layer_kinds


def describe_data(data: Dataset) -> str:
    """'1,797 samples, with labels'."""
    labels = "with labels" if data.y is not None else "no labels"
    return f"{len(data):,} samples, {labels}"


class Session(QObject):
    """The open document; see the module docstring."""

    modelChanged = Signal()  # loaded, layers, before, kinds (a model was opened)
    evalDataChanged = Signal()
    trainDataChanged = Signal()
    resultChanged = Signal()  # result and result_recipe
    saveOutcomeChanged = Signal()
    sweepChanged = Signal()  # sweep and sweep_cached
    planChanged = Signal()
    staleChanged = Signal(bool)  # the result no longer matches the settings (or back)
    openedRecipeChanged = Signal()
    modifiedChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.selection = LayerSelection()
        self.loaded: LoadedModel | None = None
        self.layers: list[LayerInfo] = []
        self.kinds: dict[str, Kind] = {}
        self.before: dict[str, Any] = {}
        self.eval_data: Dataset | None = None
        self.eval_path: Path | None = None
        self.train_data: Dataset | None = None
        self.train_path: Path | None = None
        self.result: CompressionResult | None = None
        self.result_recipe: Recipe | None = None
        self.result_inputs: tuple[Any, ...] | None = None  # what it measured on
        self.save_outcome: SaveOutcome | None = None
        self.save_formats: list[FormatOption] = []  # the result's formats, sizes, refusals
        self.sweep: dict[str, Any] | None = None  # the last sweep's data ("partial": cancelled)
        self.sweep_cached = False
        self.plan: Plan | None = None
        self.result_stale = False
        self.opened_recipe: Recipe | None = None  # what Reset goes back to (None: defaults)
        self.modified = False

    # ------------------------------------------------------------------ reading
    @property
    def has_model(self) -> bool:
        return self.loaded is not None

    @property
    def has_result(self) -> bool:
        return self.result is not None

    @property
    def eager(self) -> bool:
        """Whether the open model can be compressed (an eager nn.Module)."""
        return self.loaded is not None and self.loaded.eager

    def not_eager_error(self) -> UnsupportedError | None:
        """The refusal for compressing or sweeping a model that is not eager, or None."""
        reason = self.loaded.not_eager_reason if self.loaded is not None else None
        return UnsupportedError(reason) if reason else None

    # ------------------------------------------------------------------ changing
    def open(self, opened: Opened) -> None:
        """A newly loaded model replaces the document: no result, no sweep, nothing to save.
        (Its data and its recipe are set by whoever opened it.)"""
        self.loaded = opened.loaded
        self.layers = opened.layers
        self.kinds = layer_kinds(opened.loaded.model) if opened.loaded.eager else {}
        self.before = opened.before
        self.modelChanged.emit()
        self.clear_result()
        self.set_sweep(None, False)
        self.set_plan(None)

    def set_eval_data(self, data: Dataset | None, path: Path | None) -> None:
        self.eval_data, self.eval_path = data, path
        self.evalDataChanged.emit()

    def set_train_data(self, data: Dataset | None, path: Path | None) -> None:
        self.train_data, self.train_path = data, path
        self.trainDataChanged.emit()

    def set_result(
        self,
        result: CompressionResult,
        recipe: Recipe | None,
        inputs: tuple[Any, ...] = (),
        formats: list[FormatOption] | None = None,
    ) -> None:
        """A finished compression (``inputs``: what it measured on; ``formats``: the save
        formats that can hold it, with the predicted sizes): shown, not saved yet."""
        self.result, self.result_recipe, self.result_inputs = result, recipe, inputs
        self.save_formats = list(formats or [])
        self.set_stale(False)
        self.resultChanged.emit()
        self.set_save_outcome(None)
        self.set_modified(True)

    def clear_result(self) -> None:
        self.result, self.result_recipe, self.result_inputs = None, None, None
        self.save_formats = []
        self.set_stale(False)
        self.resultChanged.emit()
        self.set_save_outcome(None)
        self.set_modified(False)

    def set_save_outcome(self, outcome: SaveOutcome | None) -> None:
        """A save of the result (the save recorded it in the report); it is then saved."""
        self.save_outcome = outcome
        self.saveOutcomeChanged.emit()
        if outcome is not None:
            self.set_modified(False)

    def set_sweep(self, data: dict[str, Any] | None, cached: bool) -> None:
        self.sweep, self.sweep_cached = data, cached
        self.sweepChanged.emit()

    def set_plan(self, plan: Plan | None) -> None:
        self.plan = plan
        self.planChanged.emit()

    def set_stale(self, stale: bool) -> None:
        """Whether the shown result is out of date: the settings changed since its run."""
        stale = stale and self.result is not None
        if stale != self.result_stale:
            self.result_stale = stale
            self.staleChanged.emit(stale)

    def set_opened_recipe(self, recipe: Recipe | None) -> None:
        self.opened_recipe = recipe
        self.openedRecipeChanged.emit()

    def set_modified(self, modified: bool) -> None:
        """Whether the result has changes nobody saved (the title's asterisk)."""
        if modified != self.modified:
            self.modified = modified
            self.modifiedChanged.emit(modified)

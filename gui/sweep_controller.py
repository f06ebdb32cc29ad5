"""The sensitivity sweep beside its tab: run it in the background (curves and heatmap rows
stream in as each layer finishes), keep its result in the session (a cancelled sweep keeps
the layers it finished), and turn the target slider into per-layer amounts in the layer
selection, with the curves' prediction for the amounts the tree shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, Signal

from core import tasks
from core.data import Dataset, random_data
from core.errors import RecipeError, UserError
from core.sensitivity import SweepEvent, SweepResult, SweepSettings, allocate, predicted
from gui import choices, prefs
from gui.cluster_link import ClusterLink, where_text
from gui.feedback import Feedback
from gui.recipe_state import PruneSettings, selection_patterns
from gui.sensitivity_panel import SensitivityPanel
from gui.sensitivity_tab import drop_text, metric_label, metric_text
from gui.session import Session
from gui.settings_panel import SettingsPanel
from gui.worker import JobRunner

EMPTY_HINT = (
    "Run \u203a Sensitivity Sweep (Ctrl+Alt+R) prunes each checked layer alone\n"
    "at each amount and plots what happens to the metric"
)
SWEEP_TYPES = None  # what a sweep covers when no layer is checked: every prunable layer


class SweepController(QObject):
    """Runs sweeps for the window and connects their result to the tree; see the module
    docstring. ``current_layer`` names the tree's current row (the curve to highlight)."""

    finished = Signal(object)  # SweepResult
    cancelled = Signal()
    failed = Signal(object)  # the exception
    amountsAllocated = Signal(dict)  # the automatic per-layer amounts now in the tree

    def __init__(
        self,
        session: Session,
        runner: JobRunner,
        feedback: Feedback,
        panel: SensitivityPanel,
        settings: SettingsPanel,
        current_layer: Callable[[], str | None],
        show_tab: Callable[[], None],
        link: ClusterLink,
    ) -> None:
        super().__init__(panel)
        self.session = session
        self.runner = runner
        self.feedback = feedback
        self.panel = panel
        self.chart = panel.chart
        self.heatmap = panel.heatmap
        self.settings = settings
        self._current_layer = current_layer
        self._show_tab = show_tab
        self._before: tuple[dict[str, Any] | None, bool] = (None, False)
        self._started = 0.0
        self._partial: dict[str, Any] = {}  # the running sweep's finished layers, meta
        self.link = link
        panel.set_run_on(link.address, prefs.cluster_address())
        panel.runOnChanged.connect(self._on_run_on_changed)
        panel.runRequested.connect(self.run)
        panel.targetChanged.connect(self.apply_target)
        session.sweepChanged.connect(self._on_sweep_changed)

    # ------------------------------------------------------------------ settings
    def sweep_settings(self) -> SweepSettings:
        """The sweep the window would run: the checked layers (all Conv/Linear when none
        are checked), the panel's method, the tab's amounts, samples and quantize option.
        RecipeError names a bad setting."""
        loaded = self.session.loaded
        if loaded is None:
            raise RecipeError("no model is open")
        checked = self.session.selection.checked_names()
        if checked:
            layers, types = selection_patterns(loaded.model, self.session.layers, checked)
        else:
            layers, types = ["*"], SWEEP_TYPES
        prune = self.settings.prune_settings()
        method = choices.DEFAULT_METHOD if prune.is_global else prune.method
        return SweepSettings(
            layers=layers,
            types=types,
            method=method,
            amounts=self.panel.amounts(),
            n=prune.n,
            dim=prune.dim,
            quantize=self.panel.quantize_scheme(),
            subset=self.panel.subset(),
        )

    def _data(self) -> Dataset:
        if self.session.eval_data is not None:
            return self.session.eval_data
        shape = self.settings.input_shape()
        if shape is None:
            raise RecipeError(
                "a sensitivity sweep measures the model: choose evaluation data (File \u203a "
                "Open Evaluation Data) or give an input shape in the settings"
            )
        return random_data(shape)

    def _on_run_on_changed(self) -> None:
        try:
            address = self.panel.run_on()
        except UserError as exc:  # a cluster without its address yet
            self.link.set_problem(str(exc))
            return
        self.link.set_address(address)

    def set_scheme(self, scheme: str) -> None:
        """The settings panel's scheme, for "Also quantize alone"."""
        self.panel.set_scheme(scheme, choices.scheme_label(scheme))

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """Sweep each selected layer alone in the background; curves stream into the tab."""
        loaded = self.session.loaded
        if self.runner.busy or loaded is None:
            return
        refusal = self.session.not_eager_error()
        if refusal is not None:
            self.feedback.error(refusal)
            return
        try:
            settings = self.sweep_settings()
            data = self._data()
            self.link.set_address(self.panel.run_on())
        except UserError as exc:
            self.feedback.error(exc)
            return
        self._before = (self.session.sweep, self.session.sweep_cached)
        self._started = time.perf_counter()
        self._partial = {
            "settings": settings.key(),
            "method": settings.method,
            "data": {
                "source": data.source,
                "samples": min(len(data), settings.subset or len(data)),
            },
            "layers": [],
            "partial": True,
        }
        checked = self.session.selection.checked_names()
        self.panel.choose_view(len(checked) or sum(i.prunable for i in self.session.layers))
        self.chart.clear("Measuring\u2026 each layer's curve appears as it finishes")
        self.heatmap.clear("Measuring\u2026 each layer's row appears as it finishes")
        self.panel.set_has_result(False)
        self.panel.set_failed([])
        self._show_tab()
        self.feedback.log(
            f"sensitivity: {json.dumps(settings.key())} on {data.source}, evaluated on "
            + where_text(self.link.address)
        )
        self.runner.start(
            "sensitivity",
            self.link.job(
                partial(tasks.sweep_model, loaded, data, settings), lambda m: SweepEvent(0, 0, m)
            ),
            on_progress=self._on_progress,
            on_finished=self._on_finished,
            on_cancelled=self._on_cancelled,
            on_failed=self._on_failed,
        )

    def _on_progress(self, event: SweepEvent | None, layers: list[dict[str, Any]]) -> None:
        if event is not None:
            self.chart.set_meta(event.baseline, event.metric)
            self.heatmap.set_meta(event.baseline, event.metric)
            if event.baseline is not None:
                self._partial["baseline"] = event.baseline
            if event.metric is not None:
                self._partial["metric"] = event.metric
        if layers:
            self.chart.add_layers(layers)
            self.heatmap.add_layers(layers)
            self._partial["layers"].extend(layers)
            for row in layers:
                if row.get("failed"):
                    self.feedback.log(f"sensitivity: {row['name']} failed: {row['failed']}")
                else:
                    self.feedback.log(f"sensitivity: {row['name']} done")
            failed = [r for r in self._partial["layers"] if r.get("failed")]
            if failed:
                self.panel.set_failed(failed)

    def _on_finished(self, result: SweepResult) -> None:
        seconds = time.perf_counter() - self._started
        self.session.set_sweep(result.data, result.cached)
        n = len(result.data["layers"])
        failed = sum(1 for r in result.data["layers"] if r.get("failed"))
        where = "from the cache" if result.cached else f"in {seconds:.1f} s"
        self.feedback.log(
            f"sensitivity: {n} layers {where}"
            + (f" ({result.cache_path})" if result.cache_path else "")
        )
        for note in result.notes:
            self.feedback.log(f"sensitivity: {note}")
        self.feedback.status(
            f"Sensitivity of {n} layer{'s' * (n != 1)} {where}"
            + (f" ({failed} failed: see above the curves)" if failed else "")
            + ": move the target slider to get per-layer amounts"
        )
        self.finished.emit(result)

    def _on_cancelled(self) -> None:
        done = self._partial.get("layers", [])
        if done and "baseline" in self._partial and "metric" in self._partial:
            # what finished is kept: its curves stay, and the slider can use them; the core
            # cached the layers that did not fail
            self.session.set_sweep(dict(self._partial), False)
            n = len(done)
            kept = "kept and cached (a sweep with the same settings measures only the rest)"
            if all(row.get("failed") for row in done):
                kept = "kept (not cached: every one of them failed)"
            self.feedback.log(
                f"sensitivity sweep cancelled after {n} layer{'s' * (n != 1)}: their curves "
                f"are {kept}; the model is unchanged"
            )
            self.feedback.status(
                f"Sensitivity sweep cancelled: the {n} finished layer{'s' * (n != 1)} "
                "are kept; the model is unchanged"
            )
        else:
            self.session.set_sweep(*self._before)  # the previous result again (or none)
            self.feedback.log("sensitivity sweep cancelled: the model is unchanged")
            self.feedback.status("Sensitivity sweep cancelled: nothing was changed")
        self.cancelled.emit()

    def _on_failed(self, exc: BaseException, trace: str) -> None:
        self.session.set_sweep(*self._before)
        self.feedback.status("Sensitivity sweep failed: nothing was changed")
        self.feedback.error(exc, trace)
        self.failed.emit(exc)

    # ------------------------------------------------------------------ showing
    def _on_sweep_changed(self) -> None:
        data, cached = self.session.sweep, self.session.sweep_cached
        if data is None:
            self.chart.clear(EMPTY_HINT)
            self.heatmap.clear()
            self.panel.set_has_result(False)
            self.panel.set_layer_names([])
            self.panel.set_failed([])
            return
        samples = (data.get("data") or {}).get("samples")
        note = metric_label(data["metric"]) + (f", {samples:,} samples" if samples else "")
        if data.get("partial"):
            note += f"; cancelled after {len(data['layers'])} layers (kept and cached)"
        amounts = (data.get("settings") or {}).get("amounts", [])
        self.chart.set_result(data, cached, note)
        self.heatmap.set_result(data)
        self.panel.set_failed([r for r in data["layers"] if r.get("failed")])
        self.panel.set_layer_names([row["name"] for row in data["layers"]])
        self.chart.set_state_tip(
            f"method {data.get('method', '')}, amounts "
            + ", ".join(f"{100 * a:g}%" for a in amounts)
        )
        self.panel.highlight(self._current_layer())
        tops = [max(p["amount"] for p in row["points"]) for row in data["layers"] if row["points"]]
        self.panel.set_has_result(bool(tops), min(tops, default=None))
        self.update_prediction()

    # ------------------------------------------------------------------ amounts
    def apply_target(self) -> dict[str, float] | None:
        """The target slider (and max drop) -> per-layer amounts in the tree, checked."""
        data = self.session.sweep
        if data is None or self.session.loaded is None or self.runner.busy:
            return None
        try:
            amounts = allocate(data, self.panel.target(), self.panel.max_drop(data["metric"]))
        except UserError as exc:
            self.panel.set_prediction(str(exc).replace("--", ""), error=True)
            return None
        self.set_layer_amounts(amounts, data.get("method", choices.DEFAULT_METHOD))
        self.amountsAllocated.emit(amounts)
        return amounts

    def set_layer_amounts(self, amounts: dict[str, float], method: str) -> None:
        """Per-layer amounts into the tree: layers with an amount are checked; a checked
        layer the allocation gives 0 stays checked at 0% (shown, and said in the log, never
        silently unchecked); the rest is left alone; pruning switches to per layer with
        ``method``."""
        selection = self.session.selection
        prune = self.settings.prune_settings()
        if prune.method != method:
            self.settings.set_prune_settings(
                PruneSettings(method, prune.amount, prune.n, prune.dim, prune.permanent)
            )
        was_checked = set(selection.checked_names())
        chosen = {name for name, a in amounts.items() if a > 0}
        zero = sorted(n for n, a in amounts.items() if a <= 0 and n in was_checked)
        selection.set_checked_names(was_checked | chosen)
        overrides = {n: a for n, a in selection.overrides().items() if n not in amounts}
        overrides.update({n: a for n, a in amounts.items() if a > 0})
        overrides.update({n: 0.0 for n in zero})
        selection.set_overrides(overrides)
        if zero:
            shown = ", ".join(zero[:6]) + (" \u2026" if len(zero) > 6 else "")
            self.feedback.log(
                f"allocation: {len(zero)} checked layer{'s' * (len(zero) != 1)} get 0% and "
                f"stay checked at 0% (uncheck to leave out): {shown}"
            )
        self.update_prediction()

    def update_prediction(self) -> None:
        """What the curves predict for the amounts the tree shows now (hand edits too)."""
        data = self.session.sweep
        if data is None:
            return
        selection = self.session.selection
        amounts: dict[str, float] = {}
        for row in data["layers"]:
            amount = selection.effective_amount(row["name"])
            if isinstance(amount, int):  # a count of weights
                amount = amount / row["parameters"] if row["parameters"] else 0.0
            amounts[row["name"]] = float(amount or 0.0)
        self.chart.set_markers(amounts)
        guess = predicted(data, amounts)
        self.panel.show_sparsity(guess["sparsity"])
        metric = data["metric"]
        baseline = float(data["baseline"])
        n = len(data["layers"])
        self.panel.set_prediction(
            f"Predicted for the {n} swept layer{'s' * (n != 1)}: "
            f"<b>{100 * guess['sparsity']:.1f}%</b> zero weights, "
            f"{metric_label(metric)} <b>{metric_text(metric, guess['metric'])}</b> "
            f"({drop_text(metric, guess['metric'] - baseline)} from "
            f"{metric_text(metric, baseline)}; per-layer drops added up)"
        )

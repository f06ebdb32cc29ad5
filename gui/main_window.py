"""The main window: layer tree (left), results (centre), settings (right), progress (bottom).

It lays the widgets out, builds its actions from ``gui.actions``, and connects the parts: the
open document is the ``Session``; opening files, compressing, saving, the sensitivity sweep
and Recommend are flows (``OpenFlow``, ``CompressFlow``, ``SaveFlow``, ``SweepController``,
``PlanFlow``) that run their jobs on one ``JobRunner`` with their own callbacks; every message
goes through one ``Feedback`` (dialogs, or stderr and an exit code when scripted); whether
the window may close is the ``CloseGuard``'s. What is left here is what joins them:
installing an opened model, the recipe the widgets show, the preview of what it will do,
whether the shown result is still what the settings say, and the window's own mechanics
(title, geometry, drops, closing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from core import demos as core_demo
from core.atomic import atomic_write_bytes, describe_removed, on_stale_removed
from core.demos import DEFAULT_DEMO
from core.errors import UserError
from core.progress import Progress
from core.recipe import Recipe, load_recipe
from core.report import Report
from core.tasks import Opened, warm_up
from gui import dialogs, file_menus, prefs
from gui.actions import ActionContext, ActionTable
from gui.close_guard import CloseGuard
from gui.cluster_link import ClusterLink
from gui.compress_flow import CompressFlow
from gui.feedback import APP_NAME, DialogFeedback, Discard, Feedback, ScriptedFeedback
from gui.layer_selection import Kind
from gui.layer_tree import LayerTreePanel
from gui.open_flow import OpenFlow
from gui.options import Options
from gui.plan_flow import PlanFlow
from gui.recipe_editor import RecipeEditor
from gui.recipe_state import WindowState, scheme_options
from gui.removal_preview import RemovalPreview
from gui.report_rows import SparsityRow, planned_kept, planned_rows
from gui.results_area import ResultsArea
from gui.save_flow import SaveFlow, png_bytes
from gui.session import Session, describe_data
from gui.settings_panel import SettingsPanel
from gui.sweep_controller import SweepController
from gui.worker import JobRunner

MODEL_FILTERS = (
    "PyTorch models (*.pt *.pth *.bin *.safetensors *.pt2 *.ts *.pkl)",
    "State dicts (*.pt *.pth *.bin *.safetensors)",
    "Pickled models (*.pt *.pth *.pkl)",
    "TorchScript archives (*.pt *.ts)",
    "Exported programs (*.pt2)",
    "All files (*)",
)
DATA_FILTER = "Data (*.npz *.pt);;All files (*)"
DEFAULT_SPLIT = (580, 500, 300)  # tree, results, settings at the default 1400 px width
MIN_RESULTS = 380  # the results keep this much when the tree widens for a new column


class MainWindow(QMainWindow):
    """Open a model, choose layers and settings, compress, read the results, save.

    The signals are the window's scripting interface (``secateur --run``, tests, benchmarks).
    """

    modelLoaded = Signal()
    runFinished = Signal(object)  # CompressionResult
    runCancelled = Signal()
    runFailed = Signal(object)  # the exception
    saved = Signal(object)  # SaveOutcome
    sweepFinished = Signal(object)  # SweepResult
    sweepCancelled = Signal()
    sweepFailed = Signal(object)  # the exception
    planFinished = Signal(object)  # Plan
    planCancelled = Signal()
    amountsAllocated = Signal(dict)  # the automatic per-layer amounts now in the tree
    exitRequested = Signal(int)  # scripted mode: the exit code
    staleRemoved = Signal(str)  # a cleanup removed temporaries an interrupted write left

    def __init__(self, options: Options | None = None) -> None:
        super().__init__()
        self.options = options or Options()
        self._force_close = False
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.session = Session(self)
        self.jobs = JobRunner(self)
        self._build_widgets()
        sinks = (self.results.append_log, self.step_label.setText)
        self.feedback: Feedback = (
            ScriptedFeedback(self.exitRequested.emit, *sinks)
            if self.options.scripted
            else DialogFeedback(self, *sinks)
        )
        self.removal = RemovalPreview(self.session, self.jobs, self)
        self.recipes = RecipeEditor(
            self.session, self.settings, self.tree.model, self.feedback, self, self.removal
        )
        args = (self.session, self.jobs, self.feedback)
        self.opener = OpenFlow(*args, self._install, self)
        self.runs = CompressFlow(*args, self.tree.model, self.results, self._show_results, self)
        self.saves = SaveFlow(*args, self)
        self.cluster = ClusterLink(self.jobs, self)
        self.cluster.statusChanged.connect(self._show_cluster_status)
        self._show_cluster_status(self.cluster.idle_text())
        self.sweeps = SweepController(
            *args,
            self.results.sensitivity_panel,
            self.settings,
            self.tree.current_layer,
            self.results.show_sensitivity_tab,
            self.cluster,
        )
        self.plans = PlanFlow(*args, self.settings, self.results, self.cluster, self)
        self.closer = CloseGuard(*args, self.saves, self.close, self)
        self.tree.details.bind(self.session)
        self.tree.set_scheme_options(
            lambda name: (
                scheme_options(self.session.loaded.model, name)
                if self.session.loaded is not None and self.session.eager
                else []
            )
        )
        self._actions = ActionTable(self, self._action_slots())
        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._actions.build(toolbar, self.tree.add_check_action)
        self.addToolBar(toolbar)
        recent = self._actions.submenus["recent"]
        recent.aboutToShow.connect(lambda: file_menus.fill_recent(recent, self.open_model))
        file_menus.fill_demos(
            self._actions.submenus["demos"], self.action("demo").shortcut(), self.open_demo
        )
        # the core removes stale temporaries (of a killed save) on open, from any thread;
        # the Log says what went, on the GUI thread
        self.staleRemoved.connect(lambda line: self.feedback.log(f"note: {line}"))
        self._stop_stale = on_stale_removed(
            lambda removed: self.staleRemoved.emit(describe_removed(removed))
        )
        self._connect()
        self._restore_geometry()
        self._update_actions()
        self._update_title()

    # ================================================================= layout
    def _build_widgets(self) -> None:
        self.tree = LayerTreePanel(self.session.selection, self)
        self.settings = SettingsPanel(self)
        self.results = ResultsArea(self)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        for i, (widget, stretch) in enumerate(
            ((self.tree, 0), (self.results, 1), (self.settings, 0))
        ):
            self.splitter.addWidget(widget)
            self.splitter.setStretchFactor(i, stretch)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes(list(DEFAULT_SPLIT))
        outer = QWidget(self)
        outer_layout = QVBoxLayout(outer)
        outer_layout.setContentsMargins(8, 6, 8, 4)
        outer_layout.addWidget(self.splitter)
        self.setCentralWidget(outer)

        self.step_label = QLabel(
            "Open a model to start (File \u203a Open Model, or drop a file here)"
        )
        self.step_label.setMinimumWidth(200)
        # a long message is cut at the window's edge; it never widens the window
        self.step_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar(self)
        self.progress.setFixedWidth(260)
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop after the current step; nothing is changed (Esc)")
        self.cancel_button.setEnabled(False)
        self.cluster_label = QLabel(self)
        self.cluster_label.setToolTip(
            "Where sensitivity sweeps and Recommend's fidelity step evaluate (Sensitivity tab, "
            "Run on); latency is always measured on this machine"
        )
        bar = self.statusBar()
        bar.addWidget(self.step_label, 1)
        bar.addPermanentWidget(self.cluster_label)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def _action_slots(self) -> dict[str, Callable[[], Any]]:
        selection = self.session.selection
        return {
            "open": self.open_model_dialog,
            "demo": self.open_demo,
            "open_data": partial(self._open_data_dialog, "Open Evaluation Data", True),
            "open_train": partial(self._open_data_dialog, "Open Training Data", False),
            "save": self.saves.save_dialog,
            "export": partial(self.saves.export_dialog, self.results.chart_images),
            "load_recipe": self.recipes.load_dialog,
            "save_recipe": self.recipes.save_dialog,
            "quit": self.close,
            "reset": self.reset,
            "find": self.tree.focus_filter,
            "check_all": partial(selection.check_where, lambda info: True),
            "check_linear": partial(selection.check_kind, Kind.LINEAR),
            "check_conv": partial(selection.check_kind, Kind.CONV),
            "check_none": partial(selection.set_checked_names, []),
            "invert": selection.invert,
            "run": self.run_compression,
            "sensitivity": self.sweeps.run,
            "recommend": self.plans.run,
            "cancel": self.cancel_job,
            "about": lambda: dialogs.show_about(self),
            "about_qt": QApplication.aboutQt,
        }

    def action(self, action_id: str) -> QAction:
        """The window's action with this id (see ``gui.actions.ACTIONS``)."""
        return self._actions[action_id]

    def submenu(self, menu_id: str) -> QMenu:
        """The window's submenu with this id ("recent", "demos")."""
        return self._actions.submenus[menu_id]

    def _connect(self) -> None:
        session, settings, tree = self.session, self.settings, self.tree
        for source, target in (
            (self.runs.finished, self.runFinished),
            (self.runs.cancelled, self.runCancelled),
            (self.runs.failed, self.runFailed),
            (self.saves.saved, self.saved),
            (self.sweeps.finished, self.sweepFinished),
            (self.sweeps.cancelled, self.sweepCancelled),
            (self.sweeps.failed, self.sweepFailed),
            (self.plans.finished, self.planFinished),
            (self.plans.cancelled, self.planCancelled),
            (self.sweeps.amountsAllocated, self.amountsAllocated),
        ):
            source.connect(target)
        self.jobs.progress.connect(self._on_job_progress)
        self.jobs.busyChanged.connect(self._on_busy_changed)
        # a job's outcome is delivered (perhaps with a dialog) with the actions already idle
        for ended in (self.jobs.finished, self.jobs.cancelled, self.jobs.failed):
            ended.connect(lambda *outcome: self._update_actions())
        self.cancel_button.clicked.connect(self.cancel_job)
        for signal in (session.modelChanged, session.resultChanged):
            signal.connect(self._update_actions)
        session.modelChanged.connect(self._update_title)
        session.modifiedChanged.connect(self.setWindowModified)
        session.evalDataChanged.connect(self._on_data_changed)
        session.trainDataChanged.connect(self._on_data_changed)
        session.saveOutcomeChanged.connect(self._on_save_outcome_changed)
        session.staleChanged.connect(self.results.set_stale)
        session.staleChanged.connect(tree.model.set_stale)
        settings.runRequested.connect(self.run_compression)
        settings.recommendRequested.connect(self.action("recommend").trigger)
        settings.changed.connect(lambda: self.sweeps.set_scheme(settings.scheme()))
        self.recipes.previewed.connect(self._on_previewed)
        self.removal.changed.connect(self._on_removal_previewed)
        settings.evalBrowseRequested.connect(self.action("open_data").trigger)
        settings.trainBrowseRequested.connect(self.action("open_train").trigger)
        settings.evalClearRequested.connect(lambda: session.set_eval_data(None, None))
        settings.trainClearRequested.connect(lambda: session.set_train_data(None, None))
        tree.layerSelected.connect(self.results.highlight)
        self.results.layerClicked.connect(tree.select_layer)
        self.results.saveChartRequested.connect(self.saves.save_chart_dialog)

    # ================================================================ helpers
    def log(self, message: str) -> None:
        self.feedback.log(message)

    def show_error(self, exc: BaseException, trace: str = "") -> None:
        """A message box (or, when scripted, one line on stderr and an exit code)."""
        self.feedback.error(exc, trace)

    def _update_title(self) -> None:
        name = self.session.loaded.display_name if self.session.loaded else None
        self.setWindowTitle(f"{name}[*] \u2014 {APP_NAME}" if name else f"{APP_NAME}[*]")

    @Slot()
    def _update_actions(self) -> None:
        """Every action's and control's enabled state, from one context."""
        s = self.session
        busy = self.jobs.busy
        self._actions.update(ActionContext(s.has_model, busy, s.has_result, s.eager))
        self.results.sensitivity_panel.set_running(busy, s.eager)
        self.cancel_button.setEnabled(busy)
        self.settings.set_running(busy or not s.has_model)
        self.tree.model.set_locked(busy)

    def _restore_geometry(self) -> None:
        geometry, state, splitter = prefs.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            screen = QGuiApplication.primaryScreen()
            available = screen.availableGeometry() if screen is not None else None
            width, height = 1400, 900
            if available is not None and QGuiApplication.platformName() != "offscreen":
                width = min(width, available.width())
                height = min(height, available.height())
            self.resize(width, height)
        if state is not None:
            self.restoreState(state)
        if splitter is not None:
            self.splitter.restoreState(splitter)
        self._split_pending = splitter is None

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._split_pending:  # sizes only stick once the window has its real width
            self._split_pending = False
            handles = self.splitter.handleWidth() * (self.splitter.count() - 1)
            room = self.splitter.width() - handles
            tree, centre, settings = DEFAULT_SPLIT
            if room >= sum(DEFAULT_SPLIT):
                centre = room - tree - settings  # a wider window widens the results
            else:
                scale = room / sum(DEFAULT_SPLIT)
                tree, settings = int(tree * scale), int(settings * scale)
                centre = room - tree - settings
            self.splitter.setSizes([tree, centre, settings])

    # ============================================================ open model
    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open Model", prefs.last_folder("model"), ";;".join(MODEL_FILTERS)
        )
        if path:
            prefs.set_last_folder("model", Path(path))
            self.open_model(Path(path))

    def open_demo(self, name: str | None = None) -> None:
        """Open a bundled demo (``core.demos.DEMOS``; the default one when None) with its
        data and its own recipe."""
        if self._confirm_discard("open the demo"):
            self.opener.open_demo(name or DEFAULT_DEMO)

    def open_model(self, path: Path, arch: str | None = None, trust: bool = False) -> None:
        """Open a model file; a state dict asks for its architecture, a pickle for trust."""
        if self._confirm_discard("open another model"):
            self.opener.open_model(path, arch or prefs.arch_for(path), trust)

    def when_loaded(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the model being opened is shown (dropped if opening fails)."""
        self.opener.when_loaded(action)

    def warm_up(self) -> None:
        """Load the slow-to-import libraries on the worker thread, before the first run
        needs them (``secateur`` calls this once the window is shown)."""
        self.jobs.prepare(warm_up)

    def _install(self, opened: Opened) -> None:
        """Show a model that has just been loaded, with the settings it opens with."""
        loaded, session = opened.loaded, self.session
        session.open(opened)
        t0 = time.perf_counter()
        self.tree.show_layers(opened.layers, loaded.display_name, session.kinds)
        tree_ms = 1000 * (time.perf_counter() - t0)
        demo = loaded.format == "demo"
        session.set_eval_data(opened.eval_data, core_demo.TEST_DATA_PATH if demo else None)
        session.set_train_data(opened.train_data, core_demo.TRAIN_DATA_PATH if demo else None)
        self.settings.set_input_shape("x".join(map(str, core_demo.INPUT_SHAPE)) if demo else "")
        recipe = None
        if loaded.demo is not None and self.options.recipe is None:
            recipe = load_recipe(core_demo.DEMOS[loaded.demo].recipe)
        if recipe is not None:
            self.recipes.apply(recipe, quiet=True)
        else:
            self.recipes.apply_defaults()
        session.set_opened_recipe(recipe)
        self._show_results(None)
        self.results.clear_finetune()
        if loaded.path is not None and not demo:
            prefs.add_recent_file(loaded.path)
        n_prunable = sum(1 for info in opened.layers if info.prunable)
        self.log(
            f"opened {loaded.display_name}: {loaded.class_name} ({loaded.format}), "
            f"{len(opened.layers):,} modules, {n_prunable:,} prunable, "
            f"{session.before.get('parameters', 0):,} parameters "
            f"(load {opened.seconds:.2f} s, tree {tree_ms:.0f} ms)"
        )
        for note in loaded.notes:
            self.log(f"note: {note}")
        if loaded.eager:
            self.feedback.status(
                f"Opened {loaded.display_name}: check layers, choose settings, Compress"
            )
        else:
            self.log(f"note: {loaded.not_eager_reason}")
            self.feedback.status(loaded.not_eager_reason or "")
        self.modelLoaded.emit()

    # ================================================================== data
    def _open_data_dialog(self, title: str, evaluation: bool) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title, prefs.last_folder("data"), DATA_FILTER)
        if not path:
            return
        prefs.set_last_folder("data", Path(path))
        (self.open_eval_data if evaluation else self.open_train_data)(Path(path))

    def open_eval_data(self, path: Path, on_done: Callable[[bool], None] | None = None) -> None:
        """Read evaluation data in the background; ``on_done(ok)`` when it is over."""
        self.opener.open_eval_data(path, on_done)

    def open_train_data(self, path: Path, on_done: Callable[[bool], None] | None = None) -> None:
        """Read training data in the background; ``on_done(ok)`` when it is over."""
        self.opener.open_train_data(path, on_done)

    @Slot()
    def _on_data_changed(self) -> None:
        s = self.session
        info = []
        for data, path, set_file, label in (
            (s.eval_data, s.eval_path, self.settings.set_eval_file, "Evaluate"),
            (s.train_data, s.train_path, self.settings.set_train_file, "Train"),
        ):
            if data is None:
                set_file("", "")
                continue
            described = describe_data(data)
            set_file(path.name if path else data.source, f"{path or data.source}\n{described}")
            info.append(f"{label}: {described}.")
        self.settings.set_data_info(" ".join(info))
        self._check_stale()

    # ================================================================ recipes
    def window_state(self) -> WindowState:
        """What the tree and the settings show, as plain data."""
        return self.recipes.state()

    def current_recipe(self) -> Recipe:
        """The one recipe the window shows; RecipeError names a bad setting."""
        return self.recipes.current()

    def apply_recipe(self, recipe: Recipe) -> bool:
        """Set the tree and the settings from a recipe; False (after a message) if it fails."""
        return self.recipes.apply_or_report(recipe)

    def load_recipe_file(self, path: Path) -> bool:
        """Set the tree and the settings from a recipe file; False (after a message) if not."""
        return self.recipes.load_file(path)

    @Slot()
    def _on_previewed(self) -> None:
        if self.session.result is None and not self.jobs.busy:
            self.results.update_planned(self._planned_rows())
        self.sweeps.update_prediction()
        self._check_stale()

    @Slot()
    def _on_removal_previewed(self) -> None:
        """The removal plan is known: mark the layers that follow, say what shrinks."""
        plan, removal = self.removal.plan, self.removal
        self.tree.model.set_coupling(plan.followers() if plan is not None else {})
        self.settings.set_removal_preview(removal.summary(), error=removal.error is not None)
        if self.session.result is None and not self.jobs.busy:
            self.results.update_planned(self._planned_rows())

    def _check_stale(self) -> None:
        """The result is out of date once the recipe or the data differ from its run's."""
        s = self.session
        if s.result is None or s.result_recipe is None or self.jobs.busy:
            return
        try:
            recipe, shape = self.current_recipe(), self.settings.input_shape()
        except UserError:
            s.set_stale(True)
            return
        data, ran_shape = s.result_inputs or (None, None)
        same_inputs = data is s.eval_data and (data is not None or ran_shape == shape)
        s.set_stale(recipe.to_dict() != s.result_recipe.to_dict() or not same_inputs)

    # ================================================================== run
    def run_compression(self) -> None:
        """Compress a copy of the model with the recipe the window shows."""
        if self.jobs.busy or self.session.loaded is None:
            return
        try:
            recipe = self.current_recipe()
            shape = self.settings.input_shape()
        except UserError as exc:
            self.show_error(exc)
            return
        self.runs.run(recipe, shape)

    def run_sensitivity(self) -> None:
        """Sweep each selected layer alone in the background (see SweepController.run)."""
        self.sweeps.run()

    def cancel_job(self) -> None:
        if self.jobs.cancel():
            self.feedback.status("Cancelling\u2026 (stops after the current step)")

    @Slot(bool)
    def _on_busy_changed(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
            self.progress.setValue(0)
        self._update_actions()

    @Slot(object, list)
    def _on_job_progress(self, event: Progress | None, layers: list) -> None:
        """Any job's step in the status bar (what the step means is its flow's business)."""
        if event is None:
            return
        if event.total:
            self.progress.setRange(0, event.total)
            self.progress.setValue(event.step)
            self.progress.setFormat("%v / %m")
        else:
            self.progress.setRange(0, 0)
        self.feedback.status(event.message[:1].upper() + event.message[1:] + "\u2026")

    # ============================================================== results
    def _show_results(self, report: Report | None) -> None:
        """Tree columns, charts, table, notes and cards for a report (None: before only)."""
        self.tree.model.set_results(report.layers if report else None)
        if report is not None and any(row.reshaped for row in report.layers):
            zeroed = any(row.sparsity_after for row in report.layers)
            self._widen_tree(self.tree.show_reshaped(zeroed))
            self.tree.fit_reshaped()
        else:
            self.tree.restore_columns()
        current = self.tree.current_layer()
        if report:
            prunable = [info.name for info in self.session.layers if info.prunable]
            self.results.show_report(self.session.before, report, current, prunable)
        else:
            self.results.show_planned(self.session.before, self._planned_rows(), current)

    def _widen_tree(self, extra: int) -> None:
        """Give the tree ``extra`` pixels from the results (which keep MIN_RESULTS)."""
        sizes = self.splitter.sizes()
        floor = max(MIN_RESULTS, self.results.minimumSizeHint().width())
        take = min(extra, max(0, sizes[1] - floor))
        if take > 0:
            self.splitter.setSizes([sizes[0] + take, sizes[1] - take, *sizes[2:]])

    def _planned_rows(self) -> list[SparsityRow]:
        """Before a run: the weights each layer keeps now and, light, what it will keep."""
        prune = self.settings.prune_settings()
        amount, kept = self.session.selection.effective_amount, self.removal.kept()
        removes, is_global = prune.removes, prune.is_global  # once, not once per layer
        return planned_rows(
            self.session.layers,
            lambda name: planned_kept(amount(name), removes, kept.get(name), is_global),
        )

    @Slot()
    def _on_save_outcome_changed(self) -> None:
        if self.session.result is not None and self.session.save_outcome is not None:
            self.results.update_table(self.session.result.report)

    # ================================================================ reset
    def reset(self) -> None:
        """Drop the result and restore the settings the model was opened with."""
        if self.session.loaded is None or self.jobs.busy:
            return
        if not self._confirm_discard("reset"):
            return
        self.session.clear_result()
        if self.session.opened_recipe is not None:
            self.recipes.apply(self.session.opened_recipe, quiet=True)
        else:
            self.recipes.apply_defaults()
        self._show_results(None)
        self.log("reset: result dropped, settings as opened")
        self.feedback.status("Reset: the settings are as when the model was opened")

    def _confirm_discard(self, action: str) -> bool:
        """True when there is no unsaved result, or the user saves or discards it."""
        if self.session.result is None or not self.isWindowModified():
            return True
        answer = self.feedback.ask_discard(action)
        if answer is Discard.SAVE:
            self.saves.save_dialog()
            return False  # the save runs in the background; the user repeats the action
        return answer is Discard.DISCARD

    # ========================================================== drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile() and not self.jobs.busy:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if not urls or not urls[0].isLocalFile():
            return
        event.acceptProposedAction()
        self.open_dropped(Path(urls[0].toLocalFile()))

    def open_dropped(self, path: Path) -> None:
        """A dropped file: data and recipes go where they belong, anything else is a model."""
        suffix = path.suffix.lower()
        if suffix == ".npz" and self.session.loaded is not None:
            self.open_eval_data(path)
        elif suffix in (".yaml", ".yml", ".json") and self.session.loaded is not None:
            self.load_recipe_file(path)
        else:
            self.open_model(path)

    # ================================================================ closing
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._force_close and not self.closer.may_close(self.isWindowModified()):
            event.ignore()
            return
        try:
            self.jobs.shutdown()
            if not self.jobs.busy:  # never pull Ray from under a job that would not stop
                self.cluster.close()
        finally:
            self._stop_stale()
            prefs.save_window_state(
                self.saveGeometry(), self.saveState(), self.splitter.saveState()
            )
        event.accept()

    def _show_cluster_status(self, text: str) -> None:
        self.cluster_label.setText(text)
        self.cluster_label.setVisible(bool(text))

    def close_without_asking(self) -> None:
        self._force_close = True
        self.close()

    def screenshot(self, path: Path) -> None:
        """Save the whole window as PNG (atomically)."""
        atomic_write_bytes(path, png_bytes(self.grab()))

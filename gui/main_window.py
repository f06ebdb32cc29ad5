"""The main window: layer tree (left), results tabs (centre), settings (right), progress
(bottom). It owns the opened model, the data, the last result and the last sensitivity
sweep, and runs every job (load, compress, sweep, save) through one ``JobRunner``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QFont,
    QGuiApplication,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from core import demos as core_demo
from core.atomic import atomic_write_bytes
from core.data import Dataset, load_data, random_data
from core.engine import CompressionResult, Progress
from core.errors import (
    ArchRequiredError,
    ModelLoadError,
    RecipeError,
    SaveError,
    TrustRequiredError,
    UnsupportedError,
    UserError,
)
from core.formats import default_format
from core.inventory import LayerInfo
from core.loading import LoadedModel
from core.memory import estimate
from core.quantization import describe, plan_quantization
from core.recipe import Recipe, dump_recipe, load_recipe
from core.report import human_bytes
from core.saving import SaveOutcome
from core.sensitivity import SweepResult, SweepSettings, allocate, predicted
from gui import dialogs, prefs, qt_fixes
from gui.charts import LossChart, MetricsChart, SparsityChart, SparsityRow
from gui.jobs import Opened, compress_job, load_job, save_job, sensitivity_job, warm_up_job
from gui.layer_tree import LayerTreePanel, amount_text, is_conv, is_linear
from gui.options import Options
from gui.recipe_state import (
    PruneSettings,
    WindowState,
    build_recipe,
    selection_patterns,
    state_from_recipe,
)
from gui.results import MetricsTable, NotesLabel, SummaryCards
from gui.sensitivity_tab import SensitivityPanel, drop_text, metric_label, metric_text
from gui.settings_panel import SCHEMES, DataRow, SettingsPanel
from gui.worker import JobRunner

qt_fixes.install()  # before any signal is emitted: see gui/qt_fixes.py

APP_NAME = "Secateur"
MODEL_FILTERS = (
    "PyTorch models (*.pt *.pth *.bin *.safetensors *.pt2 *.ts *.pkl)",
    "State dicts (*.pt *.pth *.bin *.safetensors)",
    "Pickled models (*.pt *.pth *.pkl)",
    "TorchScript archives (*.pt *.ts)",
    "Exported programs (*.pt2)",
    "All files (*)",
)
SAVE_FILTERS = {
    "state_dict": "State dict (*.pt *.pth *.safetensors)",
    "pickle": "Pickled model (*.pt *.pth)",
    "torchscript": "TorchScript archive (*.pt *.ts)",
    "exported": "Exported program (*.pt2)",
}
SAVE_SUFFIX = {"state_dict": ".pt", "pickle": ".pt", "torchscript": ".pt", "exported": ".pt2"}
DATA_FILTER = "Data (*.npz *.pt);;All files (*)"
RECIPE_FILTER = "Recipes (*.yaml *.yml *.json);;All files (*)"
DEFAULT_SPLIT = (650, 430, 300)  # tree, results, settings at the default 1400 px width
MODEL_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".pt2", ".ts", ".pkl"}


class MainWindow(QMainWindow):
    """Open a model, choose layers and settings, compress, read the results, save."""

    modelLoaded = Signal()
    runFinished = Signal(object)  # CompressionResult
    runCancelled = Signal()
    runFailed = Signal(object)  # the exception
    saved = Signal(object)  # SaveOutcome
    sweepFinished = Signal(object)  # SweepResult
    sweepCancelled = Signal()
    sweepFailed = Signal(object)  # the exception
    amountsAllocated = Signal(dict)  # the automatic per-layer amounts now in the tree
    exitRequested = Signal(int)  # scripted mode: the exit code

    def __init__(self, options: Options | None = None) -> None:
        super().__init__()
        self.options = options or Options()
        self.loaded: LoadedModel | None = None
        self.layers: list[LayerInfo] = []
        self.before_numbers: dict[str, Any] = {}
        self.eval_data: Dataset | None = None
        self.eval_path: Path | None = None
        self.train_data: Dataset | None = None
        self.train_path: Path | None = None
        self.result: CompressionResult | None = None
        self.result_recipe: Recipe | None = None
        self.save_outcome: SaveOutcome | None = None
        self._opened_recipe: Recipe | None = None
        self._after_load: list[Callable[[], None]] = []
        self._load_request: tuple[Path | None, str | None, bool] | None = None
        self._results_snapshot: Any = None
        self.sensitivity: dict[str, Any] | None = None  # the last complete sweep's data
        self.sensitivity_cached = False
        self._sweep_before: tuple[dict[str, Any] | None, bool] | None = None
        self._sweep_started = 0.0
        self._run_epochs = 0
        self._run_started = 0.0
        self._force_close = False

        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.jobs = JobRunner(self)
        self._build_widgets()
        self._build_actions()
        self._build_menus()
        self._connect()
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(120)
        self._preview_timer.timeout.connect(self._update_preview)
        self._restore_geometry()
        self._update_actions()
        self._update_title()

    # ================================================================= layout
    def _build_widgets(self) -> None:
        self.tree = LayerTreePanel(self)
        self.settings = SettingsPanel(self)

        self.cards = SummaryCards(self)
        self.sparsity_chart = SparsityChart(self)
        self.metrics_chart = MetricsChart(self)
        self.metrics_table = MetricsTable(self)
        self.notes = NotesLabel(self)
        metrics_page = QSplitter(Qt.Orientation.Vertical, self)
        lower = QWidget(metrics_page)
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.metrics_table, 1)
        lower_layout.addWidget(self.notes)
        metrics_page.addWidget(self.metrics_chart)
        metrics_page.addWidget(lower)
        metrics_page.setSizes([320, 360])
        metrics_page.setChildrenCollapsible(False)

        self.log_view = QPlainTextEdit(self)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.TypeWriter)
        self.log_view.setFont(mono)

        self.sensitivity_panel = SensitivityPanel(self)
        self.sensitivity_chart = self.sensitivity_panel.chart
        self.loss_chart = LossChart(self)

        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.sparsity_chart, "Sparsity")
        self.tabs.addTab(metrics_page, "Metrics")
        self.tabs.addTab(self.sensitivity_panel, "Sensitivity")
        self.tabs.addTab(self.loss_chart, "Fine-tune")
        self.tabs.addTab(self.log_view, "Log")

        centre = QWidget(self)
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(6)
        centre_layout.addWidget(self.cards)
        centre_layout.addWidget(self.tabs, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.tree)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(self.settings)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
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
        self.progress = QProgressBar(self)
        self.progress.setFixedWidth(260)
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop after the current step; nothing is changed (Esc)")
        self.cancel_button.setEnabled(False)
        bar = self.statusBar()
        bar.addWidget(self.step_label, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def _action(
        self,
        text: str,
        slot: Callable[..., Any],
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        tip: str = "",
        icon: QStyle.StandardPixmap | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.triggered.connect(lambda checked=False: slot())
        return action

    def _build_actions(self) -> None:
        sp = QStyle.StandardPixmap
        a = self._action
        self.act_open = a(
            "&Open Model\u2026",
            self.open_model_dialog,
            QKeySequence.StandardKey.Open,
            "Open a model file",
            sp.SP_DialogOpenButton,
        )
        self.act_demo = a(
            "Open &Demo",
            self.open_demo,
            "Ctrl+Shift+D",
            "Open the bundled digits CNN with its data and recipe",
            sp.SP_ComputerIcon,
        )
        self.act_open_data = a(
            "Open Evaluation &Data\u2026",
            self.open_eval_data_dialog,
            "Ctrl+D",
            "Data to measure accuracy, fidelity and latency on",
        )
        self.act_open_train = a(
            "Open &Training Data\u2026",
            self.open_train_data_dialog,
            None,
            "Data for the fine-tune step",
        )
        self.act_save = a(
            "&Save Compressed Model\u2026",
            self.save_model_dialog,
            QKeySequence.StandardKey.Save,
            "Write the compressed model to a file",
            sp.SP_DialogSaveButton,
        )
        self.act_export = a(
            "&Export Report\u2026",
            self.export_report_dialog,
            "Ctrl+E",
            "Write the JSON report and the chart images",
        )
        self.act_load_recipe = a(
            "&Load Recipe\u2026",
            self.load_recipe_dialog,
            "Ctrl+L",
            "Set the tree and settings from a recipe file",
        )
        self.act_save_recipe = a(
            "Save &Recipe\u2026",
            self.save_recipe_dialog,
            "Ctrl+Shift+S",
            "Write what the window shows as a recipe for 'secateur compress'",
        )
        self.act_quit = a("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_reset = a(
            "&Reset",
            self.reset,
            "Ctrl+Shift+R",
            "Drop the result and go back to the settings the model opened with",
        )
        self.act_find = a("&Find Layer", self._focus_filter, QKeySequence.StandardKey.Find)
        self.act_check_all = a("Check &All Prunable Layers", self.check_all, "Ctrl+Shift+A")
        self.act_check_linear = a("Check All &Linear Layers", self.check_linear, "Ctrl+Shift+L")
        self.act_check_conv = a("Check All &Conv Layers", self.check_conv, "Ctrl+Shift+C")
        self.act_check_none = a("&Uncheck All", self.check_none, "Ctrl+Shift+N")
        self.act_invert = a("&Invert Checks", self.invert_checks, "Ctrl+I")
        self.act_run = a(
            "&Compress",
            self.run_compression,
            "Ctrl+R",
            "Prune and quantize a copy of the model, then measure",
            sp.SP_MediaPlay,
        )
        self.act_sensitivity = a(
            "&Sensitivity Sweep",
            self.run_sensitivity,
            "Ctrl+Alt+R",
            "Prune each checked layer alone at several amounts and plot the metric",
            sp.SP_FileDialogContentsView,
        )
        self.act_cancel = a(
            "C&ancel",
            self.cancel_job,
            Qt.Key.Key_Escape,
            "Stop the running job after its current step",
            sp.SP_BrowserStop,
        )
        self.act_about = a("&About Secateur", lambda: dialogs.show_about(self))
        self.act_about_qt = a("About &Qt", QApplication.aboutQt)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.act_open)
        file_menu.addAction(self.act_demo)
        self.recent_menu = QMenu("Open &Recent", self)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.act_open_data)
        file_menu.addAction(self.act_open_train)
        file_menu.addSeparator()
        file_menu.addAction(self.act_save)
        file_menu.addAction(self.act_export)
        file_menu.addSeparator()
        file_menu.addAction(self.act_load_recipe)
        file_menu.addAction(self.act_save_recipe)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        edit = menu.addMenu("&Edit")
        edit.addAction(self.act_reset)
        edit.addSeparator()
        edit.addAction(self.act_find)
        for act in (
            self.act_check_all,
            self.act_check_linear,
            self.act_check_conv,
            self.act_check_none,
            self.act_invert,
        ):
            edit.addAction(act)
            self.tree.select_menu.addAction(act)
        run = menu.addMenu("&Run")
        run.addAction(self.act_run)
        run.addAction(self.act_sensitivity)
        run.addSeparator()
        run.addAction(self.act_cancel)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.act_about)
        help_menu.addAction(self.act_about_qt)

        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in (self.act_open, self.act_demo, self.act_save):
            toolbar.addAction(act)
        toolbar.addSeparator()
        toolbar.addAction(self.act_load_recipe)
        toolbar.addAction(self.act_save_recipe)
        toolbar.addSeparator()
        toolbar.addAction(self.act_run)
        toolbar.addAction(self.act_sensitivity)
        toolbar.addAction(self.act_cancel)
        self.addToolBar(toolbar)

    def _connect(self) -> None:
        self.jobs.progress.connect(self._on_job_progress)
        self.jobs.losses.connect(self._on_losses)
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.cancelled.connect(self._on_job_cancelled)
        self.jobs.failed.connect(self._on_job_failed)
        self.jobs.busyChanged.connect(self._on_busy_changed)
        self.cancel_button.clicked.connect(self.cancel_job)
        self.settings.runRequested.connect(self.run_compression)
        self.settings.changed.connect(self._on_settings_changed)
        self.settings.eval_row.browseRequested.connect(self.open_eval_data_dialog)
        self.settings.eval_row.clearRequested.connect(lambda: self.set_eval_data(None, None))
        self.settings.train_row.browseRequested.connect(self.open_train_data_dialog)
        self.settings.train_row.clearRequested.connect(lambda: self.set_train_data(None, None))
        self.tree.model.checksChanged.connect(self._schedule_preview)
        self.tree.model.amountsChanged.connect(self._schedule_preview)
        self.tree.layerSelected.connect(self.sparsity_chart.highlight)
        self.sparsity_chart.layerClicked.connect(self.tree.select_layer)
        self.sparsity_chart.saveRequested.connect(
            lambda: self.save_chart_dialog(self.sparsity_chart, "sparsity")
        )
        self.metrics_chart.saveRequested.connect(
            lambda: self.save_chart_dialog(self.metrics_chart, "metrics")
        )
        self.tree.layerSelected.connect(self.sensitivity_chart.highlight)
        self.sensitivity_chart.layerClicked.connect(self.tree.select_layer)
        self.sensitivity_chart.saveRequested.connect(
            lambda: self.save_chart_dialog(self.sensitivity_chart, "sensitivity")
        )
        self.loss_chart.saveRequested.connect(
            lambda: self.save_chart_dialog(self.loss_chart, "finetune-loss")
        )
        self.sensitivity_panel.runRequested.connect(self.run_sensitivity)
        self.sensitivity_panel.targetChanged.connect(self.apply_target)

    # ================================================================ helpers
    def log(self, message: str) -> None:
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {message}")

    def show_error(self, exc: BaseException, trace: str = "") -> None:
        """A message box (or, when scripted, one line on stderr and an exit code)."""
        self.log(f"error: {exc if isinstance(exc, UserError) else repr(exc)}")
        if self.options.scripted:
            print(f"secateur: error: {exc}", file=sys.stderr)
            if trace and not isinstance(exc, UserError):
                print(trace, file=sys.stderr)
            self.exitRequested.emit(2 if isinstance(exc, UserError) else 1)
            return
        dialogs.show_error(self, exc, trace)

    def _status(self, text: str) -> None:
        self.step_label.setText(text)

    def _update_title(self) -> None:
        name = self.loaded.display_name if self.loaded else None
        self.setWindowTitle(f"{name}[*] \u2014 {APP_NAME}" if name else f"{APP_NAME}[*]")

    def _set_modified(self, modified: bool) -> None:
        self.setWindowModified(modified)

    def _update_actions(self) -> None:
        busy = self.jobs.busy
        has_model = self.loaded is not None
        has_result = self.result is not None
        for act in (self.act_open, self.act_demo, self.act_load_recipe):
            act.setEnabled(not busy)
        self.recent_menu.setEnabled(not busy)
        for act in (
            self.act_open_data,
            self.act_open_train,
            self.act_save_recipe,
            self.act_run,
            self.act_reset,
            self.act_check_all,
            self.act_check_linear,
            self.act_check_conv,
            self.act_check_none,
            self.act_invert,
        ):
            act.setEnabled(has_model and not busy)
        self.act_load_recipe.setEnabled(has_model and not busy)
        eager = has_model and self.loaded is not None and self.loaded.eager
        self.act_sensitivity.setEnabled(eager and not busy)
        self.sensitivity_panel.set_running(busy, eager)
        self.act_save.setEnabled(has_result and not busy)
        self.act_export.setEnabled(has_result and not busy)
        self.act_cancel.setEnabled(busy)
        self.cancel_button.setEnabled(busy)
        self.settings.set_running(busy or not has_model)
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

    def open_demo(self) -> None:
        if not self._confirm_discard("open the demo"):
            return
        self._start_load(None, None, False)

    def open_model(self, path: Path, arch: str | None = None, trust: bool = False) -> None:
        """Open a model file; a state dict asks for its architecture, a pickle for trust."""
        if not self._confirm_discard("open another model"):
            return
        self._start_load(path, arch or prefs.arch_for(path), trust)

    def warm_up(self) -> None:
        """Load the slow-to-import libraries on the worker thread, before the first run
        needs them (``secateur`` calls this once the window is shown)."""
        self.jobs.prepare(warm_up_job)

    def when_loaded(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the model being opened is shown (dropped if opening fails)."""
        self._after_load.append(action)

    def _start_load(self, path: Path | None, arch: str | None, trust: bool) -> None:
        self._load_request = (path, arch, trust)
        self.jobs.start("load", partial(load_job, path, arch, trust))

    def _on_load_finished(self, opened: Opened) -> None:
        path, arch, _ = self._load_request or (None, None, False)
        self._load_request = None
        if path is not None and arch:
            prefs.remember_arch(path, arch)
        self._install(opened)
        pending, self._after_load = self._after_load, []
        for action in pending:
            action()

    def _on_load_failed(self, exc: BaseException, trace: str) -> None:
        request, self._load_request = self._load_request, None
        if request is None or request[0] is None or self.options.scripted:
            self._after_load.clear()
            self.show_error(exc, trace)
            return
        path, arch, trust = request
        if isinstance(exc, TrustRequiredError) and not trust:
            if dialogs.ask_trust(self, path):
                self._start_load(path, arch, True)
            else:
                self._status(f"Not opened: {path.name} (not trusted)")
                self._after_load.clear()
            return
        message = str(exc)
        needs_arch = (arch is None and isinstance(exc, ArchRequiredError)) or (
            arch is not None
            and isinstance(exc, ModelLoadError)
            and (message.startswith("--arch") or "does not fit" in message)
        )
        if needs_arch:
            if arch is not None:
                self.show_error(exc)
            spec = dialogs.ask_arch(self, path, arch, prefs.last_folder("arch"))
            if spec:
                target = spec.rpartition(":")[0]
                if target.endswith(".py"):
                    prefs.set_last_folder("arch", Path(target))
                self._start_load(path, spec, trust)
            else:
                self._after_load.clear()
            return
        self._after_load.clear()
        self.show_error(exc, trace)

    def _install(self, opened: Opened) -> None:
        loaded = opened.loaded
        self.loaded = loaded
        self.layers = opened.layers
        self.result = None
        self.result_recipe = None
        self.save_outcome = None
        self.before_numbers = opened.before
        self._set_modified(False)
        t0 = time.perf_counter()
        self.tree.show_layers(opened.layers, loaded.display_name)
        tree_ms = 1000 * (time.perf_counter() - t0)
        if loaded.format == "demo":
            self.set_eval_data(opened.eval_data, core_demo.TEST_DATA_PATH, quiet=True)
            self.set_train_data(opened.train_data, core_demo.TRAIN_DATA_PATH, quiet=True)
            self.settings.shape_edit.setText("x".join(map(str, core_demo.INPUT_SHAPE)))
        else:
            self.set_eval_data(None, None, quiet=True)
            self.set_train_data(None, None, quiet=True)
            self.settings.shape_edit.clear()
        recipe = None
        if loaded.format == "demo" and self.options.recipe is None:
            recipe = load_recipe(core_demo.DEMO_RECIPE_PATH)
        if recipe is not None:
            self._apply_recipe(recipe, quiet=True)
        else:
            self._apply_defaults()
        self._opened_recipe = recipe  # what Reset goes back to (None: the defaults)
        self._show_results(None)
        self._show_sensitivity(None, False)
        self.loss_chart.clear()
        if loaded.path is not None and loaded.format != "demo":
            prefs.add_recent_file(loaded.path)
        self._update_title()
        self._update_actions()
        n_prunable = sum(1 for info in opened.layers if info.prunable)
        self.log(
            f"opened {loaded.display_name}: {loaded.class_name} ({loaded.format}), "
            f"{len(opened.layers):,} modules, {n_prunable:,} prunable, "
            f"{self.before_numbers.get('parameters', 0):,} parameters "
            f"(load {opened.seconds:.2f} s, tree {tree_ms:.0f} ms)"
        )
        for note in loaded.notes:
            self.log(f"note: {note}")
        if loaded.eager:
            self._status(f"Opened {loaded.display_name}: check layers, choose settings, Compress")
        else:
            self.log(f"note: {self._not_eager_note()}")
            self._status(self._not_eager_note())
        self.modelLoaded.emit()

    def _not_eager_note(self) -> str:
        kind = {"torchscript": "A TorchScript", "exported": "An exported (.pt2)"}.get(
            self.loaded.format if self.loaded else "", "This"
        )
        return (
            f"{kind} model can be inspected but not pruned or quantized: open its state dict "
            "with the architecture (or the pickled model) to compress it"
        )

    def _apply_defaults(self) -> None:
        """A new model: every prunable Linear and Conv layer checked, half of each pruned."""
        self.settings.set_prune_settings(PruneSettings())
        self.settings.set_finetune(None)
        self.settings.set_quantize(None)
        self.tree.model.set_default_amount(0.5, False)
        self.tree.model.set_checked_names(
            info.name
            for info in self.layers
            if info.prunable and (is_linear(info) or is_conv(info))
        )
        self.tree.model.set_overrides({})

    # ================================================================== data
    def open_eval_data_dialog(self) -> None:
        path = self._ask_data("Open Evaluation Data")
        if path is not None:
            self.open_eval_data(path)

    def open_train_data_dialog(self) -> None:
        path = self._ask_data("Open Training Data")
        if path is not None:
            self.open_train_data(path)

    def _ask_data(self, title: str) -> Path | None:
        path, _ = QFileDialog.getOpenFileName(self, title, prefs.last_folder("data"), DATA_FILTER)
        if not path:
            return None
        prefs.set_last_folder("data", Path(path))
        return Path(path)

    def _read_data(self, path: Path) -> Dataset | None:
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            return load_data(path)
        except UserError as exc:
            QApplication.restoreOverrideCursor()
            self.show_error(exc)
            return None
        finally:
            if QApplication.overrideCursor() is not None:
                QApplication.restoreOverrideCursor()

    def open_eval_data(self, path: Path) -> bool:
        data = self._read_data(path)
        if data is not None:
            self.set_eval_data(data, path)
        return data is not None

    def open_train_data(self, path: Path) -> bool:
        data = self._read_data(path)
        if data is not None:
            self.set_train_data(data, path)
        return data is not None

    @staticmethod
    def _describe_data(data: Dataset) -> str:
        labels = "with labels" if data.y is not None else "no labels"
        return f"{len(data):,} samples, {labels}"

    def set_eval_data(self, data: Dataset | None, path: Path | None, quiet: bool = False) -> None:
        self.eval_data, self.eval_path = data, path
        self._show_data(self.settings.eval_row, "evaluation data", data, path, quiet)

    def set_train_data(self, data: Dataset | None, path: Path | None, quiet: bool = False) -> None:
        self.train_data, self.train_path = data, path
        self._show_data(self.settings.train_row, "training data", data, path, quiet)

    def _show_data(
        self, row: DataRow, what: str, data: Dataset | None, path: Path | None, quiet: bool
    ) -> None:
        if data is None:
            row.set_file("", "")
        else:
            where = path or data.source
            described = self._describe_data(data)
            row.set_file(path.name if path else data.source, f"{where}\n{described}")
            if not quiet:
                self.log(f"{what}: {where} ({described})")
        self._update_data_info()

    def _update_data_info(self) -> None:
        parts = []
        if self.eval_data is not None:
            parts.append(f"Evaluate: {self._describe_data(self.eval_data)}.")
        if self.train_data is not None:
            parts.append(f"Train: {self._describe_data(self.train_data)}.")
        self.settings.set_data_info(" ".join(parts))

    # ================================================================ recipes
    def window_state(self) -> WindowState:
        """What the tree and the settings show, as plain data."""
        return WindowState(
            checked=self.tree.model.checked_names(),
            overrides=self.tree.model.overrides(),
            prune=self.settings.prune_settings(),
            finetune=self.settings.finetune(),
            quantize=self.settings.quantize(),
        )

    def current_recipe(self) -> Recipe:
        """The one recipe the window shows; RecipeError names a bad setting."""
        if self.loaded is None:
            raise RecipeError("no model is open")
        return build_recipe(self.loaded.model, self.layers, self.window_state())

    def apply_recipe(self, recipe: Recipe) -> bool:
        """Set the tree and the settings from a recipe; False (after a message) if it fails."""
        try:
            self._apply_recipe(recipe)
        except UserError as exc:
            self.show_error(exc)
            return False
        return True

    def _apply_recipe(self, recipe: Recipe, quiet: bool = False) -> None:
        assert self.loaded is not None
        state, warnings = state_from_recipe(self.loaded.model, recipe)
        model = self.tree.model
        self.settings.set_prune_settings(state.prune)
        self.settings.set_finetune(state.finetune)
        self.settings.set_quantize(state.quantize)
        model.set_default_amount(state.prune.amount, state.prune.is_global)
        refused = model.set_checked_names(state.checked)
        model.set_overrides(state.overrides)
        if refused:
            warnings.append(
                f"{recipe.source}: selects layers the tree cannot check (already quantized "
                f"or without float weights): {', '.join(refused[:5])}"
            )
        if not quiet:
            self.log(f"recipe {recipe.source}: {len(state.checked)} layers to prune")
        for warning in warnings:
            self.log(f"warning: {warning}")
            if not quiet and not self.options.scripted:
                box = QMessageBox(
                    QMessageBox.Icon.Information,
                    APP_NAME,
                    warning,
                    QMessageBox.StandardButton.Ok,
                    self,
                )
                dialogs.run_box(box)

    def load_recipe_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load Recipe", prefs.last_folder("recipe"), RECIPE_FILTER
        )
        if path:
            prefs.set_last_folder("recipe", Path(path))
            self.load_recipe_file(Path(path))

    def load_recipe_file(self, path: Path) -> bool:
        try:
            recipe = load_recipe(path)
        except UserError as exc:
            self.show_error(exc)
            return False
        return self.apply_recipe(recipe)

    def save_recipe_dialog(self) -> None:
        try:
            recipe = self.current_recipe()
        except UserError as exc:
            self.show_error(exc)
            return
        start = str(Path(prefs.last_folder("recipe")) / "recipe.yaml")
        path, _ = QFileDialog.getSaveFileName(self, "Save Recipe", start, RECIPE_FILTER)
        if not path:
            return
        target = Path(path)
        if target.suffix.lower() not in (".yaml", ".yml", ".json"):
            target = target.with_name(target.name + ".yaml")
        prefs.set_last_folder("recipe", target)
        try:
            dump_recipe(recipe, target)
        except UserError as exc:
            self.show_error(exc)
            return
        self.log(f"saved recipe {target}")
        self._status(f"Saved recipe {target.name}: run it with secateur compress --recipe")

    # ============================================================ selection
    def _focus_filter(self) -> None:
        self.tree.filter_edit.setFocus()
        self.tree.filter_edit.selectAll()

    def check_all(self) -> None:
        self.tree.model.check_where(lambda info: True)

    def check_linear(self) -> None:
        self.tree.model.check_where(is_linear)

    def check_conv(self) -> None:
        self.tree.model.check_where(is_conv)

    def check_none(self) -> None:
        self.tree.model.set_checked_names([])

    def invert_checks(self) -> None:
        self.tree.model.invert_checks()

    # ============================================================ preview
    @Slot()
    def _on_settings_changed(self) -> None:
        prune = self.settings.prune_settings()
        self.tree.model.set_default_amount(prune.amount, prune.is_global)
        scheme = self.settings.scheme_box.currentData()
        labels = {value: label for value, label, *_ in SCHEMES}
        self.sensitivity_panel.set_scheme(scheme, labels.get(scheme, scheme))
        self._schedule_preview()

    @Slot()
    def _schedule_preview(self) -> None:
        self._preview_timer.start()

    @Slot()
    def _update_preview(self) -> None:
        """Which layers the quantize settings select, and a one-line recipe summary."""
        if self.loaded is None:
            self.settings.set_recipe_summary("")
            return
        model = self.tree.model
        done, _, params = model.checked_summary()
        parts = []
        if done:
            parts.append(f"prune <b>{done}</b> layer{'s' * (done != 1)} ({params:,} weights)")
        try:
            quantize = self.settings.quantize()
        except UserError as exc:
            quantize = None
            self.settings.set_quant_preview(str(exc).split(": ", 1)[-1], error=True)
        if quantize is not None:
            try:
                plan = plan_quantization(self.loaded.model, quantize, "settings")
            except UserError as exc:
                model.set_planned_quantization([], None)
                self.settings.set_quant_preview(str(exc).split(": ", 1)[-1], error=True)
            else:
                label = describe(quantize)
                model.set_planned_quantization(plan.layers, label)
                names = ", ".join(plan.layers[:4]) + (" \u2026" if len(plan.layers) > 4 else "")
                text = f"Selects {len(plan.layers)} layer{'s' * (len(plan.layers) != 1)}: {names}"
                if plan.skipped:
                    text += f" ({len(plan.skipped)} skipped: cannot be quantized)"
                self.settings.set_quant_preview(text)
                if plan.layers:
                    parts.append(f"quantize <b>{len(plan.layers)}</b> ({quantize.scheme})")
        else:
            model.set_planned_quantization([], None)
            if self.settings.quant_box.isChecked() is False:
                self.settings.set_quant_preview("")
        if self.settings.finetune() is not None:
            parts.append("fine-tune")
        if not self.loaded.eager:
            self.settings.set_recipe_summary(self._not_eager_note())
            return
        summary = (
            "Recipe: " + ", ".join(parts)
            if parts
            else "Nothing to do: check layers or turn on quantization"
        )
        self.settings.set_recipe_summary(summary)
        if self.result is None and not self.jobs.busy:
            self.sparsity_chart.set_rows(self._planned_rows())
        self._update_sensitivity_prediction()

    # ================================================================== run
    def run_compression(self) -> None:
        if self.jobs.busy or self.loaded is None:
            return
        try:
            recipe = self.current_recipe()
            shape = self.settings.input_shape()
        except UserError as exc:
            self.show_error(exc)
            return
        if not self.loaded.eager:
            self.show_error(
                UnsupportedError(f"{self.loaded.display_name}: {self._not_eager_note()}")
            )
            return
        if recipe.is_empty():
            self.show_error(
                RecipeError("nothing to do: check layers to prune, or turn on quantization")
            )
            return
        warning = estimate(self.loaded.model, recipe).warning()
        if warning is not None:
            self.log(f"memory: {warning}")
            if not self.options.scripted and not self._confirm_memory(warning):
                return
        self._results_snapshot = self.tree.model.results()
        self.result_recipe = recipe
        self._run_started = time.perf_counter()
        if recipe.finetune is not None:
            self.loss_chart.start(recipe.finetune.epochs)
            self._set_finetune_tab(0, recipe.finetune.epochs)
        else:
            self.loss_chart.clear()
            self._set_finetune_tab(0, 0)
        self.log(f"compress: {json.dumps(recipe.to_dict())}")
        self.jobs.start(
            "compress",
            partial(compress_job, self.loaded, recipe, self.eval_data, self.train_data, shape),
        )

    def cancel_job(self) -> None:
        if self.jobs.cancel():
            self._status("Cancelling\u2026 (stops after the current step)")

    @Slot(bool)
    def _on_busy_changed(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
            self.progress.setValue(0)
        self._update_actions()

    @Slot(object, list)
    def _on_job_progress(self, event: Progress | None, layers: list) -> None:
        if event is not None:
            if event.total:
                self.progress.setRange(0, event.total)
                self.progress.setValue(event.step)
                self.progress.setFormat("%v / %m")
            else:
                self.progress.setRange(0, 0)
            self._status(event.message[:1].upper() + event.message[1:] + "\u2026")
        if self.jobs.job_name == "compress":
            self.tree.model.set_partial(layers)
            if event is not None:
                self.log(event.message)
        elif self.jobs.job_name == "sensitivity":
            if event is not None:
                self.sensitivity_chart.set_meta(event.baseline, event.metric)
            if layers:
                self.sensitivity_chart.add_layers(layers)
                for row in layers:
                    self.log(f"sensitivity: {row['name']} done")

    @Slot(str, object)
    def _on_job_finished(self, name: str, result: Any) -> None:
        if name == "load":
            self._on_load_finished(result)
        elif name == "compress":
            self._on_compress_finished(result)
        elif name == "save":
            self._on_save_finished(result)
        elif name == "sensitivity":
            self._on_sweep_finished(result)
        self._update_actions()

    @Slot(str)
    def _on_job_cancelled(self, name: str) -> None:
        if name == "compress":
            if self._results_snapshot is not None:
                self.tree.model.restore_results(self._results_snapshot)
            self.loss_chart.mark_stopped()
            self._set_finetune_tab(0, 0)
            self.log("cancelled: the model is unchanged")
            self._status("Cancelled: nothing was changed")
            self.runCancelled.emit()
        elif name == "sensitivity":
            self._restore_sweep()
            self.log("sensitivity sweep cancelled: the model is unchanged")
            self._status("Sensitivity sweep cancelled: nothing was changed")
            self.sweepCancelled.emit()
        else:
            self._status(f"Cancelled ({name})")
        self._update_actions()

    @Slot(str, object, str)
    def _on_job_failed(self, name: str, exc: BaseException, trace: str) -> None:
        self._update_actions()
        if name == "load":
            self._status("Could not open the model")
            self._on_load_failed(exc, trace)
            return
        if name == "compress":
            if self._results_snapshot is not None:
                self.tree.model.restore_results(self._results_snapshot)
            self._set_finetune_tab(0, 0)
            self._status("Compression failed: nothing was changed")
            self.runFailed.emit(exc)
        elif name == "sensitivity":
            self._restore_sweep()
            self._status("Sensitivity sweep failed: nothing was changed")
            self.show_error(exc, trace)
            self.sweepFailed.emit(exc)
            return
        else:
            self._status("Saving failed: nothing was written")
        self.show_error(exc, trace)

    def _on_compress_finished(self, result: CompressionResult) -> None:
        seconds = time.perf_counter() - self._run_started
        self.result = result
        self.save_outcome = None
        report = result.report.to_dict()
        self._show_results(report)
        self._set_modified(True)
        b, a = report["before"], report["after"]
        ratio = a["state_dict_bytes"] / b["state_dict_bytes"] if b["state_dict_bytes"] else 0
        self.log(
            f"done in {seconds:.1f} s: state dict {ratio:.2f}x, non-zero parameters "
            f"{a['nonzero_parameters']:,} of {a['parameters']:,}"
        )
        for note in report.get("notes", []):
            self.log(f"note: {note}")
        self._status(
            f"Done in {seconds:.1f} s \u2014 size {ratio:.2f}\u00d7 of the original; "
            "File \u203a Save Compressed Model to keep it"
        )
        finetune = report.get("finetune")
        if finetune is not None:
            self.loss_chart.set_losses(finetune["loss"], finetune.get("epochs"))
            self._set_finetune_tab(len(finetune["loss"]), 0)
        if self.tabs.currentWidget() is self.log_view:
            self.tabs.setCurrentWidget(self.sparsity_chart)
        self.runFinished.emit(result)

    @Slot(list)
    def _on_losses(self, losses: list) -> None:
        """Fine-tune epochs done (every one arrives, never coalesced away)."""
        if self.jobs.job_name != "compress":
            return
        self.loss_chart.add(losses)
        if self._run_epochs:
            self._set_finetune_tab(len(self.loss_chart.values()), self._run_epochs)

    def _set_finetune_tab(self, done: int, epochs: int) -> None:
        """While a fine-tune runs, the tab's title counts its epochs."""
        self._run_epochs = epochs
        title = f"Fine-tune ({done}/{epochs})" if epochs else "Fine-tune"
        self.tabs.setTabText(self.tabs.indexOf(self.loss_chart), title)

    # ============================================================ sensitivity
    def sweep_settings(self) -> SweepSettings:
        """The sweep the window would run: the checked layers (all Conv/Linear when none
        are checked), the panel's method, the tab's amounts, samples and quantize option.
        RecipeError names a bad setting."""
        if self.loaded is None:
            raise RecipeError("no model is open")
        checked = self.tree.model.checked_names()
        if checked:
            layers, types = selection_patterns(self.loaded.model, self.layers, checked)
        else:
            layers, types = ["*"], ["Conv2d", "Linear"]
        prune = self.settings.prune_settings()
        method = "l1_unstructured" if prune.is_global else prune.method
        panel = self.sensitivity_panel
        return SweepSettings(
            layers=layers,
            types=types,
            method=method,
            amounts=panel.amounts(),
            n=prune.n,
            dim=prune.dim,
            quantize=panel.quantize_scheme(),
            subset=panel.subset(),
        )

    def _sweep_data(self) -> Dataset:
        if self.eval_data is not None:
            return self.eval_data
        shape = self.settings.input_shape()
        if shape is None:
            raise RecipeError(
                "a sensitivity sweep measures the model: choose evaluation data (File \u203a "
                "Open Evaluation Data) or give an input shape in the settings"
            )
        return random_data(shape)

    def run_sensitivity(self) -> None:
        """Sweep each selected layer alone in the background; curves stream into the tab."""
        if self.jobs.busy or self.loaded is None:
            return
        if not self.loaded.eager:
            self.show_error(
                UnsupportedError(f"{self.loaded.display_name}: {self._not_eager_note()}")
            )
            return
        try:
            settings = self.sweep_settings()
            data = self._sweep_data()
        except UserError as exc:
            self.show_error(exc)
            return
        self._sweep_before = (self.sensitivity, self.sensitivity_cached)
        self._sweep_started = time.perf_counter()
        self.sensitivity_chart.clear("Measuring\u2026 each layer's curve appears as it finishes")
        self.sensitivity_panel.set_has_result(False)
        self.tabs.setCurrentWidget(self.sensitivity_panel)
        self.log(f"sensitivity: {json.dumps(settings.key())} on {data.source}")
        self.jobs.start("sensitivity", partial(sensitivity_job, self.loaded, data, settings))

    def _on_sweep_finished(self, result: SweepResult) -> None:
        seconds = time.perf_counter() - self._sweep_started
        self._sweep_before = None
        self._show_sensitivity(result.data, result.cached)
        n = len(result.data["layers"])
        where = "from the cache" if result.cached else f"in {seconds:.1f} s"
        self.log(
            f"sensitivity: {n} layers {where}"
            + (f" ({result.cache_path})" if result.cache_path else "")
        )
        self._status(
            f"Sensitivity of {n} layer{'s' * (n != 1)} {where}: move the target slider to "
            "get per-layer amounts"
        )
        self.sweepFinished.emit(result)

    def _restore_sweep(self) -> None:
        """A cancelled or failed sweep: show the previous result again (or none)."""
        before, self._sweep_before = self._sweep_before, None
        data, cached = before if before is not None else (None, False)
        self._show_sensitivity(data, cached)

    def _show_sensitivity(self, data: dict[str, Any] | None, cached: bool) -> None:
        self.sensitivity = data
        self.sensitivity_cached = cached
        if data is None:
            self.sensitivity_chart.clear(
                "Run \u203a Sensitivity Sweep (Ctrl+Alt+R) prunes each checked layer alone\n"
                "at each amount and plots what happens to the metric"
            )
            self.sensitivity_panel.set_has_result(False)
            return
        samples = (data.get("data") or {}).get("samples")
        note = metric_label(data["metric"]) + (f", {samples:,} samples" if samples else "")
        self.sensitivity_chart.set_result(data, cached, note)
        self.sensitivity_chart.state_label.setToolTip(
            f"method {data.get('method', '')}, amounts "
            + ", ".join(f"{100 * a:g}%" for a in (data.get("settings") or {}).get("amounts", []))
        )
        self.sensitivity_chart.highlight(self.tree.current_layer())
        tops = [max(p["amount"] for p in row["points"]) for row in data["layers"] if row["points"]]
        self.sensitivity_panel.set_has_result(bool(tops), min(tops, default=None))
        self._update_sensitivity_prediction()

    def apply_target(self) -> dict[str, float] | None:
        """The target slider (and max drop) -> per-layer amounts in the tree, checked."""
        data = self.sensitivity
        if data is None or self.loaded is None or self.jobs.busy:
            return None
        panel = self.sensitivity_panel
        try:
            amounts = allocate(data, panel.target(), panel.max_drop(data["metric"]))
        except UserError as exc:
            panel.set_prediction(str(exc).replace("--", ""), error=True)
            return None
        self.set_layer_amounts(amounts, data.get("method", "l1_unstructured"))
        self.amountsAllocated.emit(amounts)
        return amounts

    def set_layer_amounts(self, amounts: dict[str, float], method: str) -> None:
        """Per-layer amounts into the tree: layers with an amount are checked, swept layers
        at 0 unchecked, the rest left alone; pruning switches to per layer with ``method``."""
        model = self.tree.model
        prune = self.settings.prune_settings()
        if prune.method != method:
            self.settings.set_prune_settings(
                PruneSettings(method, prune.amount, prune.n, prune.dim, prune.permanent)
            )
        chosen = {name for name, a in amounts.items() if a > 0}
        checked = (set(model.checked_names()) - set(amounts)) | chosen
        model.set_checked_names(checked)
        overrides = {n: a for n, a in model.overrides().items() if n not in amounts}
        overrides.update({n: a for n, a in amounts.items() if a > 0})
        model.set_overrides(overrides)
        self._update_sensitivity_prediction()

    def _update_sensitivity_prediction(self) -> None:
        """What the curves predict for the amounts the tree shows now (hand edits too)."""
        data = self.sensitivity
        if data is None:
            return
        model = self.tree.model
        amounts: dict[str, float] = {}
        for row in data["layers"]:
            amount = model.effective_amount(row["name"])
            if isinstance(amount, int):  # a count of weights
                amount = amount / row["parameters"] if row["parameters"] else 0.0
            amounts[row["name"]] = float(amount or 0.0)
        self.sensitivity_chart.set_markers(amounts)
        guess = predicted(data, amounts)
        metric = data["metric"]
        baseline = float(data["baseline"])
        n = len(data["layers"])
        self.sensitivity_panel.set_prediction(
            f"Predicted for the {n} swept layer{'s' * (n != 1)}: "
            f"<b>{100 * guess['sparsity']:.1f}%</b> zero weights, "
            f"{metric_label(metric)} <b>{metric_text(metric, guess['metric'])}</b> "
            f"({drop_text(metric, guess['metric'] - baseline)} from "
            f"{metric_text(metric, baseline)}; per-layer drops added up)"
        )

    # ============================================================== results
    def _show_results(self, report: dict[str, Any] | None) -> None:
        """Tree columns, charts, table, notes and cards for a report (None: before only)."""
        self.tree.model.set_results(report["layers"] if report else None)
        if report:
            rows = [
                SparsityRow(
                    row["name"],
                    row["type"],
                    row["sparsity_before"] or 0.0,
                    row["sparsity_after"] if row["sparsity_after"] is not None else 0.0,
                    _layer_detail(row),
                )
                for row in report["layers"]
            ]
        else:
            rows = self._planned_rows()
        self.sparsity_chart.set_rows(rows)
        self.sparsity_chart.highlight(self.tree.current_layer())
        self.metrics_chart.set_report(report)
        self.metrics_table.set_report(report)
        self.notes.set_notes(list(report.get("notes", [])) if report else [])
        self.cards.show_report(self.before_numbers, report)

    def _planned_rows(self) -> list[SparsityRow]:
        """Before a run: each layer's sparsity now and, light, what the settings will prune."""
        model = self.tree.model
        per_layer = not self.settings.prune_settings().is_global
        rows = []
        for info in self.layers:
            if info.sparsity is None:
                continue
            amount = model.effective_amount(info.name) if per_layer else None
            planned = amount if isinstance(amount, float) else None
            rows.append(
                SparsityRow(info.name or "(model)", info.type, info.sparsity, None, "", planned)
            )
        return rows

    # ================================================================= save
    def save_model_dialog(self) -> None:
        if self.result is None or self.loaded is None or self.jobs.busy:
            return
        example = self.result.eval_data
        if example is None:
            self.show_error(
                SaveError(
                    "the saved file is reloaded and run to check it: choose evaluation data or an "
                    "input shape, then compress again"
                )
            )
            return
        fmt = default_format(self.loaded.format)
        if fmt not in SAVE_FILTERS:
            fmt = "state_dict"
        stem = (
            self.loaded.path.stem if self.loaded.format != "demo" and self.loaded.path else "demo"
        )
        start = str(Path(prefs.last_folder("save")) / f"{stem}-compressed{SAVE_SUFFIX[fmt]}")
        path, chosen = QFileDialog.getSaveFileName(
            self,
            "Save Compressed Model",
            start,
            ";;".join(SAVE_FILTERS.values()),
            SAVE_FILTERS[fmt],
        )
        if not path:
            return
        fmt = next((k for k, v in SAVE_FILTERS.items() if v == chosen), fmt)
        target = Path(path)
        if not target.suffix:
            target = target.with_name(target.name + SAVE_SUFFIX[fmt])
            if target.exists() and not self._confirm_overwrite(target):
                return
        self.save_model(target, fmt)

    def save_model(self, target: Path, fmt: str) -> None:
        """Save the last result (atomically, then reloaded and run) in the background."""
        if self.result is None or self.loaded is None or self.result.eval_data is None:
            return
        if self.loaded.path is not None and self.loaded.format != "demo" and target.exists():
            try:
                same = target.resolve() == self.loaded.path.resolve() or target.samefile(
                    self.loaded.path
                )
            except OSError:
                same = False
            if same and (self.options.scripted or not self._confirm_overwrite_opened(target)):
                self.show_error(
                    SaveError(
                        f"{target}: is the model you opened; choose another name so the original "
                        "stays available"
                    )
                )
                return
            force = same
        else:
            force = False
        prefs.set_last_folder("save", target)
        self.jobs.start(
            "save",
            partial(
                save_job, self.result, self.loaded, target, fmt, self.result.eval_data, force=force
            ),
        )

    def _confirm_memory(self, warning: str) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Not enough memory?",
            "This job may not fit in memory.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setInformativeText(f"{warning[0].upper()}{warning[1:]}. Run it anyway?")
        box.button(QMessageBox.StandardButton.Yes).setText("Run Anyway")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return dialogs.run_box(box) == QMessageBox.StandardButton.Yes

    def _confirm_overwrite(self, path: Path) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Replace file?",
            f"{path.name} already exists. Replace it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return dialogs.run_box(box) == QMessageBox.StandardButton.Yes

    def _confirm_overwrite_opened(self, path: Path) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Overwrite the opened model?",
            f"{path.name} is the model you opened. Replace it with the compressed model?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setInformativeText(
            "The original weights in that file will be gone; the window keeps them only until "
            "you open another model. Choose another name to keep both."
        )
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return dialogs.run_box(box) == QMessageBox.StandardButton.Yes

    def _on_save_finished(self, outcome: SaveOutcome) -> None:
        self.save_outcome = outcome
        assert self.result is not None
        self.result.report.attach_save(outcome)
        report = self.result.report.to_dict()
        self.metrics_table.set_report(report)
        self._set_modified(False)
        rt = outcome.round_trip
        state = {True: "ok", False: "FAILED", None: "not checked"}[rt.get("ok")]
        err = rt.get("max_abs_error")
        detail = f" (max abs error {err:.3g})" if isinstance(err, float) else ""
        if rt.get("reason"):
            detail += f" ({rt['reason']})"
        message = (
            f"Saved {outcome.path.name} ({outcome.format}, {human_bytes(outcome.file_bytes)}); "
            f"reloaded and run: round trip {state}{detail}"
        )
        self.log(message)
        if outcome.sidecar:
            self.log(f"wrote {outcome.sidecar.name} beside it (rebuilds the quantized layers)")
        self._status(message)
        self.saved.emit(outcome)
        if rt.get("ok") is False and not self.options.scripted:
            box = QMessageBox(
                QMessageBox.Icon.Warning,
                APP_NAME,
                f"{outcome.path.name} was written, but reloading it did not give "
                f"the same outputs: {rt.get('reason') or detail.strip()}",
                QMessageBox.StandardButton.Ok,
                self,
            )
            dialogs.run_box(box)

    # ========================================================== export report
    def export_report_dialog(self) -> None:
        if self.result is None:
            return
        start = str(Path(prefs.last_folder("report")) / "secateur-report.json")
        path, _ = QFileDialog.getSaveFileName(self, "Export Report", start, "JSON report (*.json)")
        if path:
            target = Path(path)
            if target.suffix.lower() != ".json":
                target = target.with_name(target.name + ".json")
            prefs.set_last_folder("report", target)
            self.export_report(target)

    def export_report(self, target: Path) -> list[Path]:
        """Write the JSON report and, beside it, both charts as PNG. Returns what it wrote."""
        if self.result is None:
            return []
        stem = target.with_suffix("")
        written = [target, Path(f"{stem}-sparsity.png"), Path(f"{stem}-metrics.png")]
        try:
            payload = self.result.report.to_json().encode("utf-8")
            atomic_write_bytes(target, payload)
            atomic_write_bytes(written[1], png_bytes(self.sparsity_chart.image()))
            atomic_write_bytes(written[2], png_bytes(self.metrics_chart.image()))
        except UserError as exc:
            self.show_error(exc)
            return []
        self.log("exported " + ", ".join(str(p) for p in written))
        self._status(f"Exported {target.name} and the two chart images")
        return written

    def save_chart_dialog(self, chart: Any, kind: str) -> None:
        start = str(Path(prefs.last_folder("report")) / f"secateur-{kind}.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save Chart", start, "PNG image (*.png)")
        if not path:
            return
        target = Path(path)
        if target.suffix.lower() != ".png":
            target = target.with_name(target.name + ".png")
        prefs.set_last_folder("report", target)
        try:
            atomic_write_bytes(target, png_bytes(chart.image()))
        except UserError as exc:
            self.show_error(exc)
            return
        self.log(f"saved chart {target}")

    # ================================================================ reset
    def reset(self) -> None:
        """Drop the result and restore the settings the model was opened with."""
        if self.loaded is None or self.jobs.busy:
            return
        if not self._confirm_discard("reset"):
            return
        self.result = None
        self.save_outcome = None
        self._set_modified(False)
        if self._opened_recipe is not None:
            self._apply_recipe(self._opened_recipe, quiet=True)
        else:
            self._apply_defaults()
        self._show_results(None)
        self.log("reset: result dropped, settings as opened")
        self._status("Reset: the settings are as when the model was opened")
        self._update_actions()

    def _confirm_discard(self, action: str) -> bool:
        """True when there is no unsaved result, or the user saves or discards it."""
        if self.result is None or not self.isWindowModified() or self.options.scripted:
            return True
        answer = dialogs.ask_discard(self, action)
        if answer == QMessageBox.StandardButton.Save:
            self.save_model_dialog()
            return False  # the save runs in the background; the user repeats the action
        return answer == QMessageBox.StandardButton.Discard

    # =========================================================== recent files
    @Slot()
    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = prefs.recent_files()
        for i, name in enumerate(files):
            label = f"&{i + 1} {Path(name).name}" if i < 9 else Path(name).name
            action = self.recent_menu.addAction(label)
            action.setToolTip(name)
            action.setStatusTip(name)
            action.triggered.connect(partial(self.open_model, Path(name)))
        if not files:
            empty = self.recent_menu.addAction("No recent models")
            empty.setEnabled(False)
        self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear Menu")
        clear.setEnabled(bool(files))
        clear.triggered.connect(prefs.clear_recent_files)

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
        path = Path(urls[0].toLocalFile())
        self.open_dropped(path)

    def open_dropped(self, path: Path) -> None:
        """A dropped file: data and recipes go where they belong, anything else is a model."""
        suffix = path.suffix.lower()
        if suffix == ".npz" and self.loaded is not None:
            self.open_eval_data(path)
        elif suffix in (".yaml", ".yml", ".json") and self.loaded is not None:
            self.load_recipe_file(path)
        else:
            self.open_model(path)

    # ================================================================ closing
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._force_close and not self._confirm_discard("quit"):
            event.ignore()
            return
        self.jobs.shutdown()
        prefs.save_window_state(self.saveGeometry(), self.saveState(), self.splitter.saveState())
        event.accept()

    def close_without_asking(self) -> None:
        self._force_close = True
        self.close()

    def screenshot(self, path: Path) -> None:
        """Save the whole window as PNG (atomically)."""
        atomic_write_bytes(path, png_bytes(self.grab()))


def _layer_detail(row: dict[str, Any]) -> str:
    parts = []
    if row.get("pruning"):
        amount = row.get("prune_amount")
        parts.append(
            f"pruned: {row['pruning']}" + (f" {amount_text(amount)}" if amount is not None else "")
        )
    if row.get("quantization"):
        parts.append(f"quantized: {row['quantization']}")
    if row.get("skipped"):
        parts.append(f"skipped: {row['skipped']}")
    parts.append(f"{row.get('parameters', 0):,} parameters")
    return "\n".join(parts)


def png_bytes(pixmap: Any) -> bytes:
    """A QPixmap as PNG bytes (written with atomic_write_bytes by the caller)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not pixmap.save(buffer, "PNG"):
        raise SaveError("the image could not be encoded as PNG")
    buffer.close()
    return bytes(data.data())

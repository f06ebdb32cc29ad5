"""Writing files: the compressed model (in the background, atomically, then reloaded and run
to check the round trip), the JSON report with its chart images, and single chart images.

Saving asks before it replaces a file, and refuses to replace the model that was opened unless
the user confirms it (never when nobody is watching). A failed or cancelled save leaves
nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from core import tasks
from core.atomic import atomic_write_bytes
from core.errors import SaveError, UserError
from core.formats import default_format
from core.saving import SaveOutcome
from gui import prefs
from gui.choices import SAVE_FILTERS, SAVE_SUFFIX
from gui.feedback import Feedback, Question
from gui.report_rows import save_message
from gui.session import Session
from gui.worker import JobRunner


def png_bytes(pixmap: Any) -> bytes:
    """A QPixmap as PNG bytes (written with atomic_write_bytes by the caller)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not pixmap.save(buffer, "PNG"):
        raise SaveError("the image could not be encoded as PNG")
    buffer.close()
    return bytes(data.data())


def overwrite_question(path: Path) -> Question:
    return Question("Replace file?", f"{path.name} already exists. Replace it?")


def overwrite_opened_question(path: Path) -> Question:
    return Question(
        "Overwrite the opened model?",
        f"{path.name} is the model you opened. Replace it with the compressed model?",
        "The original weights in that file will be gone; the window keeps them only until "
        "you open another model. Choose another name to keep both.",
        warning=True,
    )


def _with_suffix(path: str, suffixes: tuple[str, ...], default: str) -> Path:
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        target = target.with_name(target.name + default)
    return target


class SaveFlow(QObject):
    """Saves and exports for the window (``parent`` hosts the file dialogs)."""

    saved = Signal(object)  # SaveOutcome

    def __init__(
        self,
        session: Session,
        runner: JobRunner,
        feedback: Feedback,
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = runner
        self.feedback = feedback
        self._parent = parent

    # ------------------------------------------------------------------ the model
    def save_dialog(self) -> None:
        """Ask where (and in which format) to save the compressed model, then save it."""
        session = self.session
        loaded, result = session.loaded, session.result
        if result is None or loaded is None or self.runner.busy:
            return
        if result.eval_data is None:
            self.feedback.error(
                SaveError(
                    "the saved file is reloaded and run to check it: choose evaluation data or an "
                    "input shape, then compress again"
                )
            )
            return
        fmt = default_format(loaded.format)
        if fmt not in SAVE_FILTERS:
            fmt = "state_dict"
        stem = loaded.path.stem if loaded.format != "demo" and loaded.path else "demo"
        start = str(Path(prefs.last_folder("save")) / f"{stem}-compressed{SAVE_SUFFIX[fmt]}")
        path, chosen = QFileDialog.getSaveFileName(
            self._parent,
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
            if target.exists() and not self.feedback.confirm(overwrite_question(target)):
                return
        self.save(target, fmt)

    def save(self, target: Path, fmt: str) -> None:
        """Save the last result (atomically, then reloaded and run) in the background."""
        session = self.session
        loaded, result = session.loaded, session.result
        if result is None or loaded is None or result.eval_data is None:
            return
        force = False
        if loaded.path is not None and loaded.format != "demo" and target.exists():
            try:
                same = target.resolve() == loaded.path.resolve() or target.samefile(loaded.path)
            except OSError:
                same = False
            if same and not self.feedback.confirm(overwrite_opened_question(target)):
                self.feedback.error(
                    SaveError(
                        f"{target}: is the model you opened; choose another name so the original "
                        "stays available"
                    )
                )
                return
            force = same
        prefs.set_last_folder("save", target)
        self.runner.start(
            "save",
            partial(tasks.save_result, result, loaded, target, fmt, force=force),
            on_finished=self._on_saved,
            on_cancelled=lambda: self.feedback.status("Cancelled (save)"),
            on_failed=self._on_failed,
        )

    def _on_saved(self, outcome: SaveOutcome) -> None:
        self.session.set_save_outcome(outcome)
        prefs.set_saved_folder(outcome.path)
        message, detail = save_message(outcome)
        self.feedback.log(message)
        if outcome.sidecar:
            self.feedback.log(
                f"wrote {outcome.sidecar.name} beside it (rebuilds the quantized layers)"
            )
        self.feedback.status(message)
        self.saved.emit(outcome)
        rt = outcome.round_trip
        if rt.get("ok") is False:
            self.feedback.inform(
                f"{outcome.path.name} was written, but reloading it did not give "
                f"the same outputs: {rt.get('reason') or detail.strip()}",
                warning=True,
            )

    def _on_failed(self, exc: BaseException, trace: str) -> None:
        self.feedback.status("Saving failed: nothing was written")
        self.feedback.error(exc, trace)

    # ------------------------------------------------------------------ the report
    def export_dialog(self, images: Callable[[], tuple[Any, Any]]) -> None:
        """Ask where to write the report; ``images()`` gives the two chart pixmaps."""
        if self.session.result is None:
            return
        start = str(Path(prefs.last_folder("report")) / "secateur-report.json")
        path, _ = QFileDialog.getSaveFileName(
            self._parent, "Export Report", start, "JSON report (*.json)"
        )
        if path:
            target = _with_suffix(path, (".json",), ".json")
            prefs.set_last_folder("report", target)
            self.export(target, images())

    def export(self, target: Path, images: tuple[Any, Any]) -> list[Path]:
        """Write the JSON report and, beside it, the sparsity and metrics charts as PNG.
        Returns what it wrote."""
        result = self.session.result
        if result is None:
            return []
        stem = target.with_suffix("")
        written = [target, Path(f"{stem}-sparsity.png"), Path(f"{stem}-metrics.png")]
        try:
            payload = result.report.to_json().encode("utf-8")
            atomic_write_bytes(target, payload)
            atomic_write_bytes(written[1], png_bytes(images[0]))
            atomic_write_bytes(written[2], png_bytes(images[1]))
        except UserError as exc:
            self.feedback.error(exc)
            return []
        prefs.set_saved_folder(target)
        self.feedback.log("exported " + ", ".join(str(p) for p in written))
        self.feedback.status(f"Exported {target.name} and the two chart images")
        return written

    def save_chart_dialog(self, chart: Any, kind: str) -> None:
        """Ask where to write one chart as PNG (its Save PNG button)."""
        start = str(Path(prefs.last_folder("report")) / f"secateur-{kind}.png")
        path, _ = QFileDialog.getSaveFileName(
            self._parent, "Save Chart", start, "PNG image (*.png)"
        )
        if not path:
            return
        target = _with_suffix(path, (".png",), ".png")
        prefs.set_last_folder("report", target)
        try:
            atomic_write_bytes(target, png_bytes(chart.image()))
        except UserError as exc:
            self.feedback.error(exc)
            return
        prefs.set_saved_folder(target)
        self.feedback.log(f"saved chart {target}")

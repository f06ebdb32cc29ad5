"""Writing files: the compressed model (in the background, atomically, then reloaded and run
to check the round trip), the JSON report with its chart images, and single chart images.

Saving the model is two steps: the format (``SaveFormatDialog``: every format with its
predicted size, those that cannot hold the result greyed with the reason), then the file. A
file name whose extension belongs to one format only (.onnx, .pt2...) forces that format; a
format that cannot hold the result is refused with the reason before any work starts. Saving
asks before it replaces a file, and refuses to replace the model that was opened unless the
user confirms it (never when nobody is watching). A failed or cancelled save leaves nothing
behind.
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
from core.errors import SaveError, UnsupportedError, UserError
from core.formats import Saving, format_for_suffix
from core.saving import SaveOutcome, check_format, default_option
from gui import dialogs, prefs
from gui.choices import SAVE_FILTERS, SAVE_SUFFIX
from gui.feedback import Feedback, Question
from gui.report_rows import save_message
from gui.save_dialog import SaveFormatDialog
from gui.session import Session
from gui.worker import JobRunner

ALL_FILES = "All files (*)"


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
        """Ask in which format and where to save the compressed model, then save it."""
        session = self.session
        loaded, result = session.loaded, session.result
        if result is None or loaded is None or self.runner.busy:
            return
        fmt = self.choose_format()
        if fmt is None:
            return
        stem = loaded.path.stem if loaded.format != "demo" and loaded.path else "demo"
        start = str(Path(prefs.last_folder("save")) / f"{stem}-compressed{SAVE_SUFFIX[fmt]}")
        path, chosen = QFileDialog.getSaveFileName(
            self._parent,
            "Save Compressed Model",
            start,
            f"{SAVE_FILTERS[fmt]};;{ALL_FILES}",
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
        forced = format_for_suffix(target.suffix)
        if forced is not None and forced != fmt:
            self.feedback.log(f"{target.name}: the {target.suffix} extension saves as {forced}")
            fmt = forced
        self.save(target, fmt)

    def choose_format(self) -> str | None:
        """The format dialog's answer (None: cancelled); it starts on one that can hold the
        result."""
        session = self.session
        if session.loaded is None or session.result is None:
            return None
        options = session.save_formats
        if not options:  # no list (a result from elsewhere): the file dialog's filters decide
            return "state_dict"
        dialog = SaveFormatDialog(
            options,
            default_option(options, session.loaded.format),
            session.result.report.before.state_dict_bytes or None,
            self._parent,
        )
        accepted = dialogs.run_box(dialog) == SaveFormatDialog.DialogCode.Accepted
        return dialog.chosen() if accepted else None

    def refusal(self, target: Path, fmt: str) -> UserError | None:
        """Why the result cannot be saved as ``fmt`` at ``target`` (asked before any work:
        the format's own check with this very file name), or None."""
        result = self.session.result
        if result is None:
            return SaveError("nothing to save: compress first")
        sidecar, int8 = result.sidecar, result.export_int8
        try:
            check_format(Saving(result.model, target, sidecar=sidecar, export_int8=int8), fmt)
        except UserError as exc:
            return exc
        known = next((o for o in self.session.save_formats if o.name == fmt), None)
        if known is not None and known.reason is not None:  # e.g. no input to trace it on
            return UnsupportedError(f"{target.name}: {known.reason}")
        return None

    def save(self, target: Path, fmt: str) -> None:
        """Save the last result (atomically, then reloaded and run) in the background; a
        format that cannot hold it is refused first, with the reason."""
        session = self.session
        loaded, result = session.loaded, session.result
        if result is None or loaded is None:
            return
        refused = self.refusal(target, fmt)
        if refused is not None:
            self.feedback.status("Not saved: the format cannot hold this result")
            self.feedback.error(refused)
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

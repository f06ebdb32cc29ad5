"""Opening files, always in the background: a model (the demo, or a file that may need the
user's trust or its architecture) and the evaluation and training data files.

A model that fails to load is retried after a question only when the error's type says the
question can help: ``TrustRequiredError`` asks whether to trust the pickle, ``ArchRequiredError``
asks for the architecture of a bare state dict. Whoever asked for the model to be opened gets
it through ``install`` (then the ``when_loaded`` actions run); a failure reports its own
error, and the model that was open stays open.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject

from core import tasks
from core.data import Dataset
from core.demos import DEFAULT_DEMO
from core.errors import ArchRejectedError, ArchRequiredError, TrustRequiredError
from core.tasks import Opened
from gui import prefs
from gui.feedback import Feedback
from gui.session import Session, describe_data
from gui.worker import JobRunner


class OpenFlow(QObject):
    """Loads models and data files through the window's job runner; see the module docstring."""

    def __init__(
        self,
        session: Session,
        runner: JobRunner,
        feedback: Feedback,
        install: Callable[[Opened], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = runner
        self.feedback = feedback
        self._install = install
        self._after_load: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ models
    def when_loaded(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the model being opened is shown (dropped if opening fails)."""
        self._after_load.append(action)

    def open_demo(self, name: str) -> None:
        """Open the bundled demo ``name`` (``core.demos.DEMOS``) with its data."""
        self._start(None, None, False, name)

    def open_model(self, path: Path, arch: str | None, trust: bool) -> None:
        """Open a model file with this architecture (for a state dict) and trust (for a
        pickle); a missing one is asked for."""
        self._start(path, arch, trust)

    def _start(
        self, path: Path | None, arch: str | None, trust: bool, demo: str = DEFAULT_DEMO
    ) -> None:
        self.runner.start(
            "load",
            partial(tasks.open_model, path, arch, trust, demo=demo),
            on_finished=partial(self._on_loaded, path, arch),
            on_cancelled=self._on_load_cancelled,
            on_failed=partial(self._on_load_failed, path, arch, trust),
        )

    def _on_loaded(self, path: Path | None, arch: str | None, opened: Opened) -> None:
        if path is not None and arch:
            prefs.remember_arch(path, arch)
        self._install(opened)
        pending, self._after_load = self._after_load, []
        for action in pending:
            action()

    def _on_load_cancelled(self) -> None:
        self._after_load.clear()
        self.feedback.status("Cancelled (load)")

    def _on_load_failed(
        self, path: Path | None, arch: str | None, trust: bool, exc: BaseException, trace: str
    ) -> None:
        self.feedback.status("Could not open the model")
        if path is None or not self.feedback.interactive:
            self._give_up(exc, trace)
        elif isinstance(exc, TrustRequiredError) and not trust:
            if self.feedback.ask_trust(path):
                self._start(path, arch, True)
            else:
                self.feedback.status(f"Not opened: {path.name} (not trusted)")
                self._after_load.clear()
        elif isinstance(exc, ArchRequiredError) and arch is None:
            self._ask_arch(path, None, trust)
        elif arch is not None and isinstance(exc, ArchRejectedError):
            self.feedback.error(exc)
            self._ask_arch(path, arch, trust)
        else:
            self._give_up(exc, trace)

    def _ask_arch(self, path: Path, arch: str | None, trust: bool) -> None:
        spec = self.feedback.ask_arch(path, arch, prefs.last_folder("arch"))
        if not spec:
            self._after_load.clear()
            return
        target = spec.rpartition(":")[0]
        if target.endswith(".py"):
            prefs.set_last_folder("arch", Path(target))
        self._start(path, spec, trust)

    def _give_up(self, exc: BaseException, trace: str) -> None:
        self._after_load.clear()
        self.feedback.error(exc, trace)

    # ------------------------------------------------------------------ data
    def open_eval_data(self, path: Path, on_done: Callable[[bool], None] | None = None) -> None:
        """Read evaluation data in the background; ``on_done(ok)`` when it is over."""
        self._open_data(path, "evaluation data", self.session.set_eval_data, on_done)

    def open_train_data(self, path: Path, on_done: Callable[[bool], None] | None = None) -> None:
        """Read training data in the background; ``on_done(ok)`` when it is over."""
        self._open_data(path, "training data", self.session.set_train_data, on_done)

    def _open_data(
        self,
        path: Path,
        what: str,
        keep: Callable[[Dataset, Path], None],
        on_done: Callable[[bool], None] | None,
    ) -> None:
        done = on_done or (lambda ok: None)

        def finished(data: Dataset) -> None:
            keep(data, path)
            described = describe_data(data)
            self.feedback.log(f"{what}: {path} ({described})")
            self.feedback.status(f"{what[:1].upper()}{what[1:]}: {path.name} ({described})")
            done(True)

        def cancelled() -> None:
            self.feedback.status("Cancelled (data)")
            done(False)

        def failed(exc: BaseException, trace: str) -> None:
            self.feedback.status(f"Could not read {path.name}")
            self.feedback.error(exc, trace)
            done(False)

        self.runner.start(
            "data",
            partial(tasks.open_data, path),
            on_finished=finished,
            on_cancelled=cancelled,
            on_failed=failed,
        )

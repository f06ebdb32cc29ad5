"""Whether the window may close now, and closing it once a save it waits for is done.

A job running when the user quits is never dropped silently: a sweep, a compression, a plan
or a load asks whether to stop it; a save asks whether to quit once the file is written (the
window then closes by itself) or to stop it (nothing is written). An unsaved result asks to
save, discard or stay; choosing Save starts the save and, once it is written, closes the
window. A save that fails or is cancelled leaves the window open with its message.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject

from gui.feedback import Discard, Feedback, Question, QuitWhileSaving
from gui.save_flow import SaveFlow
from gui.session import Session
from gui.worker import JobRunner

JOB_WORDS = {
    "load": "a model is being opened",
    "data": "a data file is being read",
    "compress": "a compression is running",
    "sensitivity": "a sensitivity sweep is running",
    "plan": "Recommend is measuring the layers",
}


def busy_question(job: str) -> Question:
    what = JOB_WORDS.get(job, f"a job ({job}) is running")
    return Question(
        "Quit while a job runs?",
        f"{what[:1].upper()}{what[1:]}.",
        "Quitting stops it after its current step; the model and your files are left as they were.",
        yes_text="Stop and Quit",
        warning=True,
        unattended=True,
    )


class CloseGuard(QObject):
    """Decides ``may_close()`` for the window; ``close`` closes it (once a save is done)."""

    def __init__(
        self,
        session: Session,
        runner: JobRunner,
        feedback: Feedback,
        saves: SaveFlow,
        close: Callable[[], object],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session, self.runner, self.feedback, self.saves = session, runner, feedback, saves
        self._close = close
        self.waiting = False  # the window closes when the running save is done
        saves.saved.connect(self._on_saved)
        runner.failed.connect(lambda name, *rest: self._on_save_ended(name))
        runner.cancelled.connect(self._on_save_ended)

    def may_close(self, unsaved: bool) -> bool:
        """Ask what has to be asked; True when the window can close now. ``unsaved``: the
        result has changes nobody saved."""
        job = self.runner.job_name
        if job == "save":
            answer = self.feedback.ask_quit_while_saving()
            if answer is QuitWhileSaving.WAIT:
                self.waiting = True
                self.feedback.status("Saving\u2026 the window closes once the file is written")
                return False
            return answer is QuitWhileSaving.STOP
        if job is not None:
            return self.feedback.confirm(busy_question(job))
        if self.session.result is None or not unsaved:
            return True
        answer = self.feedback.ask_discard("quit")
        if answer is Discard.SAVE:
            self.saves.save_dialog()
            if self.runner.job_name == "save":  # a file was chosen: close once written
                self.waiting = True
            return False
        return answer is Discard.DISCARD

    def _on_saved(self, outcome: object) -> None:
        if self.waiting:
            self.waiting = False
            self._close()

    def _on_save_ended(self, name: str) -> None:
        if name == "save" and self.waiting:
            self.waiting = False  # it failed or was cancelled: stay, with its message

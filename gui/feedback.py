"""How the window tells the user things and asks them questions.

One interface, ``Feedback``: ``log`` (the Log tab), ``status`` (the status bar), ``error``,
``inform`` and the questions (``confirm``, ``ask_discard``, ``ask_quit_while_saving``,
``ask_trust``, ``ask_arch``).
``DialogFeedback`` answers with message boxes and dialogs; ``ScriptedFeedback`` serves
``--run --quit-after-run``, where nobody is watching: an error is one line on stderr (plus the
traceback of a bug) and ends the app with exit code 2 (the user's error) or 1 (a bug), and
every question gets the answer that is safe unattended.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from core.errors import UserError
from gui import dialogs

APP_NAME = "Secateur"


@dataclass(frozen=True)
class Question:
    """A yes/cancel question. ``unattended`` is the answer when nobody can be asked."""

    title: str
    text: str
    informative: str = ""
    yes_text: str = ""  # the Yes button's text ("" keeps "Yes")
    warning: bool = False
    unattended: bool = False


class Discard(Enum):
    """The answers to "the compressed model is not saved"."""

    SAVE = "save"
    DISCARD = "discard"
    CANCEL = "cancel"


class QuitWhileSaving(Enum):
    """The answers to "the compressed model is being saved" when the user quits."""

    WAIT = "wait"  # quit once the save is done
    STOP = "stop"  # cancel the save (nothing is written) and quit
    CANCEL = "cancel"


class Feedback:
    """Log and status lines go to the window's sinks; what the subclasses decide is how
    errors, information and questions reach the user (and whether they can be asked)."""

    interactive = False  # whether ask_trust/ask_arch can get an answer from a person

    def __init__(self, log_sink: Callable[[str], None], status_sink: Callable[[str], None]):
        self._log = log_sink
        self._status = status_sink

    def log(self, message: str) -> None:
        """One time-stamped line in the Log tab."""
        self._log(f"{time.strftime('%H:%M:%S')}  {message}")

    def log_lines(self, messages: list[str]) -> None:
        """Many time-stamped lines in the Log tab, added in one go (a run's steps)."""
        if messages:
            stamp = time.strftime("%H:%M:%S")
            self._log("\n".join(f"{stamp}  {m}" for m in messages))

    def status(self, text: str) -> None:
        """The status bar's step text."""
        self._status(text)

    def error(self, exc: BaseException, trace: str = "") -> None:
        """Report a failure: a user error in one line, a bug with its traceback."""
        self.log(f"error: {exc if isinstance(exc, UserError) else repr(exc)}")
        self._report(exc, trace)

    def _report(self, exc: BaseException, trace: str) -> None:
        raise NotImplementedError

    def inform(self, text: str, warning: bool = False) -> None:
        """Something the user should read now (the caller has logged it)."""

    def confirm(self, question: Question) -> bool:
        return question.unattended

    def ask_discard(self, action: str) -> Discard:
        """The result is not saved: save it first, discard it, or cancel ``action``?"""
        return Discard.DISCARD

    def ask_quit_while_saving(self) -> QuitWhileSaving:
        """A save runs: quit when it is done, stop it and quit, or stay?"""
        return QuitWhileSaving.WAIT

    def ask_trust(self, path: Path) -> bool:
        """May this pickle, which can run code, be opened?"""
        return False

    def ask_arch(self, path: Path, spec: str | None, folder: str) -> str | None:
        """The architecture of a bare state dict (``FILE.py:callable``), or None."""
        return None


class DialogFeedback(Feedback):
    """Message boxes and dialogs over ``parent``."""

    interactive = True

    def __init__(
        self,
        parent: QWidget,
        log_sink: Callable[[str], None],
        status_sink: Callable[[str], None],
    ) -> None:
        super().__init__(log_sink, status_sink)
        self._parent = parent

    def _report(self, exc: BaseException, trace: str) -> None:
        dialogs.show_error(self._parent, exc, trace)

    def inform(self, text: str, warning: bool = False) -> None:
        icon = QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Information
        box = QMessageBox(icon, APP_NAME, text, QMessageBox.StandardButton.Ok, self._parent)
        dialogs.run_box(box)

    def confirm(self, question: Question) -> bool:
        icon = QMessageBox.Icon.Warning if question.warning else QMessageBox.Icon.Question
        box = QMessageBox(
            icon,
            question.title,
            question.text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self._parent,
        )
        if question.informative:
            box.setInformativeText(question.informative)
        if question.yes_text:
            box.button(QMessageBox.StandardButton.Yes).setText(question.yes_text)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return dialogs.run_box(box) == QMessageBox.StandardButton.Yes

    def ask_discard(self, action: str) -> Discard:
        answer = dialogs.ask_discard(self._parent, action)
        if answer == QMessageBox.StandardButton.Save:
            return Discard.SAVE
        if answer == QMessageBox.StandardButton.Discard:
            return Discard.DISCARD
        return Discard.CANCEL

    def ask_quit_while_saving(self) -> QuitWhileSaving:
        return QuitWhileSaving(dialogs.ask_quit_while_saving(self._parent))

    def ask_trust(self, path: Path) -> bool:
        return dialogs.ask_trust(self._parent, path)

    def ask_arch(self, path: Path, spec: str | None, folder: str) -> str | None:
        return dialogs.ask_arch(self._parent, path, spec, folder)


class ScriptedFeedback(Feedback):
    """For ``--quit-after-run``: errors on stderr and an exit code (``exit``), no boxes."""

    def __init__(
        self,
        exit: Callable[[int], None],
        log_sink: Callable[[str], None],
        status_sink: Callable[[str], None],
    ) -> None:
        super().__init__(log_sink, status_sink)
        self._exit = exit

    def _report(self, exc: BaseException, trace: str) -> None:
        print(f"secateur: error: {exc}", file=sys.stderr)
        if trace and not isinstance(exc, UserError):
            print(trace, file=sys.stderr)
        self._exit(2 if isinstance(exc, UserError) else 1)

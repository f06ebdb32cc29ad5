"""Where the window's sweeps evaluate: this machine, or a Ray cluster (``core.cluster``).

The Sensitivity tab's "Run on" setting picks it (remembered in the preferences); the
sensitivity sweep and Recommend's fidelity step then hand their evaluations to one
``RayEvaluator`` for that address. Latency is never measured there: Recommend times every
layer on this machine, the one the plan is for.

Connecting blocks for seconds (starting a local Ray instance, or joining a cluster), so it
happens on the worker thread, inside the job that needs it, never on the GUI thread. A Ray
driver joins one cluster at a time: when the address changes, the old evaluator is closed
on the worker thread before the next one connects (or at once, in the background, when the
window goes back to this machine), and the last one when the window closes. The cluster's
state (connected, workers, tasks done) reaches the status bar through ``statusChanged``,
emitted from whichever thread Ray reports on; Qt queues it to the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, Signal

from core.cluster import LOCAL, ClusterStatus, RayEvaluator
from core.errors import Cancelled, ClusterError
from gui import prefs
from gui.worker import JobRunner

THIS_MACHINE = "this machine"


def where_text(address: str | None) -> str:
    """How a log line names where evaluations run."""
    if address is None:
        return THIS_MACHINE
    if address == LOCAL:
        return "a local Ray instance"
    return f"the Ray cluster at {address}"


class ClusterLink(QObject):
    """The window's one connection to Ray; see the module docstring."""

    statusChanged = Signal(str)  # one line for the status bar; "" on this machine
    _reported = Signal(str, str)  # (address, text), from any thread

    def __init__(self, runner: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self._address = prefs.run_on()
        self._evaluator: RayEvaluator | None = None
        self._stale: list[RayEvaluator] = []
        self._lock = threading.Lock()  # _evaluator and _stale: set here, used on the worker
        self.last_text = ""
        self.problem: str | None = None  # why the chosen place cannot be used (no address)
        self._reported.connect(self._on_reported)  # queued to this (the GUI) thread

    @property
    def address(self) -> str | None:
        """None for this machine, else the Ray address (``local`` starts one here)."""
        return self._address

    def set_address(self, address: str | None) -> None:
        """Run the next sweeps there (remembered); the old connection is let go."""
        address = (address or "").strip() or None
        if self.problem is not None:
            self.problem = None
            self.show(self.idle_text())
        if address == self._address:
            return
        self._address = address
        prefs.set_run_on(address)
        if self._retire() and address is None:
            self.runner.background("ray-close", self._close_stale_job)
        self.show(self.idle_text())

    def idle_text(self) -> str:
        if self._address is None:
            return ""
        return f"Ray {self._address}: connects at the next sweep"

    def set_problem(self, problem: str) -> None:
        """The chosen place cannot be used yet (a cluster without its address): every
        sweep and Recommend refuses with ``problem`` until ``set_address``."""
        self.problem = problem
        self.show(problem)

    def show(self, text: str) -> None:
        """Say this in the status bar now (GUI thread)."""
        self.last_text = text
        self.statusChanged.emit(text)

    # ------------------------------------------------------------------ jobs
    def job(
        self, task: Callable[..., Generator[Any, None, Any]], event: Callable[[str], Any]
    ) -> Callable[[Callable[[], bool]], Generator[Any, None, Any]]:
        """The runner's job for ``task`` (called with ``should_stop=`` and ``evaluator=``):
        it connects to the place chosen now (``connected``), then runs the task there.
        ``event(message)`` makes the task's own kind of progress event."""
        address = self._address

        def run(should_stop: Callable[[], bool]) -> Generator[Any, None, Any]:
            evaluator = yield from self.connected(address, should_stop, event)
            return (yield from task(should_stop=should_stop, evaluator=evaluator))

        return run

    def connected(
        self,
        address: str | None,
        should_stop: Callable[[], bool],
        event: Callable[[str], Any],
    ) -> Generator[Any, None, RayEvaluator | None]:
        """On the worker thread, inside a job: the evaluator for ``address`` (taken on the
        GUI thread when the job was asked for), connected; None for this machine.
        ``event(message)`` makes the job's progress event said before the seconds of
        connecting. A ``ClusterError`` names what failed (Ray not installed, an address that
        does not answer) in one line, in the window's words."""
        self._retire(unless=address)  # a Ray driver joins one cluster at a time
        self._close_stale()
        with self._lock:
            evaluator = self._evaluator
        if address is None:
            return None
        if evaluator is None:
            evaluator = RayEvaluator(address, on_status=self._on_status)
            with self._lock:
                self._evaluator = evaluator
        if not evaluator.status.connected:
            self._report(address, f"Ray {address}: connecting\u2026")
            yield event(f"connecting to {where_text(address)}")
        try:
            evaluator.connect()
        except Exception as exc:
            self._retire()  # the next sweep starts afresh
            self._close_stale()
            self._report(address, f"Ray {address}: not connected")
            if isinstance(exc, ClusterError):  # the command line's words, in the window's
                raise ClusterError(str(exc).replace("--ray", "Run on", 1)) from None
            raise
        if should_stop():
            raise Cancelled()
        return evaluator

    def _close_stale_job(self, should_stop: Callable[[], bool]) -> Generator[Any, None, None]:
        del should_stop
        self._close_stale()
        return
        yield

    def _close_stale(self) -> None:
        with self._lock:
            stale, self._stale = self._stale, []
        for evaluator in stale:
            evaluator.on_status = None  # its last word must not overwrite the new address's
            try:
                evaluator.close()
            except Exception:  # one that cannot leave must not keep the others connected
                logging.getLogger(__name__).exception("closing Ray at %s", evaluator.address)

    def close(self) -> None:
        """Leave the cluster (a local instance is shut down); the window is closing and
        the worker thread has stopped."""
        self._retire()
        self._close_stale()

    def _retire(self, unless: str | None = None) -> bool:
        """Let the current evaluator go (closed by ``_close_stale``), unless it is for the
        address ``unless``; True when some evaluator waits to be closed."""
        with self._lock:
            current = self._evaluator
            if current is not None and (unless is None or current.address != unless):
                self._stale.append(current)
                self._evaluator = None
            return bool(self._stale)

    # ------------------------------------------------------------------ status
    def _on_status(self, status: ClusterStatus) -> None:
        self._report(status.address, status.text())

    def _report(self, address: str, text: str) -> None:
        self._reported.emit(address, text)  # any thread: Qt queues it to the GUI thread

    def _on_reported(self, address: str, text: str) -> None:
        if address == self._address:  # a line about an address left meanwhile is dropped
            self.show(text)

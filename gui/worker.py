"""One job at a time, off the GUI thread: a generator driven on a QThread.

A job is a factory returning a generator (the core's ``compress``, a model load, a save) that
yields progress events and returns its result. ``JobRunner`` runs it on a thread and reports
back on the GUI thread:

    started(name) -> progress(event, layers)* -> finished(name, result)
                                               | cancelled(name)
                                               | failed(name, exc, traceback)

Each job is started with its own callbacks (``on_progress``, ``on_losses``, ``on_finished``,
``on_cancelled``, ``on_failed``), called right after the matching signal, so whoever starts a
job handles its outcome and nothing dispatches on job names; the signals are for observers
(tests, benchmarks) that watch every job.

Progress is coalesced: the worker keeps only the latest event and posts at most one
notification at a time, so a model with ten thousand layers cannot flood the event loop, and
the GUI is only told when what it shows (the step or the message) changes. Partial results
are never coalesced away: every ``event.layer`` arrives in ``progress``'s list, and every
``event.loss`` (one per fine-tune epoch) in ``losses``, just before. Cancel sets a flag
the generator polls between steps (the core raises ``Cancelled``). Starting a job while one
runs cancels the running one first and starts the new one when it has stopped.

A *background* job (``background``) is a quiet one, such as the preview of which layers a
recipe will shrink: it runs on the same worker thread, in turn with the others (so it never
competes with a compression's latency measurement), never makes the runner busy and emits no
signal; only its own callbacks hear of it. A newer background job of the same name stops an
older one that has not finished, whose outcome is then dropped.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import (
    QCoreApplication,
    QDeadlineTimer,
    QEventLoop,
    QObject,
    QThread,
    Signal,
    Slot,
)

from core.errors import Cancelled

JobFactory = Callable[[Callable[[], bool]], Generator[Any, None, Any]]
"""Called on the worker thread with ``should_stop``; returns the job's generator."""


def _ignore(*args: Any) -> None:
    """The callback of an outcome nobody asked to hear about."""


@dataclass(frozen=True)
class Callbacks:
    """What one job's starter wants to hear, all called on the GUI thread."""

    on_progress: Callable[[Any, list[dict[str, Any]]], None] = _ignore  # event, layer rows
    on_losses: Callable[[list[float]], None] = _ignore  # fine-tune epochs done
    on_finished: Callable[[Any], None] = _ignore  # the result
    on_cancelled: Callable[[], None] = _ignore
    on_failed: Callable[[BaseException, str], None] = _ignore  # exception, traceback


@dataclass
class _Outcome:
    kind: str = "finished"  # finished | cancelled | failed
    result: Any = None
    error: BaseException | None = None
    trace: str = ""


@dataclass
class _Mailbox:
    """The latest progress event and the partial results not yet shown, under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: Any = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    posted: bool = False
    shown: tuple[Any, ...] | None = None


class _Job:
    """One job: its generator factory, its stop flag, its progress mailbox, its outcome."""

    def __init__(self, name: str, factory: JobFactory, callbacks: Callbacks | None = None) -> None:
        self.name = name
        self.factory = factory
        self.callbacks = callbacks or Callbacks()
        self.stop = threading.Event()
        self.mailbox = _Mailbox()
        self.outcome = _Outcome()

    def take(self) -> tuple[Any, list[dict[str, Any]], list[float]]:
        """The latest event, the layer results and the losses since the last take."""
        box = self.mailbox
        with box.lock:
            event, layers, losses = box.latest, box.layers, box.losses
            box.latest, box.layers, box.losses, box.posted = None, [], [], False
        return event, layers, losses


class _Worker(QObject):
    """Lives on the worker thread and drives one job's generator at a time."""

    progressPosted = Signal(object)  # the job with news in its mailbox
    jobDone = Signal(object)  # the job, its outcome filled in

    @Slot(object)
    def run_job(self, job: _Job) -> None:
        try:
            gen = job.factory(should_stop=job.stop.is_set)
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    job.outcome = _Outcome("finished", stop.value)
                    break
                self._post(job, event)
        except Cancelled:
            job.outcome = _Outcome("cancelled")
        except BaseException as exc:  # a crash in the job becomes an error dialog
            job.outcome = _Outcome("failed", None, exc, traceback.format_exc())
        self.jobDone.emit(job)

    def _post(self, job: _Job, event: Any) -> None:
        shown = _shown_value(event)
        layer = getattr(event, "layer", None)
        loss = getattr(event, "loss", None)
        box = job.mailbox
        with box.lock:
            if layer:
                box.layers.append(layer)
            if loss is not None:
                box.losses.append(float(loss))
            if shown == box.shown and not layer and loss is None:
                return
            box.shown = shown
            box.latest = event
            if box.posted:
                return
            box.posted = True
        self.progressPosted.emit(job)


def _shown_value(event: Any) -> tuple[Any, ...]:
    """What the progress bar and step text show for an event."""
    step = getattr(event, "step", 0)
    total = getattr(event, "total", 0)
    permille = int(1000 * step / total) if total else -1
    return (permille, getattr(event, "message", ""))


class JobRunner(QObject):
    """Runs at most one job at a time on its worker thread; see the module docstring.

    The thread is started once and reused for every job, so PyTorch's intra-op thread pool
    is created once too (a fresh OS thread per job gets a fresh OpenMP team, and on a busy
    machine two teams fight over the cores and distort latency measurements).
    """

    started = Signal(str)
    progress = Signal(object, list)  # latest event, layer results since the last one
    losses = Signal(list)  # fine-tune losses (one per epoch) since the last one
    finished = Signal(str, object)
    cancelled = Signal(str)
    failed = Signal(str, object, str)  # name, exception, formatted traceback
    busyChanged = Signal(bool)
    _submit = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._job: _Job | None = None
        self._queued: _Job | None = None
        self._background: dict[str, _Job] = {}
        self._thread: QThread | None = None
        self._worker: _Worker | None = None

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        thread = QThread(self)
        thread.setObjectName("secateur-worker")
        worker = _Worker()
        worker.moveToThread(thread)
        self._submit.connect(worker.run_job)
        worker.progressPosted.connect(self._on_progress_posted)
        worker.jobDone.connect(self._on_job_done)
        thread.finished.connect(worker.deleteLater)
        self._thread, self._worker = thread, worker
        thread.start()

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def job_name(self) -> str | None:
        """The running job's name ("load", "compress", "save", ...), or None."""
        return self._job.name if self._job is not None else None

    def start(
        self,
        name: str,
        factory: JobFactory,
        *,
        on_progress: Callable[[Any, list[dict[str, Any]]], None] = _ignore,
        on_losses: Callable[[list[float]], None] = _ignore,
        on_finished: Callable[[Any], None] = _ignore,
        on_cancelled: Callable[[], None] = _ignore,
        on_failed: Callable[[BaseException, str], None] = _ignore,
    ) -> None:
        """Run ``factory``'s generator, reporting to these callbacks; a running job is
        cancelled first. ``name`` is for people (logs, the signals), never dispatched on."""
        callbacks = Callbacks(on_progress, on_losses, on_finished, on_cancelled, on_failed)
        self._begin(_Job(name, factory, callbacks))

    def _begin(self, job: _Job) -> None:
        if self._job is not None:
            self._queued = job
            self._job.stop.set()
            return
        self._ensure_thread()
        self._job = job
        self.busyChanged.emit(True)
        self.started.emit(job.name)
        self._submit.emit(job)

    def prepare(self, factory: JobFactory) -> None:
        """Run a quiet background job (a warm-up) on the worker thread: no signals, not
        busy, never cancelled; a job started meanwhile simply runs after it."""
        self._ensure_thread()
        self._submit.emit(_Job("prepare", factory))

    def background(
        self,
        name: str,
        factory: JobFactory,
        *,
        on_finished: Callable[[Any], None] = _ignore,
        on_failed: Callable[[BaseException, str], None] = _ignore,
    ) -> None:
        """Run a quiet job (see the module docstring): not busy, no signals, its outcome
        only to these callbacks; it replaces the unfinished background job of this name."""
        self._ensure_thread()
        old = self._background.get(name)
        if old is not None:
            old.stop.set()
        job = _Job(name, factory, Callbacks(on_finished=on_finished, on_failed=on_failed))
        self._background[name] = job
        self._submit.emit(job)

    def background_pending(self, name: str) -> bool:
        """Whether a background job of this name has not delivered its outcome yet."""
        return name in self._background

    def cancel(self) -> bool:
        """Ask the running job to stop at its next step; False when nothing runs."""
        self._queued = None
        if self._job is None:
            return False
        self._job.stop.set()
        return True

    def wait(self, msecs: int = 30_000) -> bool:
        """Block until the running job has ended (its outcome is then delivered)."""
        deadline = QDeadlineTimer(msecs)
        while self._job is not None and not deadline.hasExpired():
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            QThread.msleep(5)
        return self._job is None

    def shutdown(self, msecs: int = 60_000) -> None:
        """Cancel any job and stop the worker thread (the window calls this on close)."""
        for job in self._background.values():
            job.stop.set()
        self._background.clear()
        self.cancel()
        self.wait(msecs)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.quit()
            thread.wait(msecs)

    @Slot(object)
    def _on_progress_posted(self, job: _Job) -> None:
        if job is not self._job:
            return
        event, layers, losses = job.take()
        if losses:
            self.losses.emit(losses)
            job.callbacks.on_losses(losses)
        if event is not None or layers:
            self.progress.emit(event, layers)
            job.callbacks.on_progress(event, layers)

    @Slot(object)
    def _on_job_done(self, job: _Job) -> None:
        if job is not self._job:
            if self._background.get(job.name) is job:
                del self._background[job.name]
                outcome = job.outcome
                if outcome.kind == "finished":
                    job.callbacks.on_finished(outcome.result)
                elif outcome.kind == "failed" and outcome.error is not None:
                    job.callbacks.on_failed(outcome.error, outcome.trace)
            return
        self._on_progress_posted(job)  # the last step before the end
        self._job = None
        outcome = job.outcome
        queued, self._queued = self._queued, None
        done = job.callbacks
        if outcome.kind == "finished":
            self.finished.emit(job.name, outcome.result)
            done.on_finished(outcome.result)
        elif outcome.kind == "cancelled":
            self.cancelled.emit(job.name)
            done.on_cancelled()
        else:
            assert outcome.error is not None
            self.failed.emit(job.name, outcome.error, outcome.trace)
            done.on_failed(outcome.error, outcome.trace)
        if queued is not None and self._job is None:
            self._begin(queued)
        elif self._job is None:
            self.busyChanged.emit(False)

"""gui.worker.JobRunner: results, coalesced progress, cancel, crashes, one job at a time;
gui.qt_fixes: the PySide6 emit reference work-around."""

from __future__ import annotations

import sys
import time

import pytest
from PySide6.QtCore import QObject, Signal

from core.engine import Progress
from core.errors import Cancelled
from gui import qt_fixes
from gui.worker import JobRunner


@pytest.fixture
def runner(qtbot):
    jobs = JobRunner()
    yield jobs
    jobs.shutdown()


def counting(n: int, pause: float = 0.0):
    def factory(should_stop):
        for i in range(n):
            if should_stop():
                raise Cancelled()
            if pause:
                time.sleep(pause)
            yield Progress("count", i + 1, n, f"step {i + 1}", layer={"name": f"l{i}"})
        return n

    return factory


def test_result_arrives_with_every_layer_result(qtbot, runner):
    seen: list = []
    layers: list = []
    results: list = []
    runner.progress.connect(lambda event, batch: (seen.append(event), layers.extend(batch)))
    runner.finished.connect(lambda name, result: results.append((name, result)))
    with qtbot.waitSignals([runner.started, runner.finished], order="strict", timeout=10_000):
        runner.start("count", counting(20_000))
    assert results == [("count", 20_000)]
    # coalesced: far fewer notifications than events, yet no layer result is lost
    assert 0 < len(seen) < 20_000
    assert len(layers) == 20_000 and layers[-1] == {"name": "l19999"}
    assert seen[-1].step == 20_000
    assert not runner.busy


def test_cancel_stops_between_steps(qtbot, runner):
    runner.start("slow", counting(1000, pause=0.01))
    qtbot.wait(50)
    with qtbot.waitSignal(runner.cancelled, timeout=10_000) as blocker:
        assert runner.cancel()
    assert blocker.args == ["slow"]
    assert not runner.busy and not runner.cancel()


def test_a_crash_is_reported_with_its_traceback(qtbot, runner):
    def broken(should_stop):
        yield Progress("x", 1, 2, "about to fail")
        raise ZeroDivisionError("division by zero in a job")

    with qtbot.waitSignal(runner.failed, timeout=10_000) as blocker:
        runner.start("broken", broken)
    name, exc, trace = blocker.args
    assert name == "broken" and isinstance(exc, ZeroDivisionError)
    assert "division by zero in a job" in trace and "broken" in trace
    with qtbot.waitSignal(runner.finished, timeout=10_000):
        runner.start("after", counting(3))


def test_a_new_job_cancels_the_running_one_first(qtbot, runner):
    events: list[str] = []
    runner.cancelled.connect(lambda name: events.append(f"cancelled {name}"))
    runner.finished.connect(lambda name, result: events.append(f"finished {name}"))
    runner.start("first", counting(1000, pause=0.01))
    qtbot.wait(30)
    with qtbot.waitSignal(runner.finished, timeout=10_000):
        runner.start("second", counting(5))
    assert events == ["cancelled first", "finished second"]


def test_the_emit_reference_work_around_holds():
    class Emitter(QObject):
        fired = Signal(int)

    qt_fixes.install()
    emitter = Emitter()
    before = sys.getrefcount(True)
    for i in range(5_000):
        emitter.fired.emit(i)
    assert sys.getrefcount(True) >= before - 2

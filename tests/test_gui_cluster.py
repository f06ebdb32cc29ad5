"""The window's "Run on" setting (Sensitivity tab): a sweep through a local Ray instance gives
the local sweep's numbers, the cluster's state reaches the status bar, the choice is
remembered, a bad address is one line and the window carries on, and failed layers are
named above the curves.

``make test`` installs the cluster extra, so Ray is here; one local instance (2 CPUs, all
this machine has) is started by the window itself, on its worker thread, as a user's is.
"""

from __future__ import annotations

import threading

import pytest
import ray

from core.cluster import RayEvaluator
from gui import prefs

TIMEOUT = 180_000
AMOUNTS = "30, 60, 90"


@pytest.fixture(autouse=True)
def sweep_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(tmp_path / "sensitivity-cache"))


def _quick(window) -> None:
    panel = window.results.sensitivity_panel
    panel.amounts_edit.setText(AMOUNTS)
    panel.subset_spin.setValue(100)


def _choose(window, data: str, address: str = "") -> None:
    panel = window.results.sensitivity_panel
    panel.address_edit.setText(address)
    panel.run_on_combo.setCurrentIndex(panel.run_on_combo.findData(data))
    panel.address_edit.editingFinished.emit()


def _sweep(qtbot, window):
    with qtbot.waitSignal(window.sweepFinished, timeout=TIMEOUT) as blocker:
        window.run_sensitivity()
    return blocker.args[0]


def _points(data) -> dict[str, list[tuple[float, float]]]:
    return {
        row["name"]: [(p["amount"], p["metric"]) for p in row["points"]] for row in data["layers"]
    }


def test_a_sweep_on_local_ray_matches_this_machine_and_shows_the_cluster(
    qtbot, demo_window, tmp_path, monkeypatch
):
    window = demo_window
    _quick(window)
    assert not window.cluster_label.isVisible()  # this machine: nothing to say
    here = _sweep(qtbot, window)
    assert not here.cached

    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(tmp_path / "second-cache"))  # measure again
    _choose(window, "local")
    assert prefs.run_on() == "local"  # remembered
    assert window.cluster_label.text() == "Ray local: connects at the next sweep"
    statuses: list[str] = []
    window.cluster.statusChanged.connect(statuses.append)
    on_main: list[bool] = []
    connect = RayEvaluator.connect

    def spy(self):
        on_main.append(threading.current_thread() is threading.main_thread())
        return connect(self)

    monkeypatch.setattr(RayEvaluator, "connect", spy)
    try:
        there = _sweep(qtbot, window)
        assert on_main and not any(on_main)  # seconds of connecting: never on the GUI thread
        assert not there.cached
        assert ray.is_initialized()
        # same layers, same amounts; the same numbers (two torch threads here: the order of
        # a float sum may differ between processes by a rounding, never more)
        assert there.data["settings"] == here.data["settings"]
        assert there.data["baseline"] == here.data["baseline"]
        ours, theirs = _points(here.data), _points(there.data)
        assert list(theirs) == list(ours) == ["conv1", "conv2", "fc1", "fc2"]
        for name, points in ours.items():
            assert [a for a, _ in theirs[name]] == [a for a, _ in points]
            assert [m for _, m in theirs[name]] == pytest.approx([m for _, m in points], abs=1e-6)
        # the status bar followed the cluster: connecting, then tasks done, all four
        qtbot.waitUntil(lambda: window.cluster_label.text().endswith("4/4 tasks done"))
        assert statuses[0] == "Ray local: connecting\u2026"
        assert any("tasks done" in s and not s.endswith("4/4 tasks done") for s in statuses)
        assert window.cluster_label.text() == "Ray local: 2 workers, 4/4 tasks done"
        log = window.results.log_text()
        assert "evaluated on a local Ray instance" in log
        assert window.results.sensitivity_chart.values().keys() == ours.keys()
        path = tmp_path / "cluster.png"
        window.screenshot(path)
        assert path.stat().st_size > 0
    finally:
        # back to this machine: the local instance is shut down on the worker thread
        _choose(window, None)
        assert prefs.run_on() is None
        qtbot.waitUntil(lambda: not ray.is_initialized(), timeout=60_000)
    assert not window.cluster_label.isVisible()


def test_an_address_that_does_not_answer_is_one_line_and_the_window_carries_on(
    qtbot, demo_window, message_boxes
):
    window = demo_window
    _quick(window)
    errors = message_boxes.texts
    _choose(window, "cluster", "")
    assert window.cluster_label.text().startswith("Run on: give the Ray cluster's address")
    window.run_sensitivity()  # no address yet: said before anything starts
    assert not window.jobs.busy
    assert errors()[-1].startswith("Run on: give the Ray cluster's address")
    window.plans.run()  # Recommend too: it would otherwise run where the combo no longer says
    assert not window.jobs.busy
    assert errors()[-1].startswith("Run on: give the Ray cluster's address")
    _choose(window, "cluster", "127.0.0.1:9")  # the discard port: nothing answers there
    assert prefs.run_on() == "127.0.0.1:9"
    with qtbot.waitSignal(window.sweepFailed, timeout=TIMEOUT):
        window.run_sensitivity()
    assert errors()[-1].startswith("Run on 127.0.0.1:9: no Ray cluster reachable")  # not --ray
    assert "\n" not in errors()[-1].strip()
    assert window.cluster_label.text() == "Ray 127.0.0.1:9: not connected"
    assert window.session.sweep is None  # nothing was changed
    _choose(window, None)
    assert _sweep(qtbot, window).data["layers"]  # the window carries on, on this machine


def _new_window(qtbot):
    from gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    return window


def test_the_choice_is_remembered_by_the_next_window(qtbot, message_boxes):
    prefs.set_run_on("10.0.0.5:6379")
    window = _new_window(qtbot)
    panel = window.results.sensitivity_panel
    assert panel.run_on() == "10.0.0.5:6379"
    assert panel.address_edit.isVisibleTo(panel)
    assert window.cluster_label.text() == "Ray 10.0.0.5:6379: connects at the next sweep"
    prefs.set_run_on("local")
    window = _new_window(qtbot)
    assert window.results.sensitivity_panel.run_on() == "local"
    # the cluster address typed before stays ready in the box
    assert window.results.sensitivity_panel.address_edit.text() == "10.0.0.5:6379"


def test_a_failed_layer_is_named_above_the_curves_and_left_out_of_them(qtbot, demo_window):
    window = demo_window
    _quick(window)
    result = _sweep(qtbot, window)
    data = dict(result.data)
    failed = {
        "name": "conv2",
        "type": "Conv2d",
        "parameters": 9216,
        "points": [],
        "failed": "RuntimeError: worker died",
    }
    data["layers"] = [r if r["name"] != "conv2" else failed for r in data["layers"]]
    window.session.set_sweep(data, False)
    panel = window.results.sensitivity_panel
    assert panel.failed_label.isVisibleTo(panel)
    assert panel.failed_label.text().startswith("\u2717 1 layer failed to evaluate")
    assert "conv2: RuntimeError: worker died" in panel.failed_label.text()
    assert list(window.results.sensitivity_chart.values()) == ["conv1", "fc1", "fc2"]
    assert "conv2" not in window.results.sensitivity_panel.heatmap.names()
    window.session.set_sweep(result.data, False)
    assert not panel.failed_label.isVisibleTo(panel)


def test_closing_the_window_leaves_the_cluster(qtbot, message_boxes, tmp_path, monkeypatch):
    from gui.main_window import MainWindow

    prefs.set_run_on("local")
    window = MainWindow()
    window.show()
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        window.open_demo()
    _quick(window)
    _sweep(qtbot, window)
    assert ray.is_initialized()  # the window started a local instance
    window.close_without_asking()
    assert not ray.is_initialized()  # and closing the window shut it down

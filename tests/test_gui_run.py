"""The window end to end (offscreen): a demo run and its charts, cancel, crash, save, export,
bad files, pickles that need trust, state dicts that need an architecture, drag and drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import use_quick_recipe
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox

from core.demos import DEMO_RECIPE_PATH
from core.loading import load_model
from core.recipe import parse_recipe
from gui import dialogs, prefs
from gui.choices import SAVE_FILTERS
from gui.report_rows import metric_ratios

RUN_TIMEOUT = 60_000


def run_and_wait(qtbot, window):
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT) as blocker:
        window.run_compression()
    return blocker.args[0]


def without_measurements(window) -> None:
    """No data and no input shape: the run measures sizes and sparsity only (fast)."""
    window.session.set_eval_data(None, None)
    window.settings.set_input_shape("")


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_demo_run_shows_the_report(qtbot, demo_window):
    window = demo_window
    assert "demo (digits CNN)" in window.windowTitle()
    assert not window.isWindowModified()
    result = run_and_wait(qtbot, window)
    report = result.report.to_dict()
    names, before, after = window.results.sparsity_chart.values()
    # issue 13: the chart has the prunable layers only (no empty BatchNorm row); issue 10:
    # it shows the weights each layer keeps (here, zeroed: 1 - sparsity)
    rows = [row for row in report["layers"] if row["name"] in ("conv1", "conv2", "fc1", "fc2")]
    assert names == [row["name"] for row in rows]
    assert before == pytest.approx([1 - row["sparsity_before"] for row in rows])
    assert after == pytest.approx([1 - row["sparsity_after"] for row in rows])
    assert after[names.index("fc1")] == pytest.approx(0.5, abs=0.01)
    assert window.results.metrics_chart.values() == metric_ratios(result.report)
    assert (
        window.tree.model.after_sparsity("fc1")
        == report["layers"][names.index("fc1")]["sparsity_after"]
    )
    assert window.results.metrics_table.item(0, 0).text() == "Parameters"
    assert window.isWindowModified()
    assert window.action("save").isEnabled() and window.action("run").isEnabled()
    assert not window.action("cancel").isEnabled()


def test_tree_selection_and_chart_clicks_follow_each_other(qtbot, demo_window):
    window = demo_window
    window.tree.select_layer("fc2")
    assert window.results.sparsity_chart.highlighted() == "fc2"
    window.results.sparsity_chart.layerClicked.emit("conv1")
    assert window.tree.current_layer() == "conv1"
    assert window.results.sparsity_chart.highlighted() == "conv1"
    index = window.results.sparsity_chart.row_of("conv1")
    assert "conv1 (Conv2d)" in window.results.sparsity_chart.tooltip_for(index)


def test_cancel_leaves_the_model_untouched_and_a_second_run_works(qtbot, demo_window):
    window = demo_window
    original = snapshot(window.session.loaded.model)
    # a long fine-tune so that the cancel lands mid-run
    window.settings.finetune_box.setChecked(True)
    window.settings.epochs_spin.setValue(500)
    cancelled_during: list[str] = []

    def cancel_once(event, layers):
        if not cancelled_during and event is not None and event.stage == "finetune":
            cancelled_during.append(event.stage)
            window.cancel_job()

    window.jobs.progress.connect(cancel_once)
    with qtbot.waitSignal(window.runCancelled, timeout=RUN_TIMEOUT):
        window.run_compression()
    window.jobs.progress.disconnect(cancel_once)
    assert cancelled_during == ["finetune"]
    assert window.session.result is None
    assert window.tree.model.after_sparsity("fc1") is None  # back to the pre-run state
    assert not window.jobs.busy and window.action("run").isEnabled()
    assert window.settings.run_button.isEnabled()
    after = window.session.loaded.model.state_dict()
    assert after.keys() == original.keys()
    for key, tensor in original.items():
        assert torch.equal(after[key], tensor), key
    window.settings.finetune_box.setChecked(False)
    without_measurements(window)
    result = run_and_wait(qtbot, window)
    assert result.report.layers


def test_a_crash_in_the_job_is_an_error_dialog(qtbot, demo_window, message_boxes, monkeypatch):
    window = demo_window

    def broken_job(*args, **kwargs):
        yield from ()
        raise RuntimeError("boom inside the engine")

    monkeypatch.setattr("core.tasks.compress_model", broken_job)
    with qtbot.waitSignal(window.runFailed, timeout=RUN_TIMEOUT):
        window.run_compression()
    icon, text, _, details = message_boxes[-1]
    assert icon == QMessageBox.Icon.Critical
    assert "boom inside the engine" in text
    assert "Traceback" in details and "broken_job" in details
    monkeypatch.undo()
    without_measurements(window)
    assert run_and_wait(qtbot, window).report.layers


def test_corrupt_model_file_gives_an_error_then_the_demo_still_runs(
    qtbot, window, message_boxes, tmp_path
):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x80\x02not really a pickle" + bytes(range(200)))
    with qtbot.waitSignal(window.jobs.failed, timeout=RUN_TIMEOUT):
        window.open_model(bad)
    icon, text, _, details = message_boxes[-1]
    assert icon == QMessageBox.Icon.Warning  # a user error: one line, no traceback
    assert "broken.pt" in text and "\n" not in text and not details
    assert window.session.loaded is None
    with qtbot.waitSignal(window.modelLoaded, timeout=RUN_TIMEOUT):
        window.open_demo()
    use_quick_recipe(window)
    without_measurements(window)
    assert run_and_wait(qtbot, window).report.layers


def test_save_through_the_dialog_writes_a_file_that_reloads(
    qtbot, demo_window, monkeypatch, tmp_path
):
    window = demo_window
    result = run_and_wait(qtbot, window)
    target = tmp_path / "small"  # no suffix: the chosen format's is added
    asked: list[tuple] = []

    def fake_save(parent, caption, directory, filters, selected="", *args):
        asked.append((caption, filters, selected))
        return str(target), SAVE_FILTERS["state_dict"]

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_save))
    with qtbot.waitSignal(window.saved, timeout=RUN_TIMEOUT) as blocker:
        window.saves.save_dialog()
    outcome = blocker.args[0]
    assert asked and asked[0][2] == SAVE_FILTERS["state_dict"]
    assert outcome.path == tmp_path / "small.pt" and outcome.path.exists()
    assert outcome.round_trip["ok"] is True
    assert not window.isWindowModified()
    assert window.results.metrics_table.item(3, 2).text() != "not saved"
    reloaded = load_model(outcome.path, arch="core.demo:build_model").model
    x = window.session.eval_data.x[:8]
    with torch.inference_mode():
        assert torch.allclose(reloaded(x), result.model(x), atol=1e-5)


def test_save_refuses_to_overwrite_the_opened_model(
    qtbot, window, message_boxes, tmp_path, monkeypatch
):
    from core.demo import build_model

    path = tmp_path / "mine.pt"
    torch.save(build_model().state_dict(), path)
    prefs.remember_arch(path, "core.demo:build_model")
    with qtbot.waitSignal(window.modelLoaded, timeout=RUN_TIMEOUT):
        window.open_model(path)
    window.settings.set_input_shape("1x1x8x8")
    window.action("check_all").trigger()  # issue 13: a model opens with nothing checked
    run_and_wait(qtbot, window)
    before = path.read_bytes()
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *a, **k: (str(path), SAVE_FILTERS["state_dict"])),
    )
    window.saves.save_dialog()
    assert "is the model you opened" in message_boxes[-1][1]
    assert path.read_bytes() == before
    assert not window.jobs.busy


def test_export_report_writes_json_and_chart_images(qtbot, demo_window, tmp_path):
    window = demo_window
    without_measurements(window)
    result = run_and_wait(qtbot, window)
    written = window.saves.export(tmp_path / "report.json", window.results.chart_images())
    assert [p.name for p in written] == [
        "report.json",
        "report-sparsity.png",
        "report-metrics.png",
    ]
    assert json.loads(written[0].read_text())["layers"] == result.report.to_dict()["layers"]
    for png in written[1:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pickled_model_asks_for_trust(qtbot, window, tmp_path, monkeypatch):
    from core.demo import build_model

    path = tmp_path / "whole.pt"
    torch.save(build_model(), path)
    answers = iter([False, True])
    asked: list[Path] = []

    def fake_ask(parent, p):
        asked.append(p)
        return next(answers)

    monkeypatch.setattr(dialogs, "ask_trust", fake_ask)
    with qtbot.waitSignal(window.jobs.failed, timeout=RUN_TIMEOUT):
        window.open_model(path)
    assert asked == [path] and window.session.loaded is None
    with qtbot.waitSignal(window.modelLoaded, timeout=RUN_TIMEOUT):
        window.open_model(path)
    assert window.session.loaded.format == "pickle"


def test_state_dict_asks_for_the_architecture_and_remembers_it(
    qtbot, window, tmp_path, monkeypatch
):
    from core.demo import build_model

    path = tmp_path / "weights.pt"
    torch.save(build_model().state_dict(), path)
    monkeypatch.setattr(
        dialogs, "ask_arch", lambda parent, p, spec, folder: "core.demo:build_model"
    )
    with qtbot.waitSignal(window.modelLoaded, timeout=RUN_TIMEOUT):
        window.open_model(path)
    assert window.session.loaded.arch == "core.demo:build_model"
    assert prefs.arch_for(path) == "core.demo:build_model"
    assert prefs.recent_files() == [str(path.resolve())]
    # issue 13: a neutral start, nothing checked and nothing to quantize
    assert window.session.selection.checked_names() == []
    assert window.current_recipe().is_empty()


def test_a_dropped_model_file_opens(qtbot, window, tmp_path):
    from core.demo import build_model

    path = tmp_path / "dropped.pt"
    torch.save(build_model().state_dict(), path)
    prefs.remember_arch(path, "core.demo:build_model")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(window.modelLoaded, timeout=RUN_TIMEOUT):
        window.dropEvent(event)
    assert window.session.loaded.path == path
    assert "dropped.pt" in window.windowTitle()


def test_bad_recipe_is_a_one_line_message(window, qtbot, message_boxes, tmp_path):
    with qtbot.waitSignal(window.modelLoaded, timeout=RUN_TIMEOUT):
        window.open_demo()
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nprune:\n  - layers: ['nothing*']\n    amount: 0.5\n")
    assert not window.load_recipe_file(bad)
    assert message_boxes[-1][1].startswith("bad.yaml: prune[0].layers: 'nothing*' matches")


def test_settings_are_isolated(isolated_settings):
    from PySide6.QtCore import QSettings

    assert Path(QSettings().fileName()).is_relative_to(isolated_settings)


def test_demo_recipe_is_applied_on_open(qtbot, demo_own_recipe_window):
    """The demo opens with its own recipe: channels removed from conv1, conv2 and fc1 by
    half, a fine-tune and a measured quantization plan of the Linear layers."""
    window = demo_own_recipe_window
    expected = parse_recipe(DEMO_RECIPE_PATH.read_text())
    state = window.window_state()
    assert state.checked == ["conv1", "conv2", "fc1"] == expected.prune[0].layers
    assert state.prune.method == "remove_channels" == expected.prune[0].method
    assert state.prune.amount == expected.prune[0].amount and not state.overrides
    assert state.finetune == expected.finetune and state.finetune.epochs == 5
    panel = window.settings
    assert panel.method_box.currentData() == "remove_channels"
    assert panel.importance_box.isVisibleTo(panel) and panel.finetune_box.isChecked()
    assert panel.quant_box.isChecked() and panel.scheme_box.currentData() == "auto"
    assert panel.max_drop_spin.value() == expected.quantize[0].max_drop
    recipe = window.current_recipe()
    assert recipe.prune == expected.prune and recipe.finetune == expected.finetune
    assert recipe.quantize[0].scheme == "auto" and recipe.quantize[0].types == ["Linear"]
    assert recipe.quantize[0].max_drop == expected.quantize[0].max_drop
    # the layers that shrink with them are marked once the plan (in the background) is in
    model = window.tree.model
    qtbot.waitUntil(lambda: model.follows("bn1") is not None, timeout=RUN_TIMEOUT)
    assert "conv1" in model.follows("bn1") and "fc1" in model.follows("fc2")


def test_closing_during_a_run_stops_it_cleanly(qtbot, demo_window):
    window = demo_window
    original = snapshot(window.session.loaded.model)
    window.settings.finetune_box.setChecked(True)
    window.settings.epochs_spin.setValue(500)
    with qtbot.waitSignal(window.jobs.progress, timeout=RUN_TIMEOUT):
        window.run_compression()
    assert window.jobs.busy
    window.close_without_asking()  # cancels, waits for the worker, stops its thread
    assert not window.jobs.busy
    for key, tensor in original.items():
        assert torch.equal(window.session.loaded.model.state_dict()[key], tensor), key


def test_planned_amounts_show_before_a_run(qtbot, demo_window):
    window = demo_window
    window.session.selection.set_override("fc1", 0.8)
    # issue 13: prunable layers only (conv1, conv2, fc1, fc2): fc1 is the third row; the
    # chart shows the weights each layer will keep (zeroing 80% keeps 20%)
    qtbot.waitUntil(lambda: window.results.sparsity_chart.rows()[2].planned == pytest.approx(0.2))
    rows = {row.name: row for row in window.results.sparsity_chart.rows()}
    assert rows["conv1"].planned == 0.5 and "bn1" not in rows
    assert "20% planned" in window.results.sparsity_chart.tooltip_for(2)


def test_escape_cancels_a_run(qtbot, demo_window):
    from PySide6.QtTest import QTest

    window = demo_window
    window.settings.finetune_box.setChecked(True)
    window.settings.epochs_spin.setValue(500)
    window.activateWindow()
    with qtbot.waitSignal(window.jobs.progress, timeout=RUN_TIMEOUT):
        window.run_compression()
    assert window.action("cancel").isEnabled() and not window.action("run").isEnabled()
    with qtbot.waitSignal(window.runCancelled, timeout=RUN_TIMEOUT):
        QTest.keyClick(window.tree.view, Qt.Key.Key_Escape)
    assert window.action("run").isEnabled()


def test_torchscript_model_is_shown_but_not_compressed(qtbot, window, message_boxes, tmp_path):
    from core import compat
    from core.demo import build_model

    path = tmp_path / "scripted.pt"
    with compat.quiet():  # torch.jit is deprecated upstream; the file kind is still supported
        torch.jit.save(torch.jit.trace(build_model(), torch.randn(1, 1, 8, 8)), path)
    with qtbot.waitSignal(window.modelLoaded, timeout=RUN_TIMEOUT):
        window.open_model(path)
    assert window.session.loaded.format == "torchscript" and window.session.layers
    window.run_compression()
    assert "can be inspected but not pruned or quantized" in message_boxes[-1][1]
    assert not window.jobs.busy


def test_without_labels_the_accuracy_card_shows_top1_agreement(qtbot, demo_window):
    window = demo_window
    window.session.set_eval_data(None, None)
    window.settings.set_input_shape("1x1x8x8")  # a random input: fidelity, no accuracy
    report = run_and_wait(qtbot, window).report
    assert report.after.accuracy is None
    agreement = report.fidelity["top1_agreement"]
    assert agreement is not None  # the demo's outputs are class logits
    caption, value, _ = window.results.cards.texts()[3]
    assert (caption, value) == ("Top-1 agreement", f"{100 * agreement:.2f}%")


def test_a_data_file_loads_in_the_background(qtbot, demo_window, tmp_path):
    import numpy as np

    window = demo_window
    path = tmp_path / "eval.npz"
    np.savez(path, x=np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32))
    done: list[bool] = []
    started: list[str] = []
    window.jobs.started.connect(started.append)
    window.open_eval_data(path, done.append)
    assert started == ["data"] and window.jobs.busy  # returned at once, the job reads it
    qtbot.waitUntil(lambda: done == [True], timeout=RUN_TIMEOUT)
    assert window.session.eval_path == path and len(window.session.eval_data) == 16
    assert window.settings.data_file_names()[0] == "eval.npz"


def test_a_failing_job_reports_its_own_failure(qtbot, demo_window, message_boxes, monkeypatch):
    window = demo_window

    def broken_read(*args, **kwargs):
        yield from ()
        raise RuntimeError("the reader broke")

    monkeypatch.setattr("core.tasks.open_data", broken_read)
    with qtbot.waitSignal(window.jobs.failed, timeout=RUN_TIMEOUT):
        window.open_eval_data(Path("some.npz"))
    assert window.step_label.text() == "Could not read some.npz"
    assert "the reader broke" in message_boxes[-1][1]

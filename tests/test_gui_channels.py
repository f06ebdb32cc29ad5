"""The window for issue 10 (channel removal) and issue 12 (saving), offscreen: the
remove_channels options in the settings panel and in recipe files, the coupled layers marked
before a run (planned off the GUI thread), shapes and parameters before -> after in the tree,
weights kept per layer in the chart, refusals in a message box with the window still usable,
the save dialog's formats (sizes, greyed ones with the reason, a default that can hold the
result, a forced extension refused before work) and each latency's runtime in the Metrics tab.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QFileDialog

from core import compat
from core.methods import CHANNEL_SCOPES, IMPORTANCES
from core.recipe import load_recipe, parse_recipe
from gui.layer_tree_model import FOLLOWS, Col

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60_000
CHANNELS = """version: 1
prune:
  - layers: [conv1, conv2, fc1]
    method: remove_channels
    amount: 0.5
"""


def run_and_wait(qtbot, window):
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT) as blocker:
        window.run_compression()
    return blocker.args[0]


def wait_for_plan(qtbot, window):
    """Preview the settings now (not after the edit's short delay) and wait until their
    removal plan, made in the background, is shown."""
    window.recipes.update_preview()
    qtbot.waitUntil(lambda: not window.removal.pending, timeout=TIMEOUT)


def amount_cell(window, name: str) -> str:
    return window.tree.model.index_of(name, Col.AMOUNT).data() or ""


@pytest.fixture
def channels_window(demo_window):
    """The demo with a quick recipe that removes half the channels of conv1, conv2, fc1."""
    assert demo_window.apply_recipe(parse_recipe(CHANNELS, "channels.yaml"))
    return demo_window


# ============================================================ 1. the settings panel
def test_remove_channels_options_show_for_that_method_only(demo_window):
    panel = demo_window.settings
    options = (panel.importance_box, panel.channel_scope_box, panel.round_spin)
    assert not any(w.isVisibleTo(panel) for w in options)  # the quick recipe zeroes weights
    box = panel.method_box
    box.setCurrentIndex(box.findData("remove_channels"))
    assert all(w.isVisibleTo(panel) for w in options)
    assert not panel.keep_masks.isVisibleTo(panel)  # no mask to keep when channels go
    importances = [panel.importance_box.itemData(i) for i in range(panel.importance_box.count())]
    scopes = [panel.channel_scope_box.itemData(i) for i in range(panel.channel_scope_box.count())]
    assert (tuple(importances), tuple(scopes)) == (IMPORTANCES, CHANNEL_SCOPES)
    panel.importance_box.setCurrentIndex(panel.importance_box.findData("taylor"))
    panel.channel_scope_box.setCurrentIndex(panel.channel_scope_box.findData("global"))
    panel.round_spin.setValue(8)
    rule = demo_window.current_recipe().prune[0]
    assert (rule.method, rule.importance, rule.scope, rule.round_to) == (
        "remove_channels",
        "taylor",
        "global",
        8,
    )
    box.setCurrentIndex(box.findData("l1_unstructured"))
    assert not any(w.isVisibleTo(panel) for w in options)
    rule = demo_window.current_recipe().prune[0]
    assert (rule.importance, rule.scope, rule.round_to) == (None, None, None)


def test_channel_options_round_trip_through_recipe_files(qtbot, demo_window, monkeypatch, tmp_path):
    source = tmp_path / "in.yaml"
    source.write_text(
        CHANNELS + "    importance: l1\n    scope: global\n    round_to: 4\n", encoding="utf-8"
    )
    assert demo_window.load_recipe_file(source)
    panel = demo_window.settings
    assert panel.method_box.currentData() == "remove_channels"
    assert panel.importance_box.currentData() == "l1"
    assert panel.channel_scope_box.currentData() == "global"
    assert panel.round_spin.value() == 4
    out = tmp_path / "out.yaml"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), ""))
    )
    demo_window.recipes.save_dialog()
    assert load_recipe(out) == load_recipe(source)


# ============================================================ 2. the tree
def test_coupled_layers_are_marked_before_a_run_and_follow_the_settings(
    qtbot, channels_window, monkeypatch
):
    window = channels_window
    import core.tasks

    threads: list[threading.Thread] = []
    real = core.tasks.plan_channels

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(core.tasks, "plan_channels", recording)
    window.removal.invalidate()
    wait_for_plan(qtbot, window)
    assert threads and threading.main_thread() not in threads  # never on the GUI thread
    assert amount_cell(window, "bn1") == f"{FOLLOWS} conv1"
    assert amount_cell(window, "fc2") == f"{FOLLOWS} fc1"
    assert amount_cell(window, "conv2") == "50%"  # checked: its own amount
    tip = window.tree.model.index_of("conv2", Col.AMOUNT).data(3)
    assert "Shrinks with conv1: its input channels" in tip
    assert "bn1" in window.settings.removal_preview.text()
    # unchecking conv1: its BatchNorm and conv2's inputs no longer follow anything
    window.session.selection.set_checked("conv1", False)
    qtbot.waitUntil(lambda: amount_cell(window, "bn1") == "", timeout=TIMEOUT)
    assert window.tree.model.follows("conv2") is None
    assert amount_cell(window, "fc2") == f"{FOLLOWS} fc1"
    # another method: nothing is removed, nothing follows
    box = window.settings.method_box
    box.setCurrentIndex(box.findData("l1_unstructured"))
    qtbot.waitUntil(lambda: amount_cell(window, "fc2") == "", timeout=TIMEOUT)
    assert not window.settings.removal_preview.isVisibleTo(window.settings)


def test_after_a_run_weight_and_params_read_before_to_after(qtbot, channels_window):
    window = channels_window
    report = run_and_wait(qtbot, window).report
    tree, model = window.tree, window.tree.model
    assert Col.SHAPE in tree.visible_columns()  # shown for the run; Params stays as chosen
    tree.set_column_visible(Col.PARAMS, True)
    rows = {row.name: row for row in report.layers}
    for name in ("conv1", "bn1", "conv2", "fc1", "fc2"):
        row = rows[name]
        before = "\u00d7".join(map(str, row.shape_before))
        after = "\u00d7".join(map(str, row.shape_after))
        assert before != after
        assert model.index_of(name, Col.SHAPE).data() == f"{before} \u2192 {after}"
        params = f"{row.parameters:,} \u2192 {row.parameters_after:,}"
        assert model.index_of(name, Col.PARAMS).data() == params
    assert model.index_of("conv1", Col.SHAPE).data().startswith("32\u00d71\u00d73\u00d73 \u2192")
    window.tree.select_layer("conv2")
    assert "\u2192" in window.tree.details.texts()["Weight"]


# ============================================================ 3. weights kept
def test_the_chart_shows_weights_kept_for_removed_and_zeroed_layers(qtbot, channels_window):
    window = channels_window
    wait_for_plan(qtbot, window)
    planned = {row.name: row.planned for row in window.results.sparsity_chart.rows()}
    report = run_and_wait(qtbot, window).report
    rows = {row.name: row for row in report.layers}
    names, before, after = window.results.sparsity_chart.values()
    assert names == ["conv1", "conv2", "fc1", "fc2"]
    for name, kept_before, kept_after in zip(names, before, after):
        row = rows[name]
        assert row.sparsity_after == 0.0  # removing channels leaves no zeros behind
        shrink = math.prod(row.shape_after) / math.prod(row.shape_before)
        assert kept_after == pytest.approx(shrink) and kept_after < 1.0
        assert kept_before == pytest.approx(1.0 - row.sparsity_before)
        assert planned[name] == pytest.approx(shrink)  # the plan's estimate, before the run
    assert "weights kept" in window.results.sparsity_chart.tooltip_for(names.index("conv2"))
    # zeroing half the weights keeps half of them: the same chart for both kinds
    zeroed = parse_recipe("version: 1\nprune: [{types: [Conv2d, Linear], amount: 0.5}]", "z")
    assert window.apply_recipe(zeroed)
    report = run_and_wait(qtbot, window).report
    rows = {row.name: row for row in report.layers}
    names, _, after = window.results.sparsity_chart.values()
    for name, kept in zip(names, after):
        assert kept == pytest.approx(1.0 - rows[name].sparsity_after)
        assert kept == pytest.approx(0.5, abs=0.01)


# ============================================================ 4. refusals
def test_an_amount_that_removes_every_channel_is_refused_and_the_window_still_works(
    qtbot, channels_window, message_boxes
):
    window = channels_window
    window.session.selection.set_override("conv1", 0.999)  # 32 channels: all would go
    qtbot.waitUntil(lambda: "conv1" in window.settings.removal_preview.text(), timeout=TIMEOUT)
    assert "would remove all 32 output channels of conv1" in window.settings.removal_preview.text()
    with qtbot.waitSignal(window.runFailed, timeout=TIMEOUT):
        window.run_compression()
    text = message_boxes[-1][1]
    assert "would remove all 32 output channels of conv1" in text and "\n" not in text
    assert window.session.result is None and window.action("run").isEnabled()
    window.session.selection.set_override("conv1", None)
    assert run_and_wait(qtbot, window).report.layers


def test_an_untraceable_model_is_refused_in_one_line(qtbot, window, message_boxes, tmp_path):
    from toy_models import detached

    path = tmp_path / "detached.pt"
    torch.save(detached().state_dict(), path)
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        window.open_model(path, arch=f"{ROOT / 'tests' / 'toy_models.py'}:detached")
    window.settings.set_input_shape("2x4")
    assert window.apply_recipe(
        parse_recipe("version: 1\nprune: [{layers: [fc], method: remove_channels}]", "d.yaml")
    )
    with qtbot.waitSignal(window.runFailed, timeout=TIMEOUT):
        window.run_compression()
    text = message_boxes[-1][1]
    assert "cannot be traced: no output depends on its weights" in text and "\n" not in text
    assert not window.jobs.busy and window.action("run").isEnabled()
    assert window.apply_recipe(parse_recipe("version: 1\nprune: [{layers: [fc]}]", "z.yaml"))
    assert run_and_wait(qtbot, window).report.layers  # zeroing weights still works


@pytest.mark.parametrize("kind", ["torchscript", "exported"])
def test_remove_channels_on_a_compiled_model_is_refused(
    kind, qtbot, window, message_boxes, tmp_path
):
    from core.demo import build_model

    model, x = build_model(), torch.randn(2, 1, 8, 8)
    path = tmp_path / ("m.ts" if kind == "torchscript" else "m.pt2")
    with compat.quiet():  # torch.jit is deprecated upstream; the file kind is still supported
        if kind == "torchscript":
            torch.jit.save(torch.jit.trace(model, x), path)
        else:
            torch.export.save(torch.export.export(model, (x,)), path)
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        window.open_model(path)
    window.settings.set_input_shape("1x1x8x8")
    box = window.settings.method_box
    box.setCurrentIndex(box.findData("remove_channels"))
    window.run_compression()
    text = message_boxes[-1][1]
    assert "can be inspected but not pruned or quantized" in text and "\n" not in text
    assert not window.jobs.busy and window.action("open").isEnabled()


# ============================================================ 5. the save dialog
def test_the_save_dialog_lists_every_format_greys_what_cannot_hold_it_and_saves(
    qtbot, demo_window, format_dialogs, monkeypatch, tmp_path
):
    window = demo_window  # the quick recipe: torchao int8, which pickles cannot hold
    run_and_wait(qtbot, window)
    target = tmp_path / "small"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), a[4]))
    )
    with qtbot.waitSignal(window.saved, timeout=TIMEOUT) as blocker:
        window.saves.save_dialog()
    ((rows, started),) = format_dialogs
    options = {o.name: o for o in window.session.save_formats}
    assert [name for name, *_ in rows] == list(options)
    shown = {name: (enabled, size, note) for name, enabled, size, note in rows}
    for name in ("pickle", "torchscript", "onnx"):
        enabled, size, note = shown[name]
        assert not enabled and size == "" and note.startswith("Cannot hold this result: ")
        assert options[name].reason in note
    assert "cannot be pickled" in shown["pickle"][2]
    assert started == "state_dict" and shown["state_dict"][0]
    assert options["state_dict"].tooltip in shown["state_dict"][2]  # its one-line explanation
    outcome = blocker.args[0]
    assert outcome.format == "state_dict" and outcome.path == tmp_path / "small.pt"
    assert outcome.file_bytes == options["state_dict"].size  # the predicted size, exactly
    assert shown["state_dict"][1].startswith(f"{outcome.file_bytes / 1024:,.2f} KiB")


@pytest.mark.parametrize("typed", ["model.ts", "model.onnx"])
def test_a_typed_extension_that_cannot_hold_the_result_is_refused_before_work(
    typed, qtbot, demo_window, format_dialogs, message_boxes, monkeypatch, tmp_path
):
    window = demo_window
    run_and_wait(qtbot, window)
    started: list[str] = []
    window.jobs.started.connect(started.append)
    target = tmp_path / typed
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), a[4]))
    )
    window.saves.save_dialog()
    text = message_boxes[-1][1]
    assert text.startswith(f"{typed}: ") and "\n" not in text
    assert "torchao" in text  # the reason: these formats cannot hold torchao's int8
    assert started == [] and not target.exists() and window.session.save_outcome is None
    format_dialogs.choose = "pickle"
    format_dialogs.cancel = False
    window.saves.save_dialog()  # a greyed format cannot be chosen in the dialog either
    assert format_dialogs.picked == [False]


# ============================================================ 6. the Metrics tab
def test_the_metrics_tab_names_the_runtime_of_each_latency(
    qtbot, channels_window, monkeypatch, tmp_path
):
    window = channels_window
    report = run_and_wait(qtbot, window).report
    runtime = report.after.latency_runtime
    labels = [row[0] for row in window.results.metrics_table.rows()]
    assert runtime.startswith("torch") and "Latency (median, torch)" in labels
    assert runtime in window.results.runtimes.text()
    target = tmp_path / "small.onnx"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), a[4]))
    )
    with qtbot.waitSignal(window.saved, timeout=TIMEOUT):
        window.saves.save_dialog()
    ort = window.session.result.report.after.onnxruntime
    assert ort is not None and ort["onnxruntime_runtime"].startswith("onnxruntime")
    rows = {row[0]: row for row in window.results.metrics_table.rows()}
    ort_label = "Latency (onnxruntime)"
    assert ort_label in rows
    assert ort["onnxruntime_runtime"] in window.results.runtimes.text()
    assert rows[ort_label][2] == f"{ort['onnxruntime_ms']:.3f} ms"
    assert rows[ort_label][1] == f"{ort['torch_ms']:.3f} ms"
    labels = list(rows)
    assert labels.index(ort_label) == labels.index("Latency (median, torch)") + 1

"""The Sensitivity tab (curves streamed from the sweep, cache, cancel, the target slider) and
the fine-tune loss chart, driven through the real window on the demo."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QMessageBox

from core.errors import RecipeError
from core.pruning import plan_pruning
from core.sensitivity import allocate, predicted
from gui.layer_tree_model import Col
from gui.sensitivity_tab import parse_amounts

TIMEOUT = 120_000
AMOUNTS = "30, 60, 90"  # three amounts and 100 samples keep a demo sweep well under a second


@pytest.fixture(autouse=True)
def sweep_cache(tmp_path, monkeypatch):
    """Every test gets its own, empty sensitivity cache."""
    folder = tmp_path / "sensitivity-cache"
    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(folder))
    return folder


def quick_settings(window) -> None:
    window.results.sensitivity_panel.amounts_edit.setText(AMOUNTS)
    window.results.sensitivity_panel.subset_spin.setValue(100)


def sweep(qtbot, window):
    with qtbot.waitSignal(window.sweepFinished, timeout=TIMEOUT) as blocker:
        window.run_sensitivity()
    return blocker.args[0]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_sweep_streams_one_curve_per_layer_equal_to_the_result(qtbot, demo_window):
    window = demo_window
    quick_settings(window)
    streamed: list[str] = []
    window.jobs.progress.connect(
        lambda event, layers: streamed.extend(row["name"] for row in layers)
    )
    result = sweep(qtbot, window)
    assert not result.cached
    data = result.data
    assert streamed == ["conv1", "conv2", "fc1", "fc2"]  # one partial result per layer
    chart = window.results.sensitivity_chart
    assert window.results.tabs.currentWidget() is window.results.sensitivity_panel
    drawn = chart.values()
    assert list(drawn) == [row["name"] for row in data["layers"]]
    for row in data["layers"]:
        xs, ys = drawn[row["name"]]
        assert xs == [p["amount"] for p in row["points"]] == [0.3, 0.6, 0.9]
        assert ys == [p["metric"] for p in row["points"]]
    assert chart.baseline() == pytest.approx(data["baseline"])
    assert data["metric"] == "accuracy" and data["data"]["samples"] == 100
    assert not chart.cached_badge.isVisibleTo(window)
    # the plot items are made once per layer and updated in place by a later sweep
    items = dict(chart.plot_items())
    window.results.sensitivity_panel.amounts_edit.setText("20, 50, 90")
    sweep(qtbot, window)
    assert chart.plot_items() == items
    assert chart.values()["fc1"][0] == [0.2, 0.5, 0.9]
    assert window.action("run").isEnabled() and window.action("sensitivity").isEnabled()


def test_a_second_sweep_is_a_cache_hit_shown_at_once(qtbot, demo_window, sweep_cache):
    window = demo_window
    quick_settings(window)
    first = sweep(qtbot, window)
    assert first.cache_path is not None and first.cache_path.parent == sweep_cache
    second = sweep(qtbot, window)
    assert second.cached and second.data == first.data
    chart = window.results.sensitivity_chart
    assert chart.cached_badge.isVisibleTo(window)
    assert chart.values()["conv2"][1] == [p["metric"] for p in first.data["layers"][1]["points"]]
    assert "from the cache" in window.step_label.text()


def test_hover_and_click_read_a_point_and_select_its_layer(qtbot, demo_window):
    window = demo_window
    quick_settings(window)
    data = sweep(qtbot, window).data
    window.results.tabs.setCurrentWidget(window.results.sensitivity_panel)
    qtbot.wait(50)
    chart = window.results.sensitivity_chart
    view = chart.plot_widget.getPlotItem().getViewBox()
    row = data["layers"][2]  # fc1
    point = row["points"][1]
    scene = view.mapViewToScene(QPointF(point["amount"], point["metric"]))
    name, index, distance = chart.nearest(scene, 12)
    # several curves can pass through the same point; the one found holds it exactly
    assert chart.values()[name][1][index] == pytest.approx(point["metric"])
    assert distance < 1.0
    tip = chart.tooltip_for("fc1", 1)
    assert "fc1 (Linear" in tip and "pruned 60% alone" in tip and "accuracy" in tip
    chart.layerClicked.emit("fc2")  # what a click on the fc2 curve emits
    assert window.tree.current_layer() == "fc2"
    assert chart.highlighted() == "fc2"
    window.tree.select_layer("conv1")  # and the tree's selection marks the curve
    assert chart.highlighted() == "conv1"
    far = view.mapViewToScene(QPointF(0.02, data["baseline"] - 10))
    assert chart.nearest(far, 12) is None


def test_cancel_mid_sweep_keeps_the_window_usable_and_the_model_unchanged(qtbot, demo_window):
    window = demo_window
    original = snapshot(window.session.loaded.model)
    window.results.sensitivity_panel.amounts_edit.setText("5, 10, 20, 30, 40, 50, 60, 70, 80, 90")
    seen: list[str] = []

    def cancel_after_first_layer(event, layers):
        if layers and not seen:
            seen.extend(row["name"] for row in layers)
            window.cancel_job()

    window.jobs.progress.connect(cancel_after_first_layer)
    with qtbot.waitSignal(window.sweepCancelled, timeout=TIMEOUT):
        window.run_sensitivity()
    window.jobs.progress.disconnect(cancel_after_first_layer)
    assert seen == ["conv1"]
    # issue 13: the finished layers' curves are kept (in the chart and the session)
    names = window.results.sensitivity_chart.names()
    assert names[0] == "conv1" and window.session.sweep["partial"] is True
    assert [row["name"] for row in window.session.sweep["layers"]] == names
    assert not window.jobs.busy and window.action("sensitivity").isEnabled()
    assert (
        window.action("run").isEnabled() and window.results.sensitivity_panel.run_button.isEnabled()
    )
    assert "cancelled" in window.step_label.text().lower()
    for key, tensor in original.items():
        assert torch.equal(window.session.loaded.model.state_dict()[key], tensor), key
    quick_settings(window)
    assert sweep(qtbot, window).data["layers"]


def test_the_target_slider_puts_allocated_amounts_in_the_tree(qtbot, demo_window):
    window = demo_window
    quick_settings(window)
    data = sweep(qtbot, window).data
    with qtbot.waitSignal(window.amountsAllocated) as blocker:
        window.results.sensitivity_panel.set_target(80)
    expected = allocate(data, 0.8)
    assert blocker.args[0] == expected
    model, selection = window.tree.model, window.session.selection
    for name, amount in expected.items():
        # issue 13: a checked layer the allocation gives 0 stays checked, at 0%
        assert selection.is_checked(name)
        assert selection.effective_amount(name) == pytest.approx(amount)
        assert model.index_of(name, Col.AMOUNT).data() == f"{100 * amount:.4g}%"
    # the recipe the window saves prunes exactly those amounts, one rule per amount
    recipe = window.current_recipe()
    plan = plan_pruning(window.session.loaded.model, recipe.prune, "settings")
    assert {n: item.rule.amount for n, item in plan.items()} == pytest.approx(expected)
    guess = predicted(data, expected)
    assert guess["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert "80.0%" in window.results.sensitivity_panel.prediction.text()
    assert window.results.sensitivity_chart.markers() == pytest.approx(
        {n: a for n, a in expected.items() if a > 0}
    )
    # still editable by hand: the prediction follows the tree
    selection.set_override("fc1", 0.5)
    qtbot.waitUntil(lambda: window.results.sensitivity_chart.markers()["fc1"] == pytest.approx(0.5))
    hand = predicted(data, {**expected, "fc1": 0.5})
    assert f"{100 * hand['sparsity']:.1f}%" in window.results.sensitivity_panel.prediction.text()
    assert window.current_recipe() != recipe


def test_max_drop_limits_the_allocation(qtbot, demo_window):
    window = demo_window
    quick_settings(window)
    data = sweep(qtbot, window).data
    panel = window.results.sensitivity_panel
    panel.drop_spin.setValue(0.5)  # half an accuracy point
    with qtbot.waitSignal(window.amountsAllocated) as blocker:
        panel.set_target(90)
    assert blocker.args[0] == allocate(data, 0.9, 0.005)


def test_a_sweep_without_data_or_input_shape_says_what_to_do(qtbot, demo_window, message_boxes):
    window = demo_window
    window.session.set_eval_data(None, None)
    window.settings.set_input_shape("")
    window.run_sensitivity()
    assert "evaluation data" in message_boxes.texts()[-1]
    assert not window.jobs.busy
    window.session.set_eval_data(None, None)
    window.results.sensitivity_panel.amounts_edit.setText("10, 150")
    window.settings.set_input_shape("1x1x8x8")
    window.run_sensitivity()
    assert "150%" in message_boxes.texts()[-1]
    assert message_boxes[-1][0] == QMessageBox.Icon.Warning


def test_a_sweep_on_a_random_input_measures_fidelity(qtbot, demo_window):
    window = demo_window
    window.session.set_eval_data(None, None)
    window.settings.set_input_shape("1x1x8x8")
    window.results.sensitivity_panel.amounts_edit.setText("50, 90")
    data = sweep(qtbot, window).data
    assert data["metric"] == "cosine_similarity"
    assert window.results.sensitivity_chart.percent_axis() is False


def test_parse_amounts():
    assert parse_amounts("10, 30 50%") == [0.1, 0.3, 0.5]
    assert parse_amounts("0.5 0.1") == [0.1, 0.5]
    for bad in ("", "abc", "0, 50", "100"):
        with pytest.raises(RecipeError):
            parse_amounts(bad)


def test_finetune_streams_one_loss_point_per_epoch(qtbot, demo_window):
    window = demo_window
    settings = window.settings
    settings.finetune_box.setChecked(True)
    settings.epochs_spin.setValue(2)
    settings.quant_box.setChecked(False)
    epochs_seen: list[int] = []
    window.jobs.losses.connect(lambda losses: epochs_seen.append(len(losses)))
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT) as blocker:
        window.run_compression()
    report = blocker.args[0].report.to_dict()
    assert sum(epochs_seen) == 2
    assert len(report["finetune"]["loss"]) == 2
    assert window.results.loss_chart.values() == report["finetune"]["loss"]
    assert (
        window.results.tabs.tabText(window.results.tabs.indexOf(window.results.loss_chart))
        == "Fine-tune"
    )


def test_cancel_during_finetune_keeps_the_losses_so_far(qtbot, demo_window):
    window = demo_window
    window.settings.finetune_box.setChecked(True)
    window.settings.epochs_spin.setValue(500)
    window.jobs.losses.connect(lambda losses: window.cancel_job())
    with qtbot.waitSignal(window.runCancelled, timeout=TIMEOUT):
        window.run_compression()
    points = window.results.loss_chart.values()
    assert 1 <= len(points) < 500
    assert "cancelled after" in window.results.loss_chart.state_label.text()
    assert window.action("run").isEnabled() and window.session.result is None

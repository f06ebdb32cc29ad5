"""The layer tree: model <-> view sync in both directions, tri-state parents, filtering,
sorting, per-layer amounts, and the time to show a 10,000-module model."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QModelIndex, QPoint, Qt
from PySide6.QtTest import QTest
from torch import nn

from core.inventory import inventory
from core.loading import load_demo
from core.report import LayerRow
from gui.layer_tree import LayerTreePanel
from gui.layer_tree_model import NAME_ROLE, Col, LayerTreeModel

CHECK = Qt.ItemDataRole.CheckStateRole


@pytest.fixture
def panel(qtbot):
    loaded, _, _ = load_demo()
    widget = LayerTreePanel()
    widget.resize(700, 500)
    widget.show_layers(inventory(loaded.model), "demo")
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.close()


def view_index(panel: LayerTreePanel, name: str, column: int = Col.NAME) -> QModelIndex:
    return panel.proxy.mapFromSource(panel.model.index_of(name, column))


def click_check_box(qtbot, panel: LayerTreePanel, name: str) -> None:
    """A real mouse click on the row's check box in the view."""
    index = view_index(panel, name)
    panel.view.scrollTo(index)
    rect = panel.view.visualRect(index)
    target = QPoint(rect.left() + rect.height() // 2 + 2, rect.center().y())
    QTest.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=target)


def test_model_passes_qt_model_tester(qtmodeltester):
    loaded, _, _ = load_demo()
    model = LayerTreeModel()
    model.set_layers(inventory(loaded.model), "demo")
    model.selection.set_checked("fc1", True)
    qtmodeltester.check(model, force_py=True)


def test_data_change_reaches_the_view(qtbot, panel):
    model, selection = panel.model, panel.selection
    assert selection.checked_names() == []
    with qtbot.waitSignal(model.dataChanged):
        selection.set_checked("fc1", True)
    assert view_index(panel, "fc1").data(CHECK) == Qt.CheckState.Checked
    assert view_index(panel, "").data(CHECK) == Qt.CheckState.PartiallyChecked
    selection.set_checked_names(["conv1", "conv2", "fc1", "fc2"])
    assert view_index(panel, "").data(CHECK) == Qt.CheckState.Checked
    selection.set_override("fc1", 0.8)
    assert view_index(panel, "fc1", Col.AMOUNT).data() == "80%"
    assert view_index(panel, "fc2", Col.AMOUNT).data() == "50%"
    model.set_results(
        [LayerRow(name="fc1", type="Linear", sparsity_after=0.25, quantization="fp16")]
    )
    assert view_index(panel, "fc1", Col.AFTER).data() == "25.0%"
    assert view_index(panel, "fc1", Col.QUANT).data() == "fp16"


def test_a_layer_the_run_left_float_reads_float_not_the_rule(panel):
    # scheme auto over both Linear layers; the run's plan quantized fc1 and kept fc2 float
    model = panel.model
    model.set_planned_quantization(["fc1", "fc2"], "auto")
    assert view_index(panel, "fc2", Col.QUANT).data() == "auto"
    model.set_results(
        [
            LayerRow(name="fc1", type="Linear", quantization="int8_dynamic (legacy, per_channel)"),
            LayerRow(name="fc2", type="Linear", quantization=None),
            LayerRow(name="conv1", type="Conv2d", quantization=None),  # no rule selected it
        ]
    )
    assert view_index(panel, "fc1", Col.QUANT).data() == "int8 legacy"
    assert view_index(panel, "fc2", Col.QUANT).data() == "float"
    assert "left it float" in view_index(panel, "fc2", Col.QUANT).data(Qt.ItemDataRole.ToolTipRole)
    assert view_index(panel, "conv1", Col.QUANT).data() == ""


def test_view_click_reaches_the_data(qtbot, panel):
    model, selection = panel.model, panel.selection
    with qtbot.waitSignal(model.checksChanged):
        click_check_box(qtbot, panel, "conv2")
    assert selection.checked_names() == ["conv2"]
    click_check_box(qtbot, panel, "conv2")
    assert selection.checked_names() == []
    # the root's box checks every prunable layer below it, and unchecks them again
    click_check_box(qtbot, panel, "")
    assert selection.checked_names() == ["conv1", "conv2", "fc1", "fc2"]
    click_check_box(qtbot, panel, "")
    assert selection.checked_names() == []


def test_amount_edited_in_the_view(qtbot, panel):
    selection = panel.selection
    selection.set_checked_names(["fc1", "fc2"])
    index = view_index(panel, "fc1", Col.AMOUNT)
    assert index.flags() & Qt.ItemFlag.ItemIsEditable
    assert panel.proxy.setData(index, 0.3, Qt.ItemDataRole.EditRole)
    assert selection.overrides() == {"fc1": 0.3}
    assert selection.effective_amount("fc2") == 0.5
    # Delete on the selected row goes back to the panel's amount
    panel.view.setCurrentIndex(view_index(panel, "fc1"))
    QTest.keyClick(panel.view, Qt.Key.Key_Delete)
    assert selection.overrides() == {}
    # unchecked layers and the global method have no per-layer amount
    assert not view_index(panel, "conv1", Col.AMOUNT).flags() & Qt.ItemFlag.ItemIsEditable
    selection.set_default_amount(0.5, True)
    assert not view_index(panel, "fc1", Col.AMOUNT).flags() & Qt.ItemFlag.ItemIsEditable


def test_non_prunable_rows_are_shown_but_not_checkable(panel):
    relu = view_index(panel, "relu1")
    assert relu.isValid()
    assert not relu.flags() & Qt.ItemFlag.ItemIsUserCheckable
    assert relu.data(CHECK) is None
    assert "Not prunable" in relu.data(Qt.ItemDataRole.ToolTipRole)
    panel.selection.check_where(lambda info: True)
    assert "relu1" not in panel.selection.checked_names()


def test_selection_helpers(panel):
    selection = panel.selection
    selection.check_where(lambda info: "Linear" in info.type)
    assert selection.checked_names() == ["fc1", "fc2"]
    selection.invert()
    assert selection.checked_names() == ["conv1", "conv2"]
    selection.set_checked_names([])
    assert selection.checked_names() == []


def test_filter_keeps_parents_and_matches_type(panel):
    panel.filter_edit.setText("linear")
    root = panel.proxy.index(0, 0)
    names = [
        panel.proxy.index(r, 0, root).data(NAME_ROLE) for r in range(panel.proxy.rowCount(root))
    ]
    assert names == ["fc1", "fc2"]
    panel.filter_edit.setText("fc1")
    assert panel.proxy.rowCount(root) == 1
    panel.filter_edit.setText("conv2")  # conv2 by name, conv1 and conv2 by type Conv2d
    assert panel.proxy.rowCount(root) == 2
    panel.filter_edit.clear()
    assert panel.proxy.rowCount(root) == 11


def test_sort_by_parameters_uses_numbers(panel):
    panel.view.sortByColumn(Col.PARAMS, Qt.SortOrder.DescendingOrder)
    root = panel.proxy.index(0, 0)
    first = [panel.proxy.index(r, 0, root).data(NAME_ROLE) for r in range(3)]
    assert first == ["fc1", "conv2", "fc2"]


def test_selecting_a_layer_selects_the_row(qtbot, panel):
    with qtbot.waitSignal(panel.layerSelected) as blocker:
        panel.select_layer("fc2")
    assert blocker.args == ["fc2"]
    assert panel.current_layer() == "fc2"


def test_ten_thousand_modules_show_in_under_a_second(qtbot):
    blocks = [nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)) for _ in range(2500)]
    model = nn.Sequential(*[nn.Sequential(*blocks[i : i + 50]) for i in range(0, 2500, 50)])
    layers = inventory(model)
    assert len(layers) >= 10_000
    widget = LayerTreePanel()
    widget.resize(700, 600)
    widget.show()
    qtbot.waitExposed(widget)
    t0 = time.perf_counter()
    widget.show_layers(layers, "big")
    widget.view.viewport().repaint()
    elapsed = time.perf_counter() - t0
    first_block = widget.proxy.index(0, 0, widget.proxy.index(0, 0))
    widget.view.expand(first_block)
    t0 = time.perf_counter()
    widget.selection.check_where(lambda info: True)  # one layout change, not 2,500 dataChanged
    check_all = time.perf_counter() - t0
    assert len(widget.selection.checked_names()) == 5000
    first_block = widget.proxy.index(0, 0, widget.proxy.index(0, 0))  # the old one is stale
    assert widget.view.isExpanded(first_block)  # the view keeps what was open
    assert first_block.data(CHECK) == Qt.CheckState.Checked
    widget.close()
    assert elapsed < 1.0, f"tree took {elapsed:.2f} s"
    assert check_all < 0.5, f"checking every layer took {check_all:.2f} s"

"""Issue 13, the window at real-model scale: one test per point seen, driven through the real
window (offscreen, 1400x900) on a 52-Conv2d MobileNetV2 (``benchmarks.models:mobilenet``,
built in the repository) and on the demo.

Tree: the columns that matter in view, the rest on demand (remembered); full names and a
details pane; a filter on whole name segments and globs; edits for every selected row and a
context menu; a neutral start. Charts: prunable rows only, a scroll bar, legible labels, a
whole-chart export; a heatmap and a search box; no colour for changes inside the noise.
Warnings and state: a fidelity card and warning; results marked out of date; the slider and
the prediction agree; a cancelled sweep keeps its curves; a sweep with nothing checked covers
every prunable layer; closing during a job asks; the log names every step; the cast schemes
hide the backend; save dialogs start where the user last saved; the empty sensitivity tab
wraps; the architecture dialog speaks plainly.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDoubleSpinBox, QFileDialog, QInputDialog, QLabel
from toy_models import mlp

from core import cli
from core.recipe import parse_recipe
from core.report import NOISE, Numbers, Report
from gui import dialogs, prefs
from gui.charts import NEUTRAL_COLOR, ROW_PX
from gui.choices import SAVE_FILTERS
from gui.layer_tree_model import HIDDEN_BY_DEFAULT, NAME_ROLE, Col
from gui.main_window import MainWindow
from gui.report_rows import LATENCY_BAND

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.models import mobilenet  # noqa: E402

TIMEOUT = 120_000
MOBILENET = "benchmarks.models:mobilenet"
FOLDER_OF_THE_FIRST_CONV = "features.3.conv.1.0"  # depthwise 3x3 conv of block 3


@pytest.fixture(autouse=True)
def sweep_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(tmp_path / "sensitivity-cache"))


@pytest.fixture
def mobilenet_file(tmp_path) -> Path:
    path = tmp_path / "mobilenet.pt"
    torch.save(mobilenet().state_dict(), path)
    return path


@pytest.fixture
def big_window(qtbot, window, mobilenet_file):
    """The default-size window with the 52-Conv2d MobileNetV2 open (a random input)."""
    assert window.size().width() == 1400 and window.size().height() == 900
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        window.open_model(mobilenet_file, arch=MOBILENET)
    window.settings.set_input_shape("1x3x64x64")
    qtbot.wait(50)
    return window


def run_and_wait(qtbot, window):
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT) as blocker:
        window.run_compression()
    return blocker.args[0]


def sweep(qtbot, window):
    with qtbot.waitSignal(window.sweepFinished, timeout=TIMEOUT) as blocker:
        window.run_sensitivity()
    return blocker.args[0]


def prunable(window) -> list[str]:
    return [info.name for info in window.session.layers if info.prunable]


def view_index(window, name: str, column: int = Col.NAME):
    tree = window.tree
    return tree.proxy.mapFromSource(tree.model.index_of(name, column))


# ===================================================================== the tree
def test_the_columns_that_matter_are_in_view_and_the_rest_are_optional(
    qtbot, big_window, mobilenet_file
):
    window = big_window
    tree = window.tree
    for col in (Col.NAME, Col.AMOUNT, Col.AFTER, Col.QUANT):
        assert tree.column_in_view(col), col.name
    assert not tree.view.horizontalScrollBar().isVisible()
    for col in HIDDEN_BY_DEFAULT:
        assert col not in tree.visible_columns()
    # the slider's amounts land in a column the user sees
    window.action("check_all").trigger()
    assert view_index(window, FOLDER_OF_THE_FIRST_CONV, Col.AMOUNT).data() == "50%"
    # the header's context menu shows and hides columns, remembered for the next window
    menu = tree.column_menu()
    entries = {a.text(): a for a in menu.actions()}
    assert set(entries) == {"Type", "Amount", "Sparsity after", "Quant.", "Params", "Weight",
                            "Sparsity before"}  # fmt: skip
    entries["Params"].trigger()
    entries["Type"].trigger()
    assert Col.PARAMS in tree.visible_columns() and Col.TYPE not in tree.visible_columns()
    assert tree.column_in_view(Col.AMOUNT)
    later = MainWindow()
    try:
        assert Col.PARAMS in later.tree.visible_columns()
        assert Col.TYPE not in later.tree.visible_columns()
    finally:
        later.close_without_asking()
        later.deleteLater()


def test_full_names_on_hover_and_the_details_pane(qtbot, big_window):
    window = big_window
    name = FOLDER_OF_THE_FIRST_CONV
    assert view_index(window, name).data() == "0"  # the row itself reads its last segment
    assert name in view_index(window, name).data(Qt.ItemDataRole.ToolTipRole)
    window.tree.select_layer(name)
    details = window.tree.details.texts()
    assert details["Name"] == name
    assert details["Type"] == "Conv2d"
    assert details["Weight"] == "144\u00d71\u00d73\u00d73 (float32)"
    assert details["Parameters"] == "1,296"
    assert details["Sparsity"] == "0.0% zeros"
    assert details["Pruning"] == "not checked"
    assert details["Quantization"].startswith("float")
    window.session.selection.set_checked(name, True)
    window.session.selection.set_override(name, 0.3)
    details = window.tree.details
    qtbot.waitUntil(lambda: details.texts()["Pruning"] == "checked: 30% (its own amount)")
    # after a sweep of this layer, its sensitivity curve is drawn in the pane
    window.session.selection.set_checked_names([name])
    window.results.sensitivity_panel.amounts_edit.setText("30, 90")
    data = sweep(qtbot, window).data
    points = data["layers"][0]["points"]
    qtbot.waitUntil(lambda: bool(details.curve()[0]))
    xs, ys = details.curve()
    assert xs == [p["amount"] for p in points]
    assert ys == pytest.approx([p["metric"] for p in points])
    run_and_wait(qtbot, window)
    want = "0.0% zeros \u2192 30.0% after the last run"
    qtbot.waitUntil(lambda: details.texts()["Sparsity"] == want)


def test_the_filter_matches_whole_name_segments_and_globs(big_window):
    tree = big_window.tree
    tree.filter_edit.setText("features.1")
    shown = tree.shown_names()
    assert "features.1" in shown and "features.1.conv.0.0" in shown
    assert not any(n.startswith(("features.10", "features.11")) for n in shown)
    tree.filter_edit.setText("features.1*")  # a glob, as in recipes
    shown = tree.shown_names()
    assert "features.10" in shown and "features.18" in shown and "features.2" not in shown
    tree.filter_edit.setText("conv.1.0")  # whole segments anywhere in the name
    shown = tree.shown_names()
    assert FOLDER_OF_THE_FIRST_CONV in shown and "features.1.conv.1" not in shown
    tree.filter_edit.setText("linear")  # the beginning of a type
    assert [n for n in tree.shown_names() if tree.model.info(n).prunable] == ["classifier"]


def test_an_amount_edit_applies_to_every_selected_row(qtbot, big_window):
    window = big_window
    window.action("check_all").trigger()
    rows = ["features.2.conv.0.0", "features.2.conv.1.0", "features.2.conv.2"]
    window.tree.select_rows(rows)
    index = view_index(window, rows[1], Col.AMOUNT)
    window.tree.view.edit(index)
    editor = window.tree.view.indexWidget(index)
    assert isinstance(editor, QDoubleSpinBox)
    editor.setValue(70.0)
    QTest.keyClick(editor, Qt.Key.Key_Return)  # the view commits it right after
    qtbot.waitUntil(lambda: window.session.selection.overrides() == dict.fromkeys(rows, 0.7))
    assert view_index(window, rows[0], Col.AMOUNT).data() == "70%"


def test_the_context_menu_acts_on_the_selected_rows(qtbot, big_window, monkeypatch):
    window = big_window
    selection = window.session.selection
    rows = ["features.4.conv.0.0", "features.4.conv.1.0", "classifier"]
    window.tree.select_rows(rows)
    actions = {a.text(): a for a in window.tree.selection_menu().actions()}
    actions["Check (3 rows)"].trigger()
    assert selection.checked_names() == rows
    monkeypatch.setattr(QInputDialog, "getDouble", staticmethod(lambda *a, **k: (25.0, True)))
    {a.text(): a for a in window.tree.selection_menu().actions()}["Set Amount\u2026"].trigger()
    assert selection.overrides() == dict.fromkeys(rows, 0.25)
    menu = {a.text(): a for a in window.tree.selection_menu().actions()}
    schemes = {a.text(): a for a in menu["Set Scheme"].menu().actions()}
    schemes["int8 legacy"].trigger()  # only the Linear layer can take int8
    assert {n: s.scheme for n, s in selection.schemes().items()} == {"classifier": "int8_dynamic"}
    schemes["bf16"].trigger()  # every one can take a cast
    assert {s.scheme for s in selection.schemes().values()} == {"bf16"}
    assert len(selection.schemes()) == 3
    {a.text(): a for a in window.tree.selection_menu().actions()}[
        "Reset Amount and Scheme"
    ].trigger()
    assert selection.overrides() == {} and selection.schemes() == {}
    {a.text(): a for a in window.tree.selection_menu().actions()}["Uncheck (3 rows)"].trigger()
    assert selection.checked_names() == []


def test_a_new_model_starts_neutral(qtbot, big_window, message_boxes):
    window = big_window
    assert window.session.selection.checked_names() == []
    assert not window.settings.quant_box.isChecked()
    assert window.current_recipe().is_empty()
    window.run_compression()
    assert "nothing to do" in message_boxes.texts()[-1]
    assert not window.jobs.busy and window.session.result is None


# ===================================================================== the charts
def test_the_sparsity_chart_shows_prunable_layers_with_a_scroll_bar(qtbot, big_window, tmp_path):
    window = big_window
    window.action("check_all").trigger()
    run_and_wait(qtbot, window)
    chart = window.results.sparsity_chart
    names, _, after = chart.values()
    assert names == prunable(window) and len(names) == 53  # no BatchNorm rows
    assert after == pytest.approx([0.5] * 53, abs=0.01)
    assert chart.scroll_bar.isVisible() and chart.scroll_bar.maximum() > 0
    first, last = chart.scroller.first_last()
    assert (last - first + 1) * ROW_PX <= chart.plot_widget.height()  # rows stay legible
    labels = chart.labels()
    assert set(labels) == set(names[first : last + 1]) and labels[names[first]] == "50.0%"

    def named_rows() -> set[str]:  # the names on the axis (only those in view are set)
        return {text for _, text in chart._axis_left._tickLevels[0]}

    assert set(names[first : last + 1]) <= named_rows() and "classifier" not in named_rows()
    chart.scroll_bar.setValue(chart.scroll_bar.maximum())  # the last rows, labelled too
    assert chart.labels()["classifier"] == "50.0%"
    assert "classifier" in named_rows()
    # the exported image holds every row, not only those in view
    written = window.saves.export(tmp_path / "r.json", window.results.chart_images())
    image = QImage(str(written[1]))
    assert image.height() >= 53 * 18 > chart.plot_widget.height()


def test_a_sweep_has_a_heatmap_and_a_search_box(qtbot, demo_window):
    window = demo_window
    panel = window.results.sensitivity_panel
    panel.amounts_edit.setText("30, 60, 90")
    panel.subset_spin.setValue(100)
    data = sweep(qtbot, window).data
    names, amounts, drops = panel.heatmap.matrix()
    assert names == [row["name"] for row in data["layers"]] and amounts == [0.3, 0.6, 0.9]
    baseline = data["baseline"]
    for row, cells in zip(data["layers"], drops):
        assert cells == pytest.approx([max(baseline - p["metric"], 0.0) for p in row["points"]])
    panel.heatmap_button.click()
    assert panel.views.currentWidget() is panel.heatmap
    panel.search_edit.setText("fc1")
    panel.search_edit.returnPressed.emit()
    assert window.results.sensitivity_chart.highlighted() == "fc1"
    assert panel.heatmap.highlighted() == "fc1"
    assert window.tree.current_layer() == "fc1"
    # many layers open in the heatmap first (fifty curves are spaghetti)
    other = type(panel)()
    other.set_layer_names([f"layer{i}" for i in range(40)])
    assert other.views.currentWidget() is other.heatmap


def _report(latency: float, spread: float | None = None) -> Report:
    report = Report(
        before=Numbers(parameters=1000, nonzero_parameters=1000, state_dict_bytes=4000,
                       latency_ms=1.0, accuracy=0.9),
        after=Numbers(parameters=1000, nonzero_parameters=500, state_dict_bytes=4000,
                      latency_ms=latency, accuracy=0.9),
        fidelity={"cosine_similarity": 0.999, "relative_error": 0.01, "top1_agreement": 1.0},
    )  # fmt: skip
    if spread is not None:
        report.measurement["latency_spread"] = spread
    return report


def test_changes_inside_the_noise_are_neutral_and_the_band_is_stated(demo_window):
    window = demo_window
    results = window.results
    results.show_report(window.session.before, _report(1.0 + LATENCY_BAND / 2), None)
    chart = results.metrics_chart
    verdicts = dict(zip(["Size", "Params", "Non-zero", "Latency", "Accuracy", "Fidelity"],
                        chart.verdicts()))  # fmt: skip
    assert verdicts == {"Size": None, "Params": None, "Non-zero": True, "Latency": None,
                        "Accuracy": None, "Fidelity": None}  # fmt: skip
    colors = dict(zip(verdicts, chart.colors()))
    assert colors["Params"] == colors["Latency"] == NEUTRAL_COLOR.name()
    caption = chart.caption.text()
    assert f"\u00b1{100 * NOISE:g}%" in caption and f"\u00b1{100 * LATENCY_BAND:g}%" in caption
    assert results.cards.verdicts()[:3] == [None, True, None]  # size, non-zero, latency
    # a measured spread, when the report has one, is the band instead
    results.show_report(window.session.before, _report(1.0 + LATENCY_BAND / 2, 0.01), None)
    assert dict(zip(verdicts, chart.verdicts()))["Latency"] is False
    assert "measured spread" in chart.caption.text()


# ============================================================ warnings and state
def test_a_collapsed_fidelity_is_a_red_card_and_a_warning(qtbot, demo_window):
    window = demo_window
    window.session.set_eval_data(None, None)  # no labels: only fidelity tells
    window.settings.set_input_shape("1x1x8x8")
    window.settings.quant_box.setChecked(False)
    healthy = run_and_wait(qtbot, window).report
    assert healthy.fidelity["cosine_similarity"] > 0.9
    assert not window.results.warning_banner.isVisibleTo(window)
    assert window.results.cards.alarms() == [False] * 5
    window.settings.amount_spin.setValue(90.0)
    report = run_and_wait(qtbot, window).report
    cosine = report.fidelity["cosine_similarity"]
    assert cosine < 0.9
    banner = window.results.warning_banner
    assert banner.isVisibleTo(window) and "Fidelity collapsed" in banner.text()
    assert f"cosine similarity {cosine:.3f}" in banner.text()
    caption, value, _ = window.results.cards.texts()[4]
    assert (caption, value) == ("Fidelity (cosine)", f"{cosine:.4f}")
    assert window.results.cards.alarms()[4] is True


def test_results_are_marked_out_of_date_until_the_next_run(qtbot, demo_window):
    window = demo_window
    run_and_wait(qtbot, window)
    results, session = window.results, window.session
    assert not session.result_stale and not results.stale_banner.isVisibleTo(window)
    window.settings.amount_spin.setValue(70.0)
    qtbot.waitUntil(lambda: session.result_stale)
    assert results.stale_banner.isVisibleTo(window)
    assert "out of date" in results.sparsity_chart.title.text()
    after = window.tree.model.index_of("fc1", Col.AFTER)
    assert after.data(Qt.ItemDataRole.FontRole).italic()
    window.settings.amount_spin.setValue(50.0)  # the settings of the run again
    qtbot.waitUntil(lambda: not session.result_stale)
    window.settings.quant_box.setChecked(False)  # unticking quantization
    qtbot.waitUntil(lambda: session.result_stale)
    window.session.set_eval_data(None, None)  # other data is out of date too
    run_and_wait(qtbot, window)
    assert not session.result_stale and not results.stale_banner.isVisibleTo(window)


def test_after_a_sweep_the_slider_shows_the_tree_amounts(qtbot, demo_window):
    window = demo_window  # the demo recipe: four layers at 50%
    panel = window.results.sensitivity_panel
    panel.amounts_edit.setText("30, 60, 90")
    panel.subset_spin.setValue(100)
    sweep(qtbot, window)
    assert panel.target_slider.value() == 50 and panel.target_value.text() == "50%"
    assert "<b>50.0%</b> zero weights" in panel.prediction.text()
    window.session.selection.set_override("fc1", 0.9)  # a hand edit moves the slider too
    qtbot.waitUntil(lambda: panel.target_slider.value() > 80)
    # an allocation that gives a checked layer 0 keeps it checked, at 0%, and says so
    panel.set_target(30)
    checked = window.session.selection.checked_names()
    assert checked == ["conv1", "conv2", "fc1", "fc2"]
    zero = [n for n in checked if window.session.selection.effective_amount(n) == 0.0]
    assert zero and all(f"{n}" in window.results.log_text() for n in zero)
    assert "stay checked at 0%" in window.results.log_text()


def test_a_cancelled_sweep_keeps_its_finished_curves(qtbot, demo_window):
    window = demo_window
    panel = window.results.sensitivity_panel
    panel.amounts_edit.setText("5, 10, 20, 30, 40, 50, 60, 70, 80, 90")
    done: list[str] = []

    def cancel_after_two(event, layers):
        done.extend(row["name"] for row in layers)
        if len(done) >= 2:
            window.cancel_job()

    window.jobs.progress.connect(cancel_after_two)
    with qtbot.waitSignal(window.sweepCancelled, timeout=TIMEOUT):
        window.run_sensitivity()
    window.jobs.progress.disconnect(cancel_after_two)
    kept = window.results.sensitivity_chart.names()
    assert kept[:2] == ["conv1", "conv2"] and len(kept) < 4
    assert panel.heatmap.names() == kept
    assert [row["name"] for row in window.session.sweep["layers"]] == kept
    assert "kept and cached" in window.results.log_text()
    with qtbot.waitSignal(window.amountsAllocated):  # the slider works on what was kept
        panel.set_target(50)
    assert set(window.results.sensitivity_chart.markers()) <= set(kept)
    # the next sweep with the same settings measures only the layers not kept
    result = sweep(qtbot, window)
    assert [row["name"] for row in result.data["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    n = len(kept)
    assert f"{n} of 4 layers came from a cancelled sweep's cache" in window.results.log_text()
    assert f"the other {4 - n} were measured" in window.results.log_text()


def test_a_sweep_with_nothing_checked_covers_every_prunable_layer(qtbot, window, tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(mlp().state_dict(), path)
    arch = f"{ROOT / 'tests' / 'toy_models.py'}:mlp"
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        window.open_model(path, arch=arch)  # Linear layers only, no Conv2d
    window.settings.set_input_shape("4x16")
    window.results.sensitivity_panel.amounts_edit.setText("50")
    assert window.session.selection.checked_names() == []
    data = sweep(qtbot, window).data
    assert [row["name"] for row in data["layers"]] == ["fc1", "fc2", "head"]
    # the command line the same way (the default is every prunable layer)
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.random.default_rng(0).random((8, 16), dtype=np.float32))
    code = cli.main(["sensitivity", str(path), "--arch", arch, "--data", str(npz),
                     "--amounts", "0.5", "--output", str(tmp_path / "s.json")])  # fmt: skip
    assert code == 0


def _pause_first(monkeypatch, name: str):
    """The job ``core.tasks.<name>`` pauses after its first event until ``gate`` is set."""
    from core import tasks

    real = getattr(tasks, name)
    gate = threading.Event()

    def job(*args, **kwargs):
        gen = real(*args, **kwargs)
        first = True
        try:
            while True:
                yield next(gen)
                if first:
                    first = False
                    gate.wait(30)
        except StopIteration as stop:
            return stop.value

    monkeypatch.setattr(tasks, name, job)
    return gate


def test_closing_during_a_sweep_asks_first(qtbot, demo_window, clicking_boxes, monkeypatch):
    window = demo_window
    gate = _pause_first(monkeypatch, "sweep_model")
    window.run_sensitivity()
    qtbot.waitUntil(lambda: window.jobs.job_name == "sensitivity")
    clicking_boxes.reply = "no"
    window.close()
    assert window.isVisible() and window.jobs.busy  # asked, answered no: still sweeping
    assert "sensitivity sweep is running" in clicking_boxes.boxes[-1][1]
    clicking_boxes.reply = "yes"  # Stop and Quit
    gate.set()
    window.close()
    assert not window.isVisible() and not window.jobs.busy


def test_closing_during_a_save_quits_once_it_is_written(
    qtbot, demo_window, clicking_boxes, monkeypatch, tmp_path
):
    window = demo_window
    run_and_wait(qtbot, window)
    gate = _pause_first(monkeypatch, "save_result")
    target = tmp_path / "out.pt"
    window.saves.save(target, "state_dict")
    qtbot.waitUntil(lambda: window.jobs.job_name == "save")
    clicking_boxes.reply = "yes"  # Quit When Saved
    window.close()
    text = clicking_boxes.boxes[-1][1]
    assert text == "The compressed model is being saved."
    assert "has not been saved" not in text
    assert window.isVisible()  # it waits for the file
    with qtbot.waitSignal(window.saved, timeout=TIMEOUT):
        gate.set()
    qtbot.waitUntil(lambda: not window.isVisible())
    assert target.exists()


def test_save_in_the_quit_prompt_saves_then_closes(
    qtbot, demo_window, clicking_boxes, monkeypatch, tmp_path
):
    window = demo_window
    run_and_wait(qtbot, window)
    target = tmp_path / "kept.pt"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName",
        staticmethod(lambda *a, **k: (str(target), SAVE_FILTERS["state_dict"])),
    )  # fmt: skip
    clicking_boxes.reply = "yes"  # Save
    window.close()
    assert "has not been saved" in clicking_boxes.boxes[-1][1]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT)
    assert target.exists() and window.session.save_outcome.path == target


def test_the_log_names_every_step(qtbot, demo_window):
    window = demo_window
    run_and_wait(qtbot, window)
    log = window.results.log_text()
    for name, kind in (("conv1", "Conv2d"), ("conv2", "Conv2d"), ("fc1", "Linear")):
        assert f"step {name} ({kind}): pruned l1_unstructured 50% \u2192 50.0% zeros" in log
    assert "step fc1 (Linear): pruned l1_unstructured 50% \u2192 50.0% zeros; quantized " in log


def test_casts_have_no_backend_row(demo_window):
    settings = demo_window.settings
    settings.scheme_box.setCurrentIndex(settings.scheme_box.findData("bf16"))
    assert not settings.backend_box.isVisibleTo(settings)
    assert not settings.granularity_box.isVisibleTo(settings)
    settings.scheme_box.setCurrentIndex(settings.scheme_box.findData("int8_dynamic"))
    assert settings.backend_box.isVisibleTo(settings)


def test_save_dialogs_start_where_the_user_last_saved(qtbot, demo_window, monkeypatch, tmp_path):
    window = demo_window
    run_and_wait(qtbot, window)
    folder = tmp_path / "saved-here"
    folder.mkdir()
    with qtbot.waitSignal(window.saved, timeout=TIMEOUT):
        window.saves.save(folder / "model.pt", "state_dict")
    started: list[str] = []

    def fake_save(parent, caption, directory, *args, **kwargs):
        started.append(directory)
        return "", ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_save))
    window.action("export").trigger()
    window.action("save_recipe").trigger()
    assert [Path(d).parent for d in started] == [folder, folder]
    assert prefs.last_folder("report") == str(folder)


def test_the_empty_sensitivity_tab_wraps_in_a_narrow_window(qtbot, window):
    window.resize(1000, 700)
    window.results.show_sensitivity_tab()
    qtbot.wait(50)
    chart = window.results.sensitivity_chart
    label = chart.empty_label
    assert label.isVisibleTo(window) and label.wordWrap()
    assert label.width() <= chart.plot_widget.width()
    assert label.heightForWidth(label.width()) <= label.height()


def test_the_architecture_dialog_speaks_plainly(qtbot, tmp_path):
    dialog = dialogs.ArchDialog(tmp_path / "weights.pt", None, str(tmp_path))
    qtbot.addWidget(dialog)
    text = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "--arch" not in text and "callable" not in text
    assert "weights" in text


def test_a_recipe_still_checks_what_it_names_on_a_big_model(qtbot, big_window):
    recipe = parse_recipe(
        "version: 1\nprune:\n  - {layers: ['features.1*'], types: [Conv2d], amount: 0.4}\n",
        "scale.yaml",
    )
    assert big_window.apply_recipe(recipe)
    checked = big_window.session.selection.checked_names()
    assert checked and all(n.startswith("features.1") for n in checked)
    assert view_index(big_window, checked[0], Col.AMOUNT).data() == "40%"
    assert view_index(big_window, checked[0]).data(NAME_ROLE) == checked[0]

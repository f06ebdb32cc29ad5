"""Issue 11 in the window: the Quant column edited per layer (and written as per-layer quantize
rules, read back from any recipe), Recommend (the measured plan in the background, with
Cancel, filling the Quant column and the Plan tab), and the Open Demo menu with --demo NAME.
"""

from __future__ import annotations

import threading

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFileDialog

import core.plan
from core.demos import DEMOS
from core.quantization import plan_quantization
from core.recipe import load_recipe, parse_recipe
from core.schemes import KEEP_FLOAT
from gui import app
from gui.choices import layer_scheme_of
from gui.layer_selection import LayerScheme
from gui.layer_tree_model import Col
from gui.options import Options, parse_options
from gui.recipe_state import schemes_from_plan

TIMEOUT = 180_000
LEGACY = LayerScheme("int8_dynamic", "legacy")
CANDIDATES = ("float", "int8_dynamic:legacy", "bf16")


@pytest.fixture(autouse=True)
def quick_plans(tmp_path, monkeypatch):
    """A plan times each layer and model briefly here (the search is the same), and every
    test has its own sensitivity cache."""
    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(tmp_path / "sensitivity-cache"))
    monkeypatch.setattr(core.plan, "LAYER_BUDGET_S", 0.02)
    monkeypatch.setattr(core.plan, "MODEL_BUDGET_S", 0.05)
    monkeypatch.setattr(core.plan, "FIDELITY_SAMPLES", 128)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def per_layer(window, recipe) -> dict[str, str]:
    """What each layer gets from a recipe's quantize rules (the engine's own reading)."""
    plan = plan_quantization(window.session.loaded.model, list(recipe.quantize), "test")
    return {name: f"{q.scheme}/{q.backend}/{q.granularity}" for name, q in plan.layers.items()}


def choose_in_quant_column(qtbot, window, name: str, label: str) -> None:
    """Double-click a layer's Quant cell and pick ``label`` in its combo box."""
    tree = window.tree
    index = tree.proxy.mapFromSource(tree.model.index_of(name, Col.QUANT))
    tree.view.setCurrentIndex(index)
    tree.view.edit(index)
    editor = tree.view.indexWidget(index)
    assert isinstance(editor, QComboBox)
    i = editor.findText(label)
    assert i >= 0, [editor.itemText(k) for k in range(editor.count())]
    editor.setCurrentIndex(i)
    editor.activated.emit(i)
    qtbot.waitUntil(lambda: tree.view.indexWidget(index) is None)


def test_the_quant_column_is_edited_per_layer(qtbot, demo_window):
    window = demo_window
    selection = window.session.selection
    # the combo offers what each layer can take: a convolution has no int8 kernel here
    tree = window.tree
    conv_options = [c.label for c in tree.view.scheme_options("conv1")]
    assert conv_options == ["float", "bf16", "fp16"]
    assert "int8 legacy" in [c.label for c in tree.view.scheme_options("fc1")]
    choose_in_quant_column(qtbot, window, "fc1", "int8 legacy")
    choose_in_quant_column(qtbot, window, "fc2", "float")
    choose_in_quant_column(qtbot, window, "conv1", "bf16")
    assert selection.schemes() == {
        "conv1": LayerScheme("bf16"),
        "fc1": LEGACY,
        "fc2": LayerScheme(KEEP_FLOAT),
    }
    model = tree.model
    assert model.index_of("fc1", Col.QUANT).data() == "int8 legacy"
    assert model.index_of("fc2", Col.QUANT).data() == "float"
    assert model.index_of("conv1", Col.QUANT).data() == "bf16"
    assert model.index_of("fc1", Col.QUANT).data(Qt.ItemDataRole.FontRole).bold()
    # the recipe: the settings' rule first, then the per-layer rules that override it
    recipe = window.current_recipe()
    rules = [(q.scheme, q.layers, q.types) for q in recipe.quantize]
    assert rules == [
        ("int8_dynamic", ["*"], ["Linear"]),
        ("bf16", ["conv1"], ["Conv2d"]),
        ("int8_dynamic", ["fc1"], ["Linear"]),
        ("float", ["fc2"], ["Linear"]),
    ]
    assert recipe.quantize[2].backend == "legacy"
    assert per_layer(window, recipe) == {
        "conv1": "bf16/torchao/per_channel",
        "fc1": "int8_dynamic/legacy/per_channel",
    }
    # the settings' rule again: the layer's own scheme goes
    choose_in_quant_column(qtbot, window, "fc2", "the settings\u2019 rule")
    assert "fc2" not in selection.schemes()
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT) as blocker:
        window.run_compression()
    quantized = {r.name: r.quantization for r in blocker.args[0].report.layers if r.quantization}
    assert quantized["fc1"].startswith("int8_dynamic (legacy") and quantized["conv1"] == "bf16"


def test_per_layer_rules_round_trip_through_a_recipe_file(
    qtbot, demo_window, monkeypatch, tmp_path
):
    window = demo_window
    selection = window.session.selection
    selection.set_schemes({"fc1": LEGACY, "conv2": LayerScheme("fp16")})
    saved = window.current_recipe()
    path = tmp_path / "mixed.yaml"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    window.action("save_recipe").trigger()
    assert load_recipe(path).to_dict() == saved.to_dict() and len(saved.quantize) == 3
    window.reset()
    assert selection.schemes() == {}
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    window.action("load_recipe").trigger()
    assert selection.schemes() == {"conv2": LayerScheme("fp16"), "fc1": LEGACY}
    assert window.current_recipe().to_dict() == saved.to_dict()


def test_a_recipe_with_several_quantize_rules_shows_in_the_quant_column(demo_window, message_boxes):
    window = demo_window
    recipe = parse_recipe(
        "version: 1\n"
        "quantize:\n"
        "  - {types: [Linear], scheme: int8_dynamic, backend: legacy}\n"
        "  - {layers: ['fc*'], types: [Linear], scheme: bf16}\n"
        "  - {layers: [fc2], scheme: float}\n"
        "  - {layers: [conv*], types: [Conv2d], scheme: fp16}\n",
        "several.yaml",
    )
    assert window.apply_recipe(recipe)
    assert message_boxes == []  # nothing the window cannot show
    assert window.settings.scheme_box.currentData() == "int8_dynamic"
    assert window.settings.backend_box.currentData() == "legacy"
    assert window.session.selection.schemes() == {
        "conv1": LayerScheme("fp16"),
        "conv2": LayerScheme("fp16"),
        "fc1": LayerScheme("bf16"),
        "fc2": LayerScheme(KEEP_FLOAT),
    }
    # what the window writes back gives every layer the same scheme
    assert per_layer(window, window.current_recipe()) == per_layer(window, recipe)


def test_recommend_fills_the_quant_column_and_shows_the_plan(qtbot, demo_window):
    window = demo_window
    window.plans.candidates = CANDIDATES
    window.settings.quant_box.setChecked(True)
    assert window.action("recommend").isEnabled()
    steps: list[int] = []
    window.jobs.progress.connect(lambda event, layers: event and steps.append(event.total))
    with qtbot.waitSignal(window.planFinished, timeout=TIMEOUT) as blocker:
        window.settings.recommend_button.click()
    plan = blocker.args[0]
    assert steps and steps[-1] > 0  # a progress bar with a total
    assert window.session.plan is plan
    assert [row["name"] for row in plan.layers] == ["fc1", "fc2"]
    expected = schemes_from_plan(plan)
    assert window.session.selection.schemes() == expected
    final = plan.final_choices()
    for name, scheme in expected.items():
        assert scheme == layer_scheme_of(final.get(name, KEEP_FLOAT))
    # the Plan tab: per-layer times before and after, the end-to-end options, the choice
    panel = window.results.plan_panel
    assert window.results.tabs.currentWidget() is panel
    names, floats, chosen, picks = panel.chart.values()
    assert names == ["fc1", "fc2"]
    assert floats == pytest.approx([row["float_ms"] for row in plan.layers])
    for row, ms, pick in zip(plan.layers, chosen, picks):
        assert pick == final.get(row["name"], KEEP_FLOAT)
        want = row["float_ms"] if pick == KEEP_FLOAT else row["candidates"][pick]["ms"]
        assert ms == pytest.approx(want)
    rows = panel.rows()
    assert rows[0][0].startswith("the per-layer plan")
    assert rows[-1][0].startswith("the original (keep float)")
    assert sum("\u2714 chosen" in row[0] for row in rows) == 1
    assert "Chosen" in panel.summary.text() or "Keep float" in panel.summary.text()
    # the user overrides one layer before Compress, and the run does what the column says
    window.session.selection.set_scheme("fc2", LayerScheme("bf16"))
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT) as run:
        window.run_compression()
    quantized = {r.name: r.quantization for r in run.args[0].report.layers}
    assert quantized["fc2"] == "bf16"


def test_recommend_without_data_says_what_to_do(qtbot, demo_window, message_boxes):
    window = demo_window
    window.session.set_eval_data(None, None)
    window.settings.set_input_shape("")
    window.action("recommend").trigger()
    text = message_boxes.texts()[-1]
    assert "evaluation data" in text and "input shape" in text
    assert not window.jobs.busy and window.session.plan is None


def test_cancel_during_recommend_changes_nothing(qtbot, demo_window, monkeypatch):
    from core import tasks

    window = demo_window
    window.plans.candidates = CANDIDATES
    window.session.selection.set_scheme("fc2", LayerScheme("fp16"))
    before_schemes = window.session.selection.schemes()
    before_recipe = window.current_recipe().to_dict()
    model = window.session.loaded.model
    weights = snapshot(model)
    real = tasks.plan_model
    gate = threading.Event()

    def paused(*args, **kwargs):
        gen = real(*args, **kwargs)
        try:
            while True:
                event = next(gen)
                yield event
                gate.wait(30)
        except StopIteration as stop:
            return stop.value

    monkeypatch.setattr(tasks, "plan_model", paused)
    window.action("recommend").trigger()
    qtbot.waitUntil(lambda: window.jobs.job_name == "plan")
    assert window.action("cancel").isEnabled() and not window.action("recommend").isEnabled()
    with qtbot.waitSignal(window.planCancelled, timeout=TIMEOUT):
        window.cancel_button.click()
        gate.set()
    assert window.session.selection.schemes() == before_schemes
    assert window.current_recipe().to_dict() == before_recipe
    assert window.session.plan is None and window.session.loaded.model is model
    for key, tensor in weights.items():
        assert torch.equal(model.state_dict()[key], tensor), key
    assert "nothing was changed" in window.step_label.text()


def test_open_demo_lists_every_demo_and_opens_it_with_its_recipe(qtbot, window):
    entries = window.submenu("demos").actions()
    labels = {a.data(): (a.text().split("\t")[0], a.toolTip()) for a in entries}
    assert labels == {d.name: (d.label, d.tooltip) for d in DEMOS}
    entry = next(a for a in entries if a.data() == "digits_transformer")
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        entry.trigger()
    loaded = window.session.loaded
    assert loaded.demo == "digits_transformer"
    own = load_recipe(DEMOS["digits_transformer"].recipe)
    assert window.current_recipe().quantize == own.quantize  # scheme auto, max drop 0.01
    assert window.settings.scheme_box.currentData() == "auto"
    assert window.settings.max_drop_spin.value() == pytest.approx(0.01)


def test_demo_name_on_the_command_line(qtbot, window):
    assert parse_options(["--demo", "digits_transformer"]).demo == "digits_transformer"
    assert parse_options(["--demo"]).demo == "digits_cnn"
    assert parse_options([]).demo is None
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        app.start(window, Options(demo="digits_transformer"), lambda code: None)
    assert window.session.loaded.demo == "digits_transformer"
    assert "digits transformer" in window.windowTitle()

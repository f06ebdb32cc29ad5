"""What the window shows is exactly one recipe: widgets -> recipe -> file -> widgets gives the
same recipe and the same tree, and `secateur compress` with the saved file gives the same
per-layer result as the window."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QFileDialog

from core import cli
from core.recipe import load_recipe, parse_recipe
from gui.recipe_state import WindowState, build_recipe, escape_name, state_from_recipe

RUN_TIMEOUT = 60_000


def shown(window) -> dict:
    """Everything the tree and the panel show that goes into a recipe."""
    s = window.settings
    return {
        "checked": window.session.selection.checked_names(),
        "overrides": window.session.selection.overrides(),
        "global": s.scope_global.isChecked(),
        "method": s.method_box.currentData(),
        "amount": s.amount_spin.value(),
        "slider": s.amount_slider.value(),
        "norm": s.norm_box.currentText(),
        "dim": s.dim_spin.value(),
        "keep_masks": s.keep_masks.isChecked(),
        "finetune": s.finetune_box.isChecked(),
        "epochs": s.epochs_spin.value(),
        "lr": s.lr_spin.value(),
        "quantize": s.quant_box.isChecked(),
        "scheme": s.scheme_box.currentData(),
        "backend": s.backend_box.currentData(),
        "granularity": s.granularity_box.currentData(),
        "quant_layers": s.quant_layers_edit.text(),
        "quant_types": s.quant_types_edit.text(),
    }


def set_up_a_rich_recipe(window) -> None:
    s = window.settings
    selection = window.session.selection
    s.method_box.setCurrentIndex(s.method_box.findData("ln_structured"))
    s.amount_spin.setValue(40.0)
    s.norm_box.setCurrentText("1")
    s.keep_masks.setChecked(True)
    selection.set_checked_names(["conv2", "fc1", "fc2"])
    selection.set_override("fc1", 0.7)
    selection.set_override("fc2", 0.25)
    s.finetune_box.setChecked(True)
    s.epochs_spin.setValue(2)
    s.lr_spin.setValue(0.0005)
    s.quant_box.setChecked(True)
    s.scheme_box.setCurrentIndex(s.scheme_box.findData("fp16"))
    s.quant_layers_edit.setText("fc*")
    s.quant_types_edit.setText("Linear")


def save_recipe_via_dialog(window, monkeypatch, path) -> None:
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    window.action("save_recipe").trigger()


def test_recipe_round_trip_through_a_file(qtbot, demo_window, monkeypatch, tmp_path):
    window = demo_window
    set_up_a_rich_recipe(window)
    recipe = window.current_recipe()
    before = shown(window)
    path = tmp_path / "rich.yaml"
    save_recipe_via_dialog(window, monkeypatch, path)
    assert load_recipe(path).to_dict() == recipe.to_dict()
    assert [rule.layers for rule in recipe.prune] == [["conv2", "fc1", "fc2"], ["fc1"], ["fc2"]]
    assert recipe.quantize[0].scheme == "fp16" and recipe.finetune.epochs == 2

    window.reset()  # back to the demo recipe: everything differs
    assert shown(window) != before
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), ""))
    )
    window.action("load_recipe").trigger()
    assert shown(window) == before
    assert window.current_recipe().to_dict() == recipe.to_dict()


def test_global_method_round_trip(demo_window):
    window = demo_window
    window.settings.scope_global.setChecked(True)
    window.settings.amount_spin.setValue(60.0)
    recipe = window.current_recipe()
    assert [r.method for r in recipe.prune] == ["global_unstructured"]
    assert recipe.prune[0].layers == ["*"] and recipe.prune[0].types == ["Conv2d", "Linear"]
    state, warnings = state_from_recipe(window.session.loaded.model, recipe)
    assert not warnings and state.prune.is_global and state.prune.amount == 0.6


def test_recipe_patterns_set_the_tree(demo_window):
    window = demo_window
    recipe = parse_recipe(
        "version: 1\n"
        "prune:\n"
        "  - {layers: ['*'], types: [Linear], amount: 0.3}\n"
        "  - {layers: ['fc1'], amount: 0.9}\n",
        "patterns.yaml",
    )
    assert window.apply_recipe(recipe)
    assert window.session.selection.checked_names() == ["fc1", "fc2"]
    assert window.session.selection.overrides() == {"fc1": 0.9}
    assert window.settings.amount_spin.value() == pytest.approx(30.0)
    assert not window.settings.quant_box.isChecked()
    assert window.current_recipe().to_dict() == {
        "version": 1,
        "prune": [
            {
                "layers": ["*"],
                "types": ["Linear"],
                "method": "l1_unstructured",
                "amount": 0.3,
            },
            {"layers": ["fc1"], "method": "l1_unstructured", "amount": 0.9},
        ],
    }


def test_a_recipe_the_window_cannot_show_warns(demo_window, message_boxes):
    recipe = parse_recipe(
        "version: 1\nprune:\n  - {layers: [conv1], method: random_unstructured, amount: 0.2}\n"
        "  - {layers: [fc1, fc2], amount: 0.5}\n",
        "mixed.yaml",
    )
    assert demo_window.apply_recipe(recipe)
    assert any("several pruning settings" in text for text in message_boxes.texts())
    assert demo_window.session.selection.checked_names() == ["conv1", "fc1", "fc2"]


def test_window_and_command_line_give_the_same_result(qtbot, demo_window, monkeypatch, tmp_path):
    window = demo_window
    window.session.selection.set_override("fc1", 0.8)
    window.session.selection.set_checked("conv1", False)
    window.session.set_eval_data(None, None)
    window.settings.set_input_shape("")
    recipe_path = tmp_path / "from-window.yaml"
    save_recipe_via_dialog(window, monkeypatch, recipe_path)
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT) as blocker:
        window.run_compression()
    gui_layers = {
        row["name"]: row["sparsity_after"] for row in blocker.args[0].report.to_dict()["layers"]
    }
    report_path = tmp_path / "cli.json"
    code = cli.main(
        [
            "compress",
            "--demo",
            "--recipe",
            str(recipe_path),
            "--output",
            str(tmp_path / "cli.pt"),
            "--report",
            str(report_path),
            "--skip-metrics",
        ]
    )
    assert code == 0
    cli_layers = {
        row["name"]: row["sparsity_after"] for row in json.loads(report_path.read_text())["layers"]
    }
    assert cli_layers == pytest.approx(gui_layers)
    assert gui_layers["fc1"] == pytest.approx(0.8, abs=0.01)
    assert gui_layers["conv1"] == 0.0


def test_names_with_glob_characters_are_escaped():
    assert escape_name("blocks[0].fc*") == "blocks[[]0[]].fc[*]"


def test_build_recipe_prefers_types_then_names(demo_window):
    window = demo_window
    model, layers = window.session.loaded.model, window.session.layers
    state = WindowState(checked=["conv1", "conv2"])
    assert build_recipe(model, layers, state).prune[0].types == ["Conv2d"]
    state = WindowState(checked=["conv1", "fc2"])
    rule = build_recipe(model, layers, state).prune[0]
    assert rule.layers == ["conv1", "fc2"] and rule.types is None


def test_counts_become_per_layer_amounts(demo_window):
    recipe = parse_recipe(
        "version: 1\nprune:\n  - {layers: [fc1, fc2], amount: 100}\n", "counts.yaml"
    )
    assert demo_window.apply_recipe(recipe)
    assert demo_window.session.selection.overrides() == {"fc1": 100, "fc2": 100}
    rebuilt = demo_window.current_recipe()
    plan = {r.amount for r in rebuilt.prune[1:]}
    assert plan == {100} and rebuilt.prune[-1].layers == ["fc1", "fc2"]

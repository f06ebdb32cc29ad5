"""remove_channels through the recipe, the engine, every save format and the sweep: the model
is really smaller, its shapes are in the report, and every saved file reloads to the same
outputs (a state dict through the sidecar's shapes and the original --arch)."""

from __future__ import annotations

import json

import pytest
import torch

from core import compat
from core.cli import main
from core.demos import TEST_DATA_PATH
from core.engine import compress, run
from core.errors import RecipeError, UnsupportedError
from core.loading import LoadedModel, load_demo, load_model
from core.recipe import parse_recipe
from core.saving import save_model
from core.sensitivity import SweepSettings, allocate, sweep
from core.tasks import plan_channel_removal

RECIPE = """
version: 1
prune:
  - layers: [conv1, conv2, fc1]
    method: remove_channels
    amount: 0.5
"""


@pytest.fixture(scope="module")
def removed():
    loaded, test, _ = load_demo()
    result = run(compress(loaded, parse_recipe(RECIPE, "rc.yaml"), data=test))
    return loaded, test, result


def test_channels_go_and_every_coupled_layer_follows(removed) -> None:
    loaded, _, result = removed
    rows = {row.name: row for row in result.report.layers}
    assert rows["conv1"].shape_before == [32, 1, 3, 3] and rows["conv1"].shape_after == [
        16,
        1,
        3,
        3,
    ]
    assert rows["bn1"].shape_after == [16]  # BatchNorm follows its convolution
    assert rows["conv2"].shape_after == [16, 16, 3, 3]  # and the next layer's input
    assert rows["fc1"].shape_after == [128, 256]  # the flatten into fc1 follows conv2
    assert rows["fc2"].shape_after == [10, 128]  # the output layer keeps its 10 classes
    assert rows["conv1"].pruning == "remove_channels" and rows["bn1"].removal
    after = sum(p.numel() for p in result.model.parameters())
    assert result.report.after.parameters == after
    assert after < 0.3 * sum(p.numel() for p in loaded.model.parameters())
    assert result.report.after.state_dict_bytes < 0.3 * result.report.before.state_dict_bytes
    assert result.sidecar is not None and "shapes" in result.sidecar
    assert "conv1" in result.sidecar["shapes"]["modules"]


@pytest.mark.parametrize("fmt", ["state_dict", "exported", "pickle", "torchscript"])
def test_every_format_round_trips_a_reshaped_model(removed, fmt, tmp_path) -> None:
    loaded, test, result = removed
    out = tmp_path / f"small.{fmt}"
    outcome = save_model(
        result.model, out, fmt, test, result.sidecar, arch=loaded.arch, protected=None
    )
    assert outcome.round_trip["ok"] is True, outcome.round_trip
    if fmt == "state_dict":
        sidecar = json.loads(outcome.sidecar.read_text())
        assert sidecar["shapes"]["modules"]["conv2"]["tensors"]["weight"] == [16, 16, 3, 3]
        reloaded = load_model(out, arch=loaded.arch)
        assert any("resized" in note for note in reloaded.notes)
        x = test.x[:8]
        with torch.inference_mode():
            assert torch.equal(reloaded.model(x), result.model(x))


def test_remove_channels_then_int8_keeps_both_in_the_sidecar(tmp_path) -> None:
    loaded, test, _ = load_demo()
    recipe = parse_recipe(
        RECIPE + "quantize: {scheme: int8_dynamic, backend: legacy, types: [Linear]}\n", "r.yaml"
    )
    result = run(compress(loaded, recipe, data=test, skip_metrics=True))
    assert set(result.sidecar) >= {"layers", "shapes"}
    out = tmp_path / "both.pt"
    outcome = save_model(result.model, out, "state_dict", test, result.sidecar, arch=loaded.arch)
    assert outcome.round_trip["ok"] is True, outcome.round_trip


def test_refusals_name_the_rule_and_come_before_any_work(tmp_path) -> None:
    loaded, test, _ = load_demo()
    recipe = parse_recipe(RECIPE, "rc.yaml")
    with pytest.raises(RecipeError, match=r"rc\.yaml: prune\[0\]\.method: remove_channels traces"):
        run(compress(loaded, recipe))  # no data and no input shape
    whole = parse_recipe(
        "version: 1\nprune: [{layers: [conv1], method: remove_channels, amount: 32}]", "all.yaml"
    )
    with pytest.raises(RecipeError, match="conv1"):
        run(compress(loaded, whole, data=test))
    with pytest.raises(RecipeError, match="importance is for method: remove_channels only"):
        parse_recipe("version: 1\nprune: [{importance: l1}]", "r.yaml")
    with compat.quiet():  # torch.jit is deprecated upstream; the file kind is still supported
        scripted = torch.jit.trace(loaded.model, test.x[:2])
    ts = LoadedModel(scripted, "m.ts", "torchscript")
    with pytest.raises(UnsupportedError, match="can be inspected but not pruned"):
        run(compress(ts, recipe, data=test))


def test_the_command_line_refuses_with_one_line(tmp_path, capsys) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nprune: [{layers: [fc1], method: remove_channels, amount: 256}]\n"
    )
    code = main(["compress", "--demo", "--recipe", str(recipe), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fc1" in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_sweep_removes_one_layer_group_at_a_time() -> None:
    loaded, test, _ = load_demo()
    settings = SweepSettings(method="remove_channels", amounts=(0.25, 0.5))
    result = run(sweep(loaded.model, test, settings, use_cache=False)).data
    rows = {row["name"]: row for row in result["layers"]}
    assert "outputs are the model's outputs" in rows["fc2"]["skipped"]
    assert rows["fc1"]["points"][1]["metric"] <= result["baseline"] + 0.02
    amounts = allocate(result, target_sparsity=0.4)
    assert "fc2" not in amounts and max(amounts.values()) > 0
    assert TEST_DATA_PATH.exists()


def test_the_plan_names_followers_and_estimates_what_each_layer_keeps(removed) -> None:
    """What the window marks before a run (issue 10): who follows whom and how, and the
    fraction of each weight that will stay, which the run then confirms."""
    loaded, test, result = removed
    recipe = parse_recipe(RECIPE, "rc.yaml")
    plan = run(plan_channel_removal(loaded, recipe, test))
    assert plan.roots() == ["conv1", "conv2", "fc1"]
    followers = plan.followers()
    assert followers["bn1"] == [("conv1", "normalized features")]
    assert followers["conv2"] == [("conv1", "input channels")]
    assert followers["fc2"] == [("fc1", "input features")]
    assert "conv1" not in followers
    rows = {row.name: row for row in result.report.layers}
    kept = plan.kept()
    assert kept["conv2"] == pytest.approx(0.25)
    for name, fraction in kept.items():
        assert rows[name].kept_after == pytest.approx(fraction), name
    assert rows["conv2"].kept_before == 1.0 and rows["conv2"].sparsity_after == 0.0


def test_planning_the_removal_needs_an_input_and_nothing_else_is_traced() -> None:
    loaded, test, _ = load_demo()
    recipe = parse_recipe(RECIPE, "rc.yaml")
    with pytest.raises(RecipeError, match="traces the model on an input"):
        run(plan_channel_removal(loaded, recipe, None))
    by_shape = run(plan_channel_removal(loaded, recipe, None, (1, 1, 8, 8)))
    assert by_shape.roots() == ["conv1", "conv2", "fc1"]
    zeroing = parse_recipe("version: 1\nprune: [{layers: [conv1], amount: 0.5}]", "z.yaml")
    assert run(plan_channel_removal(loaded, zeroing, None)) is None
    whole = parse_recipe(
        "version: 1\nprune: [{layers: [conv1], method: remove_channels, amount: 32}]", "a.yaml"
    )
    with pytest.raises(RecipeError, match="would remove all 32 output channels of conv1"):
        run(plan_channel_removal(loaded, whole, test))

"""Sensitivity sweep, automatic amounts and recovery fine-tuning."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.nn.utils import prune
from toy_models import identical, state_of

from core import finetune as finetune_module
from core.data import Dataset
from core.engine import compress, run
from core.errors import Cancelled, DataError, RecipeError
from core.loading import load_demo
from core.metrics import accuracy, run_outputs
from core.recipe import Finetune, parse_recipe
from core.sensitivity import SweepSettings, allocate, predicted, recipe_from_amounts, sweep


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def demo():
    return load_demo()


def test_sweep_matches_pruning_by_hand(demo) -> None:
    loaded, test, _ = demo
    before = state_of(loaded.model)
    settings = SweepSettings(amounts=(0.3, 0.7), quantize="int8_dynamic")
    result = run(sweep(loaded.model, test, settings)).data
    assert identical(state_of(loaded.model), before)
    assert [row["name"] for row in result["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    assert result["metric"] == "accuracy"
    for row in result["layers"]:
        for point in row["points"]:
            model = copy.deepcopy(loaded.model)
            module = model.get_submodule(row["name"])
            prune.l1_unstructured(module, "weight", amount=point["amount"])
            prune.remove(module, "weight")
            with torch.inference_mode():
                acc = float((model(test.x).argmax(1) == test.y).float().mean())
            assert point["metric"] == pytest.approx(acc, abs=1e-9), (row["name"], point)
    assert result["layers"][0]["quantized"]["skipped"].startswith("int8_dynamic (torchao) handles")
    assert result["layers"][2]["quantized"]["metric"] > 0.9


def test_sweep_without_labels_uses_cosine(demo) -> None:
    loaded, test, _ = demo
    unlabelled = Dataset(test.x[:64], None, "x.npz")
    result = run(sweep(loaded.model, unlabelled, SweepSettings(amounts=(0.5,)))).data
    assert result["metric"] == "cosine_similarity" and result["baseline"] == pytest.approx(1.0)
    assert all(0 < row["points"][0]["metric"] <= 1.0 + 1e-9 for row in result["layers"])


def _stop_at_check(n: int):
    """A stop flag that says stop from its ``n``-th check on (one check per amount: with
    one amount, the first two layers finish)."""
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= n

    return stop


def test_sweep_cancel_and_cache(demo) -> None:
    loaded, test, _ = demo
    settings = SweepSettings(amounts=(0.5,), subset=100)
    with pytest.raises(Cancelled):
        run(sweep(loaded.model, test, settings, should_stop=_stop_at_check(3)))
    first = run(sweep(loaded.model, test, settings))
    assert not first.cached and first.cache_path is not None and first.cache_path.exists()
    assert first.data["data"]["samples"] == 100
    second = run(sweep(loaded.model, test, settings))
    assert second.cached and second.data == first.data
    other = run(sweep(loaded.model, test, SweepSettings(amounts=(0.4,), subset=100)))
    assert not other.cached


class _BreaksWhenFc2IsPruned(torch.nn.Module):
    """Runs, unless its second layer has a zero weight."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(8, 8)
        self.fc2 = torch.nn.Linear(8, 8)
        self.fc3 = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((self.fc2.weight == 0).any()):
            raise RuntimeError("fc2 cannot run pruned")
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_a_layer_that_fails_is_a_failed_row_and_the_result_is_not_cached(tmp_path) -> None:
    model = _BreaksWhenFc2IsPruned().eval()
    data = Dataset(torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), None, "x")
    events = []
    result = run(sweep(model, data, SweepSettings(amounts=(0.3, 0.6))), events.append)
    rows = {row["name"]: row for row in result.data["layers"]}
    assert list(rows) == ["fc1", "fc2", "fc3"]  # the layer order, failed or not
    assert rows["fc2"]["points"] == [] and "fc2 cannot run pruned" in rows["fc2"]["failed"]
    assert all(len(rows[n]["points"]) == 2 and "failed" not in rows[n] for n in ("fc1", "fc3"))
    assert result.cache_path is None and not (tmp_path / "cache").exists()
    assert result.notes and "1 of 3 layers failed" in result.notes[0]
    assert [e.message for e in events if e.layer is not None][1].startswith("fc2 failed: ")
    assert events[-1].step == events[-1].total == 6
    # the curves leave it out: nothing of fc2 is pruned, the target is met on the others
    amounts = allocate(result.data, target_sparsity=0.5)
    assert "fc2" not in amounts
    assert predicted(result.data, amounts)["sparsity"] == pytest.approx(0.5)


SYNTHETIC = {
    "baseline": 1.0,
    "layers": [
        {
            "name": "robust",
            "parameters": 1000,
            "points": [{"amount": 0.5, "metric": 1.0}, {"amount": 0.9, "metric": 0.99}],
        },
        {
            "name": "fragile",
            "parameters": 1000,
            "points": [{"amount": 0.5, "metric": 0.8}, {"amount": 0.9, "metric": 0.1}],
        },
    ],
}


def test_allocate_prefers_robust_layers_and_hits_target() -> None:
    amounts = allocate(SYNTHETIC, target_sparsity=0.5)
    assert amounts["robust"] == pytest.approx(0.9)
    assert amounts["fragile"] == pytest.approx(0.1)
    assert predicted(SYNTHETIC, amounts)["sparsity"] == pytest.approx(0.5)


def test_allocate_within_max_drop() -> None:
    amounts = allocate(SYNTHETIC, max_drop=0.011)
    guess = predicted(SYNTHETIC, amounts)
    assert guess["metric"] >= 1.0 - 0.011 - 1e-9
    assert amounts["robust"] == pytest.approx(0.9)
    with pytest.raises(RecipeError, match="above the largest swept amount"):
        allocate(SYNTHETIC, target_sparsity=0.95)


def test_automatic_beats_uniform_on_demo(demo) -> None:
    loaded, test, _ = demo
    result = run(sweep(loaded.model, test, SweepSettings())).data
    amounts = allocate(result, target_sparsity=0.8)
    auto = run(compress(loaded, recipe_from_amounts(amounts), data=test)).report
    uniform = run(
        compress(
            loaded,
            parse_recipe("version: 1\nprune: [{types: [Conv2d, Linear], amount: 0.8}]"),
            data=test,
        )
    ).report
    sizes = {row["name"]: row["parameters"] for row in result["layers"]}
    rows = {r.name: r for r in auto.layers}
    overall = sum(rows[n].sparsity_after * sizes[n] for n in sizes) / sum(sizes.values())
    assert overall >= 0.79
    assert auto.after.accuracy > uniform.after.accuracy


def test_finetune_keeps_pruned_weights_zero_and_never_sees_eval_data(demo, monkeypatch) -> None:
    loaded, test, train = demo
    seen: list[torch.Tensor] = []
    real_take = finetune_module._take

    def spy(data, idx):
        seen.append(data.x[idx])
        return real_take(data, idx)

    monkeypatch.setattr(finetune_module, "_take", spy)
    recipe = parse_recipe(
        "version: 1\nprune: [{types: [Conv2d, Linear], amount: 0.8}]\nfinetune: {epochs: 2}"
    )
    result = run(compress(loaded, recipe, data=test, train_data=train))
    report = result.report
    assert len(report.finetune["loss"]) == 2
    assert report.finetune["data"] == train.source
    for row in report.layers:
        if row.pruning:
            weight = result.model.get_submodule(row.name).weight
            assert 1 - int(torch.count_nonzero(weight)) / weight.numel() == pytest.approx(
                0.8, abs=1 / weight.numel()
            )
    trained_on = torch.cat(seen)
    assert trained_on.shape[0] == 2 * len(train)
    train_rows = {tuple(r.flatten().tolist()) for r in train.x}
    # every trained sample comes from the training split (rows shared by both splits,
    # duplicates in the digits data, are the only overlap)
    for row in trained_on:
        key = tuple(row.flatten().tolist())
        assert key in train_rows
    assert report.after.accuracy == pytest.approx(accuracy(run_outputs(result.model, test), test))


def test_finetune_refuses_eval_data_as_training_data(demo) -> None:
    loaded, test, _ = demo
    recipe = parse_recipe("version: 1\nprune: [{amount: 0.5}]\nfinetune: {epochs: 1}")
    with pytest.raises(DataError, match="cannot be used to train and evaluate"):
        run(compress(loaded, recipe, data=test, train_data=test))


def test_finetune_recovers_within_two_points(demo) -> None:
    loaded, test, train = demo
    result = run(sweep(loaded.model, test, SweepSettings())).data
    recipe = recipe_from_amounts(allocate(result, target_sparsity=0.8))
    recipe.finetune = Finetune(epochs=3)
    report = run(compress(loaded, recipe, data=test, train_data=train)).report
    assert report.after.accuracy >= report.before.accuracy - 0.02


def test_a_cancelled_sweep_caches_its_finished_layers_and_the_next_measures_only_the_rest(
    demo, tmp_path
) -> None:
    loaded, test, _ = demo
    settings = SweepSettings(amounts=(0.3, 0.6), subset=100)
    fresh = run(sweep(loaded.model, test, settings, use_cache=False)).data
    done: list[str] = []

    def stop() -> bool:
        return len(done) >= 2  # cancel once two layers are finished

    def watch(event) -> None:
        if event.layer is not None:
            done.append(event.layer["name"])

    with pytest.raises(Cancelled):
        run(sweep(loaded.model, test, settings, should_stop=stop), watch)
    assert done == ["conv1", "conv2"]
    partial = list((tmp_path / "cache").glob("*.partial.json"))
    assert len(partial) == 1
    kept = json.loads(partial[0].read_text())
    assert [row["name"] for row in kept["layers"]] == ["conv1", "conv2"]

    messages: list[str] = []
    resumed = run(sweep(loaded.model, test, settings), lambda e: messages.append(e.message))
    cached = [m for m in messages if "(cached by a cancelled sweep)" in m]
    measured = [m for m in messages if m.endswith(" done")]
    assert cached == ["conv1 (cached by a cancelled sweep)", "conv2 (cached by a cancelled sweep)"]
    assert measured == ["fc1 done", "fc2 done"]  # only the rest was measured
    assert any("2 of 4 layers came from a cancelled sweep's cache" in n for n in resumed.notes)
    assert resumed.data == fresh  # the same result as a sweep that never stopped
    assert not partial[0].exists()  # the complete entry replaces it
    assert run(sweep(loaded.model, test, settings)).cached


def test_a_damaged_partial_entry_is_ignored_with_a_note(demo, tmp_path) -> None:
    loaded, test, _ = demo
    settings = SweepSettings(amounts=(0.5,), subset=50)
    with pytest.raises(Cancelled):
        run(sweep(loaded.model, test, settings, should_stop=_stop_at_check(3)))
    (path,) = (tmp_path / "cache").glob("*.partial.json")
    entry = json.loads(path.read_text())
    entry["layers"][0]["name"] = "fc2"  # a layer out of order: not this sweep's prefix
    entry["layers"].append(dict(entry["layers"][0], name="conv1"))
    path.write_text(json.dumps(entry))
    result = run(sweep(loaded.model, test, settings))
    assert any(
        "are not some of the ones swept, in order; it was ignored" in n for n in result.notes
    )
    assert result.data == run(sweep(loaded.model, test, settings, use_cache=False)).data


def test_a_caller_that_stops_early_still_leaves_the_finished_layers_cached(demo, tmp_path) -> None:
    # Recommend's plan stops the sweep between two of its own steps: the sweep generator is
    # closed (GeneratorExit), not cancelled from inside
    loaded, test, _ = demo
    settings = SweepSettings(amounts=(0.5,), subset=50)
    gen = sweep(loaded.model, test, settings)
    while (event := next(gen)).layer is None or event.layer["name"] != "conv2":
        pass
    gen.close()
    (path,) = (tmp_path / "cache").glob("*.partial.json")
    assert [row["name"] for row in json.loads(path.read_text())["layers"]] == ["conv1", "conv2"]

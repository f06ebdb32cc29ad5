"""The measured per-layer quantization plan: the search, the end-to-end decision, the recipe
it writes, the engine's ``scheme: auto``, and the refusals."""

from __future__ import annotations

import pytest
import torch
from toy_models import identical, mlp, state_of

from core.data import Dataset
from core.engine import compress, run
from core.errors import Cancelled, RecipeError
from core.loading import LoadedModel
from core.plan import Measured, PlanSettings, decide, make_plan, search
from core.recipe import Recipe, parse_recipe


def _row(name: str, float_ms: float, **candidates: tuple[float, float]) -> dict:
    return {
        "name": name,
        "type": "Linear",
        "float_ms": float_ms,
        "candidates": {
            c.replace("__", ":"): {"ms": ms, "drop": drop} for c, (ms, drop) in candidates.items()
        },
    }


ROWS = [
    _row("a", 10.0, fast=(2.0, 0.006), medium=(5.0, 0.001)),
    _row("b", 10.0, fast=(3.5, 0.006), medium=(6.0, 0.0)),
    _row("c", 1.0, fast=(0.5, 0.0)),
]


def test_search_is_the_fastest_combination_within_the_budget() -> None:
    assert search(ROWS, 0.01) == {"a": "fast", "b": "medium", "c": "fast"}  # 2+6+0.5
    assert search(ROWS, 0.012) == {"a": "fast", "b": "fast", "c": "fast"}  # 2+3.5+0.5
    # no drop at all allowed: only choices measured with none
    assert search(ROWS, 0.0) == {"a": "float", "b": "medium", "c": "fast"}


def test_a_drop_is_never_rounded_down_into_the_budget() -> None:
    rows = [_row("a", 10.0, fast=(1.0, 0.0100001))]
    assert search(rows, 0.01) == {"a": "float"}


def _measured(ratio: float, drop: float = 0.0, ok: bool = True) -> Measured:
    return Measured(ratio, 1.0, drop, ok)


def test_decide_takes_the_fastest_within_budget_or_keeps_float() -> None:
    uniform = {"bf16": _measured(0.7), "int8": _measured(0.5, 0.05, ok=False)}
    assert decide(_measured(0.6), uniform)[0] == "plan"
    assert decide(_measured(0.8), uniform)[0] == "uniform:bf16"
    chosen, why = decide(_measured(0.99), {"bf16": _measured(1.3)})
    assert chosen == "float" and "does not pay" in why
    assert decide(None, {})[0] == "float"


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = mlp()
    data = Dataset(torch.randn(64, 16), None, "random.npz")
    return LoadedModel(model, "m.pt", "pickle"), data


SETTINGS = PlanSettings(candidates=("float", "int8_dynamic:legacy", "bf16"), max_drop=0.05)


def test_a_plan_measures_every_layer_and_candidate_and_leaves_the_model(small) -> None:
    loaded, data = small
    before = state_of(loaded.model)
    plan = run(make_plan(loaded.model, data, ["fc1", "fc2"], SETTINGS, use_cache=False))
    assert identical(state_of(loaded.model), before)
    assert plan.metric == "cosine_similarity" and plan.baseline == pytest.approx(1.0)
    assert [row["name"] for row in plan.layers] == ["fc1", "fc2"]
    for row in plan.layers:
        assert set(row["candidates"]) == set(SETTINGS.candidates)
        for m in row["candidates"].values():
            assert m["ms"] > 0 and m["drop"] >= 0
    assert set(plan.uniform) == {"int8_dynamic:legacy", "bf16"}
    assert plan.chosen in ("plan", "float", *(f"uniform:{n}" for n in plan.uniform))
    report = plan.to_dict()
    assert report["chosen"] == plan.chosen and report["end_to_end"]["plan"]["ratio"] > 0
    # the recipe it writes says exactly the final choices, and parses
    rules = plan.rules({"fc1": "Linear", "fc2": "Linear"})
    recipe = Recipe(version=1, quantize=rules)
    assert parse_recipe(str(recipe.to_dict()).replace("'", '"'), "p.yaml") == recipe
    chosen = plan.final_choices()
    selected = {layer for rule in rules for layer in rule.layers}
    assert selected == set(chosen)


def test_cancel_during_a_plan(small) -> None:
    loaded, data = small
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        run(make_plan(loaded.model, data, ["fc1"], SETTINGS, should_stop=stop, use_cache=False))


def test_scheme_auto_in_a_recipe_quantizes_per_the_plan(small) -> None:
    loaded, data = small
    recipe = parse_recipe(
        "version: 1\nquantize:\n  scheme: auto\n  candidates: [float, bf16]\n  max_drop: 0.05\n",
        "auto.yaml",
    )
    result = run(compress(loaded, recipe, data=data))
    plan = result.report.plan
    assert plan is not None and plan["candidates"] == ["float", "bf16"]
    quantized = {row.name: row.quantization for row in result.report.layers if row.quantization}
    assert quantized == {name: "bf16" for name in plan["choices"]}
    assert "plan" in result.report.to_dict()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "quantize: {scheme: auto, candidates: [int3]}",
            r"quantize\.candidates: 'int3' is not one of float, ",
        ),
        ("quantize: {scheme: auto, max_drop: 1.5}", r"quantize\.max_drop: 1\.5 is not in \[0, 1\]"),
        ("quantize: {scheme: bf16, max_drop: 0.1}", "max_drop is for scheme: auto only"),
        (
            "quantize: [{scheme: auto}, {scheme: bf16}]",
            "scheme auto plans every selected layer; give it alone",
        ),
    ],
)
def test_bad_auto_rules_name_the_field(text, message) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe(f"version: 1\n{text}\n", "r.yaml")


def test_scheme_auto_needs_something_to_measure_on(small) -> None:
    loaded, _ = small
    recipe = parse_recipe("version: 1\nquantize: {scheme: auto}\n", "r.yaml")
    with pytest.raises(RecipeError, match=r"r\.yaml: quantize\.scheme: auto measures"):
        run(compress(loaded, recipe))


def test_per_layer_rules_later_wins_and_float_keeps(small) -> None:
    loaded, data = small
    recipe = parse_recipe(
        "version: 1\nquantize:\n"
        "  - {scheme: int8_dynamic, backend: legacy}\n"
        "  - {layers: [fc2], scheme: bf16}\n"
        "  - {layers: [fc1], scheme: float}\n",
        "rules.yaml",
    )
    result = run(compress(loaded, recipe, data=data, skip_metrics=True))
    quantized = {row.name: row.quantization for row in result.report.layers}
    assert quantized["fc2"] == "bf16" and quantized["fc1"] is None
    assert quantized["head"] == "int8_dynamic (legacy, per_channel)"
    assert result.sidecar == {
        "secateur_sidecar": 1,
        "layers": {
            "fc2": {"scheme": "bf16", "backend": "torchao", "granularity": "per_channel"},
            "head": {"scheme": "int8_dynamic", "backend": "legacy", "granularity": "per_channel"},
        },
    }


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-drop", "2"], "--max-drop: 2.0 is not in [0, 1]"),
        (["--candidates", "float,int3"], "--candidates: 'int3' is not one of float, "),
        (["--batch-size", "0"], "--batch-size: 0 must be at least 1"),
    ],
)
def test_plan_flags_are_checked_before_any_work(flags, message, tmp_path, capsys) -> None:
    from core.cli import main

    out = tmp_path / "r.yaml"
    code = main(["plan", "--demo", "--emit-recipe", str(out), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()

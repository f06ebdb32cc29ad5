"""Recipe validation: every error names the field and the bad value; round trips are exact."""

from __future__ import annotations

import pytest

from core.errors import RecipeError
from core.recipe import Recipe, dump_recipe, load_recipe, parse_recipe

GOOD = """
version: 1
prune:
  - layers: ["*"]
    types: [Linear, Conv2d]
    method: l1_unstructured
    amount: 0.5
  - layers: ["fc1"]
    method: ln_structured
    amount: 3
    n: inf
    dim: 0
    permanent: false
finetune: {epochs: 2, lr: 0.01, batch_size: 32}
quantize:
  scheme: int8_dynamic
  backend: legacy
  granularity: per_tensor
  types: [Linear]
"""


def test_good_recipe_parses() -> None:
    recipe = parse_recipe(GOOD, "r.yaml")
    assert recipe.prune[1].amount == 3 and isinstance(recipe.prune[1].amount, int)
    assert recipe.prune[1].norm() == float("inf")
    assert recipe.finetune is not None and recipe.finetune.epochs == 2
    assert len(recipe.quantize) == 1 and recipe.quantize[0].backend == "legacy"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_is_identical(tmp_path, suffix) -> None:
    recipe = parse_recipe(GOOD, "r.yaml")
    path = tmp_path / f"r{suffix}"
    dump_recipe(recipe, path)
    again = load_recipe(path)
    assert again == recipe
    assert again.to_dict() == recipe.to_dict()
    dump_recipe(again, tmp_path / f"r2{suffix}")
    assert (tmp_path / f"r2{suffix}").read_text() == path.read_text()


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_quantize_types_null_survives_a_round_trip(tmp_path, suffix) -> None:
    # null means every layer with weights; dropping it would reload as the default [Linear]
    recipe = parse_recipe("version: 1\nquantize: {scheme: bf16, types: null}", "r.yaml")
    assert recipe.quantize[0].types is None
    path = tmp_path / f"r{suffix}"
    dump_recipe(recipe, path)
    assert load_recipe(path).quantize[0].types is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nprune: [{amount: 1.5}]", "r.yaml: prune[0].amount: 1.5 is not in [0, 1)"),
        ("version: 1\nprune: [{amount: -0.1}]", "r.yaml: prune[0].amount: -0.1 is not in [0, 1)"),
        ("version: 1\nprune: [{amount: abc}]", "r.yaml: prune[0].amount: 'abc' is not a number"),
        ("version: 1\nprune: [{amount: -3}]", "r.yaml: prune[0].amount: -3 is negative"),
        ("version: 1\nprune: [{amount: true}]", "r.yaml: prune[0].amount: True is not a number"),
        ("version: 1\nprune: [{method: magic}]", "r.yaml: prune[0].method: 'magic' is not one of"),
        ("version: 1\nprune: [{colour: red}]", "r.yaml: prune[0].colour: unknown key"),
        ("version: 1\nprune: [{layers: conv1}]", "r.yaml: prune[0].layers: 'conv1' is invalid"),
        ("version: 1\nprune: [{layers: []}]", "r.yaml: prune[0].layers: must list at least one"),
        ("version: 1\nprune: [{n: fancy}]", "r.yaml: prune[0].n: 'fancy' is not a norm"),
        ("version: 1\nquantize: {scheme: int4}", "r.yaml: quantize.scheme: 'int4' is not one of"),
        (
            "version: 1\nquantize: {scheme: fp16, backend: legacy}",
            "r.yaml: quantize: backend 'legacy' (torch.ao.quantization) supports int8_dynamic",
        ),
        ("version: 1\nfinetune: {epochs: 0}", "r.yaml: finetune.epochs: 0 is invalid"),
        ("version: 2", "r.yaml: version: 2 is not one of 1"),
        ("prune: []", "r.yaml: version: missing (required)"),
        ("version: 1\nextra: 3", "r.yaml: extra: unknown key"),
        ("- 1\n- 2", "r.yaml: expected a mapping with 'version: 1' at the top, got list"),
        ("version: 1\nprune: [{amount: 0.5}", "r.yaml: YAML syntax error at line"),
        ("   \n", "r.yaml: the file is empty"),
    ],
)
def test_errors_name_field_and_value(text, expected) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml")
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_json_syntax_error_names_line(tmp_path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"version": 1,\n "prune": [}')
    with pytest.raises(RecipeError, match=r"r\.json: JSON syntax error at line 2"):
        load_recipe(path)


def test_missing_file_and_folder(tmp_path) -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="is a folder"):
        load_recipe(tmp_path)


def test_count_amount_is_kept_as_int() -> None:
    recipe = Recipe.from_dict({"version": 1, "prune": [{"amount": 7}]})
    assert recipe.prune[0].amount == 7 and type(recipe.prune[0].amount) is int

"""Property-based invariants (hypothesis) of recipe parsing, pruning and quantization."""

from __future__ import annotations

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy_models import mlp, state_of

from core.errors import RecipeError
from core.pruning import make_permanent, plan_pruning, prune_layers
from core.quantization import plan_quantization, quantize_layers
from core.recipe import PruneRule, Quantize, parse_recipe

LAYERS = ["fc1", "fc2", "head"]
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
recipe_like = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([1, 2, "1", None]),
        "prune": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "layers": json_values,
                    "types": json_values,
                    "method": st.sampled_from(["l1_unstructured", "ln_structured", "x"])
                    | json_values,
                    "amount": st.floats(allow_nan=True) | st.integers(-3, 3) | json_values,
                    "n": json_values,
                    "dim": json_values,
                },
            ),
            max_size=3,
        )
        | json_values,
        "quantize": json_values,
        "finetune": json_values,
    },
)


@PROFILE
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_recipe_error(text: str) -> None:
    try:
        parse_recipe(text, "fuzz.yaml")
    except RecipeError as exc:
        assert str(exc).startswith("fuzz.yaml: ") and "\n" not in str(exc)


@PROFILE
@given(recipe_like)
def test_any_structure_parses_or_raises_recipe_error(data) -> None:
    text = yaml.safe_dump(data)
    try:
        recipe = parse_recipe(text, "fuzz.yaml")
    except RecipeError as exc:
        assert str(exc).startswith("fuzz.yaml: ")
        return
    assert parse_recipe(yaml.safe_dump(recipe.to_dict()), "again.yaml") == recipe


@PROFILE
@given(
    selected=st.lists(st.sampled_from(LAYERS), min_size=1, max_size=3, unique=True),
    method=st.sampled_from(
        ["l1_unstructured", "random_unstructured", "ln_structured", "random_structured"]
    ),
    fraction=st.floats(0.0, 0.99),
    use_count=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_pruning_is_exact_zeroes_only_and_local(
    selected, method, fraction, use_count, seed
) -> None:
    torch.manual_seed(seed)
    model = mlp()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # no exact zeros to start with
    before = state_of(model)
    structured = method in ("ln_structured", "random_structured")
    units = {
        name: model.get_submodule(name).weight.shape[0]
        if structured
        else model.get_submodule(name).weight.numel()
        for name in selected
    }
    amount: int | float = fraction
    if use_count:
        amount = max(0, int(fraction * min(units.values())))
    rule = PruneRule(layers=selected, method=method, amount=amount, n=2, dim=0)
    plan = plan_pruning(model, [rule], "p.yaml")
    list(prune_layers(model, plan))
    make_permanent(model)
    after = model.state_dict()
    for key, old in before.items():
        layer = key.rsplit(".", 1)[0]
        new = after[key]
        if layer not in selected or not key.endswith("weight"):
            assert torch.equal(old, new), key  # unselected and biases untouched
            continue
        changed = new != old
        assert bool((new[changed] == 0).all()), "pruning only zeroes weights"
        want = amount if isinstance(amount, int) else round(fraction * units[layer])
        if structured:
            zero_rows = int((new.abs().sum(1) == 0).sum())
            assert zero_rows == want
        else:
            assert int((new == 0).sum()) == want


@PROFILE
@given(
    selected=st.lists(st.sampled_from(LAYERS), min_size=1, max_size=3, unique=True),
    scheme=st.sampled_from(["int8_dynamic", "int8_weight_only", "fp16", "bf16"]),
    legacy=st.booleans(),
    per_tensor=st.booleans(),
)
def test_quantization_leaves_unselected_layers_bit_identical(
    selected, scheme, legacy, per_tensor
) -> None:
    model = mlp()
    before = state_of(model)
    backend = "legacy" if legacy and scheme == "int8_dynamic" else "torchao"
    q = Quantize(
        scheme=scheme,
        backend=backend,
        granularity="per_tensor" if per_tensor else "per_channel",
        layers=selected,
    )
    list(quantize_layers(model, plan_quantization(model, [q], "q.yaml")))
    after = model.state_dict()
    for key, old in before.items():
        if key.rsplit(".", 1)[0] not in selected:
            assert torch.equal(old, after[key]), key


@pytest.mark.parametrize("amount", [0.0, 0.5])
def test_zero_amount_changes_nothing(amount) -> None:
    model = mlp()
    before = state_of(model)
    plan = plan_pruning(model, [PruneRule(amount=amount)], "p.yaml")
    list(prune_layers(model, plan))
    make_permanent(model)
    changed = [k for k in before if not torch.equal(before[k], model.state_dict()[k])]
    assert (changed == []) == (amount == 0.0)

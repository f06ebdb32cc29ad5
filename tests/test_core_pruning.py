"""Pruning: every method reaches its amount exactly, rules override in order, masks or not."""

from __future__ import annotations

import pytest
import torch
from toy_models import convnet, mlp, state_of

from core.errors import RecipeError
from core.inventory import PRUNABLE_TYPES, inventory, select
from core.pruning import make_permanent, plan_pruning, prune_layers
from core.recipe import PruneRule


def _apply(model, rules):
    plan = plan_pruning(model, rules, "r.yaml")
    list(prune_layers(model, plan))
    make_permanent(model, [n for n, p in plan.items() if p.rule.permanent])
    return plan


def _zeros(t: torch.Tensor) -> int:
    return t.numel() - int(torch.count_nonzero(t))


@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured"])
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.77, 25])
def test_unstructured_exact(method, amount) -> None:
    model = mlp()
    _apply(model, [PruneRule(method=method, amount=amount)])
    for name in ("fc1", "fc2", "head"):
        w = model.get_submodule(name).weight
        want = amount if isinstance(amount, int) else round(amount * w.numel())
        assert _zeros(w) == want, name


@pytest.mark.parametrize("method", ["ln_structured", "random_structured"])
@pytest.mark.parametrize(("amount", "dim"), [(0.5, 0), (0.25, 1), (3, 0)])
def test_structured_exact_channels(method, amount, dim) -> None:
    model = mlp()
    _apply(model, [PruneRule(layers=["fc2"], method=method, amount=amount, dim=dim, n=1)])
    w = model.fc2.weight
    other = 1 - dim
    zero_channels = int((w.abs().sum(dim=other) == 0).sum())
    want = amount if isinstance(amount, int) else round(amount * w.shape[dim])
    assert zero_channels == want


def test_ln_structured_removes_smallest_norm_rows() -> None:
    model = mlp()
    norms = model.fc1.weight.detach().norm(p=2, dim=1)
    _apply(model, [PruneRule(layers=["fc1"], method="ln_structured", amount=4, n=2, dim=0)])
    zero_rows = set(torch.nonzero(model.fc1.weight.abs().sum(1) == 0).flatten().tolist())
    assert zero_rows == set(norms.argsort()[:4].tolist())


def test_global_unstructured_uses_one_threshold() -> None:
    model = mlp()
    weights = torch.cat(
        [model.get_submodule(n).weight.detach().abs().flatten() for n in ("fc1", "fc2", "head")]
    )
    k = round(0.6 * weights.numel())
    threshold = weights.sort().values[k - 1]
    _apply(model, [PruneRule(method="global_unstructured", amount=0.6)])
    total = sum(_zeros(model.get_submodule(n).weight) for n in ("fc1", "fc2", "head"))
    assert total == k
    for n in ("fc1", "fc2", "head"):
        w = model.get_submodule(n).weight
        assert bool((w[w != 0].abs() >= threshold).all())
    # layers differ in sparsity: one threshold, not one amount per layer
    per_layer = {
        n: _zeros(model.get_submodule(n).weight) / model.get_submodule(n).weight.numel()
        for n in ("fc1", "fc2", "head")
    }
    assert len({round(v, 3) for v in per_layer.values()}) > 1


def test_later_rule_overrides_earlier() -> None:
    model = mlp()
    plan = _apply(
        model,
        [
            PruneRule(amount=0.5),
            PruneRule(layers=["fc2"], amount=0.9),
            PruneRule(layers=["head"], amount=0.0),
        ],
    )
    assert plan["fc2"].rule_index == 1
    assert _zeros(model.fc1.weight) == 256
    assert _zeros(model.fc2.weight) == round(0.9 * 1024)
    assert _zeros(model.head.weight) == 0


def test_unselected_layers_bit_identical() -> None:
    model = mlp()
    before = state_of(model)
    _apply(model, [PruneRule(layers=["fc2"], amount=0.5)])
    after = state_of(model)
    for key in before:
        if not key.startswith("fc2.weight"):
            assert torch.equal(before[key], after[key]), key


def test_masks_kept_when_not_permanent() -> None:
    model = mlp()
    _apply(model, [PruneRule(layers=["fc1"], amount=0.5, permanent=False)])
    keys = set(model.state_dict())
    assert {"fc1.weight_orig", "fc1.weight_mask"} <= keys
    assert "fc2.weight_orig" not in keys


def test_permanent_leaves_no_masks() -> None:
    model = mlp()
    _apply(model, [PruneRule(amount=0.5)])
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())


def test_pattern_matching_nothing_is_an_error() -> None:
    with pytest.raises(
        RecipeError, match=r"r\.yaml: prune\[0\]\.layers: 'conv9\*' matches no prunable layer"
    ):
        plan_pruning(mlp(), [PruneRule(layers=["conv9*"])], "r.yaml")
    with pytest.raises(
        RecipeError, match=r"prune\[0\]\.layers: '\*' matches no prunable layer of type Conv2d"
    ):
        plan_pruning(mlp(), [PruneRule(types=["Conv2d"])], "r.yaml")


def test_count_larger_than_layer_is_an_error() -> None:
    with pytest.raises(
        RecipeError, match=r"prune\[0\]\.amount: 9999 is more than the 512 elements of fc1"
    ):
        plan_pruning(mlp(), [PruneRule(layers=["fc1"], amount=9999)], "r.yaml")


def test_subclass_with_children_counts_as_conv2d() -> None:
    model = convnet()
    names, _ = select(model, ["*"], ["Conv2d"], predicate=PRUNABLE_TYPES)
    assert names == ["features.0", "features.2"]
    rows = {r.name: r for r in inventory(model)}
    assert rows["features.0"].type == "GatedConv" and rows["features.0"].prunable
    assert rows["features.0"].has_children and rows["features.0"].parameters == 8 * 3 * 9 + 8
    _apply(model, [PruneRule(types=["Conv2d"], amount=0.5)])
    w = model.features[0].weight
    assert _zeros(w) == round(0.5 * w.numel())


def test_inventory_of_10000_modules() -> None:
    from torch import nn

    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(3400)])
    rows = inventory(model)
    assert len(rows) == 1 + 3400 * 3
    assert rows[1].has_children and not rows[2].has_children
    assert rows[2].parent == "0" and rows[2].name == "0.0" and rows[2].parameters == 20
    assert sum(r.parameters for r in rows) == sum(p.numel() for p in model.parameters())


def test_l1_masks_equal_torch_own() -> None:
    """Our kthvalue-based L1 selection gives torch's topk masks (tie-free weights)."""
    import copy

    from torch import nn
    from torch.nn.utils import prune

    from core.methods import l1_keep
    from core.pruning import install_masks

    torch.manual_seed(5)
    a = nn.Linear(300, 200)
    b = copy.deepcopy(a)
    prune.l1_unstructured(a, "weight", amount=0.37)
    install_masks([b], l1_keep([b.weight], 0.37), hold=True)
    assert torch.equal(a.weight_mask, b.weight_mask)
    group = [nn.Linear(50, 40), nn.Conv2d(4, 6, 3)]
    mine = copy.deepcopy(group)
    prune.global_unstructured([(m, "weight") for m in group], prune.L1Unstructured, amount=0.6)
    install_masks(mine, l1_keep([m.weight for m in mine], 0.6), hold=True)
    assert all(torch.equal(x.weight_mask, y.weight_mask) for x, y in zip(group, mine))


def test_l1_exact_with_ties() -> None:
    model = mlp()
    with torch.no_grad():
        model.fc2.weight.fill_(0.25)  # every weight ties
    _apply(model, [PruneRule(layers=["fc2"], amount=0.3)])
    assert _zeros(model.fc2.weight) == round(0.3 * 1024)


@pytest.mark.parametrize(
    "rule",
    [
        PruneRule(method="l1_unstructured", amount=0.4),
        PruneRule(method="random_unstructured", amount=0.4),
        PruneRule(method="ln_structured", amount=0.25, n=1, dim=1),
        PruneRule(method="random_structured", amount=3, dim=0),
        PruneRule(method="global_unstructured", amount=0.7),
    ],
    ids=lambda r: r.method,
)
def test_in_place_equals_masked_then_removed(rule) -> None:
    held, direct = mlp(), mlp()
    plan = plan_pruning(held, [rule], "r.yaml")
    torch.manual_seed(11)
    list(prune_layers(held, plan, hold_masks=True))
    make_permanent(held)
    torch.manual_seed(11)
    list(prune_layers(direct, plan_pruning(direct, [rule], "r.yaml"), hold_masks=False))
    assert not any(k.endswith(("_orig", "_mask")) for k in direct.state_dict())
    assert all(torch.equal(held.state_dict()[k], v) for k, v in direct.state_dict().items())

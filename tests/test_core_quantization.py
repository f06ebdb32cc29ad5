"""Quantization: each scheme and backend, skipped layers with reasons, unselected untouched."""

from __future__ import annotations

import io

import pytest
import torch
from toy_models import convnet, mlp, state_of

from core.errors import RecipeError
from core.inventory import layer_weight, quantization_of
from core.quantization import plan_quantization, quantize_layers
from core.recipe import Quantize

CASES = [
    ("int8_dynamic", "torchao", "per_channel", "int8_dynamic (torchao)"),
    ("int8_dynamic", "torchao", "per_tensor", "int8_dynamic (torchao)"),
    ("int8_dynamic", "legacy", "per_channel", "int8_dynamic (legacy)"),
    ("int8_dynamic", "legacy", "per_tensor", "int8_dynamic (legacy)"),
    ("int8_weight_only", "torchao", "per_channel", "int8_weight_only (torchao)"),
    ("fp16", "torchao", "per_channel", "fp16"),
    ("bf16", "torchao", "per_channel", "bf16"),
]


def _quantize(model, q: Quantize):
    plan = plan_quantization(model, [q], "r.yaml")
    list(quantize_layers(model, plan))
    return plan


@pytest.mark.parametrize(("scheme", "backend", "granularity", "label"), CASES)
def test_scheme_quantizes_and_stays_close(scheme, backend, granularity, label) -> None:
    model = mlp()
    ref = mlp()
    q = Quantize(scheme=scheme, backend=backend, granularity=granularity, layers=["fc*"])
    plan = _quantize(model, q)
    assert list(plan.layers) == ["fc1", "fc2"]
    assert quantization_of(model.get_submodule("fc1")) == label
    assert quantization_of(model.head) is None
    x = torch.randn(64, 16)
    with torch.inference_mode():
        a, b = ref(x), model(x)
    assert b.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert cos > 0.99
    # the state dict is serialisable and weights-only loadable
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    assert set(torch.load(buf, weights_only=True)) == set(model.state_dict())


@pytest.mark.parametrize(("scheme", "backend", "granularity", "label"), CASES)
def test_unselected_layers_bit_identical(scheme, backend, granularity, label) -> None:
    model = mlp()
    before = state_of(model)
    _quantize(
        model, Quantize(scheme=scheme, backend=backend, granularity=granularity, layers=["fc2"])
    )
    after = model.state_dict()
    for key in ("fc1.weight", "fc1.bias", "head.weight", "head.bias"):
        assert torch.equal(before[key], after[key]), key


def test_int8_weights_are_integers_per_channel_scales() -> None:
    model = mlp()
    _quantize(model, Quantize(layers=["fc1"]))
    w = layer_weight(model.fc1)
    assert w is not None and w.dtype == torch.int8 and tuple(w.shape) == (32, 16)
    scale = model.fc1.weight.scale
    assert scale.numel() == 32  # one scale per output channel


def test_conv_layers_skipped_with_reason() -> None:
    model = convnet()
    plan = plan_quantization(model, [Quantize(types=["Linear", "Conv2d"])], "r.yaml")
    assert list(plan.layers) == ["classifier"]
    assert (
        plan.skipped["features.0"] == "int8_dynamic (torchao) handles nn.Linear only, not GatedConv"
    )
    assert set(plan.skipped) == {"features.0", "features.2"}


def test_fp16_conv_works_with_neighbours_in_float32() -> None:
    model = convnet()
    ref = convnet()
    _quantize(model, Quantize(scheme="fp16", types=["Conv2d"]))
    assert model.features[2].weight.dtype == torch.float16
    assert model.classifier.weight.dtype == torch.float32
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(model(x), ref(x), atol=1e-2)


def test_pattern_matching_nothing_is_an_error() -> None:
    with pytest.raises(RecipeError, match=r"r\.yaml: quantize\.layers: 'attn\*' matches no layer"):
        plan_quantization(mlp(), [Quantize(layers=["attn*"])], "r.yaml")

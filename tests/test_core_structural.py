"""Structural pruning (core.structural): coupling, skips, refusals, exactness, saving.

"Exact" tests make the removed channels (or heads) contribute nothing to the original model
first, then check the shrunk model computes the same outputs as that original: a removal
that mixes up channels, heads or scales cannot pass them.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import warnings

import pytest
import torch
from torch import nn

from benchmarks import models
from core.errors import Cancelled, DataError, ModelLoadError, RecipeError, UnsupportedError
from core.shapes import apply_shapes, shapes_of
from core.structural import GroupRemoved, RemovalResult, plan_removal, remove_channels


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a shared 2-core machine a busy neighbour makes every parallel region
    wait for a time slice (milliseconds per op for these tiny models)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(model: nn.Module, plan, **kwargs) -> tuple[list[GroupRemoved], RemovalResult]:
    events = []
    gen = remove_channels(model, plan, **kwargs)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def prune(model: nn.Module, roots, x, **settings):
    """Plan on ``model``, remove on a copy; returns (copy, plan, result)."""
    example = ((x,), {})
    plan = plan_removal(model, roots, example, **settings)
    work = copy.deepcopy(model)
    _, result = run(work, plan)
    return work, plan, result


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), float((a - b).abs().max())


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def row(result: RemovalResult, name: str):
    return next(r for r in result.layers if r.name == name)


# ----------------------------------------------------------------------------- toy models
class ConvBN(nn.Module):
    """conv-BN-ReLU twice, then the 4x4 map flattened into a Linear, then the output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 12)
        self.out = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.out(torch.relu(self.fc(torch.flatten(x, 1))))


class Residual(nn.Module):
    """Two branches added together, a depthwise conv, a concatenation into a conv."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.branch = nn.Conv2d(8, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.side = nn.Conv2d(8, 4, 1)
        self.mix = nn.Conv2d(12, 8, 1, groups=groups)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        y = s + self.branch(s)
        y = self.dw(y)
        y = torch.cat([y, self.side(s)], dim=1)
        return self.head(self.pool(torch.relu(self.mix(y))).flatten(1))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.b = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.g(torch.relu(self.a(x))))).mean((2, 3))


class Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 16)
        self.ln = nn.LayerNorm(16)
        self.conv = nn.Conv1d(16, 8, 1)
        self.gn = nn.GroupNorm(2, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(self.fc1(x))  # (b, t, 16)
        h = self.gn(self.conv(h.transpose(1, 2)))  # (b, 8, t)
        return self.fc2(torch.relu(h).mean(2))


class Attention(nn.Module):
    """A tiny hand-written attention model; ``style`` picks how the forward splits heads."""

    def __init__(self, style: str = "attrs", dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(5, dim)
        self.attn = models.SelfAttention(dim, heads)
        self.style = style
        if style == "no_attr":
            del self.attn.num_heads
            self.attn.forward = self._constant_forward
        elif style == "constant":
            self.attn.forward = self._constant_forward
        self.out = nn.Linear(dim, 3)

    def _constant_forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn
        b, t, _ = x.shape
        q, k, v = (p(x).view(b, t, 4, -1).transpose(1, 2) for p in (a.q, a.k, a.v))
        w = ((q @ k.transpose(-2, -1)) * 0.5).softmax(-1)
        return a.o((w @ v).transpose(1, 2).reshape(b, t, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.attn(self.embed(x)).mean(1))


class MHA(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(5, dim)
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.out(self.mha(h, h, h, need_weights=False)[0].mean(1))


def seeded(cls, *args):
    torch.manual_seed(0)
    model = cls(*args).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def image(batch: int = 2, size: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def tokens(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 6, 5, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- coupling
def test_conv_bn_flatten_linear_shrink_together_and_keep_output_shape():
    model = seeded(ConvBN)
    x = image()
    work, plan, result = prune(model, {"conv2": 0.5, "conv1": 0.5}, x)
    assert work.conv1.out_channels == 4 and work.bn1.num_features == 4
    assert work.conv2.in_channels == 4 and work.conv2.out_channels == 3
    assert work.bn2.running_mean.shape == (3,)
    assert work.fc.in_features == 3 * 16  # flatten: 16 features per channel
    assert outputs(work, x).shape == outputs(model, x).shape
    assert plan.coupled()["bn2"] == "conv2" and plan.coupled()["fc"] == "conv2"
    fc = row(result, "fc")
    assert (fc.shape_before, fc.shape_after) == ((12, 96), (12, 48))
    assert fc.parameters_after == 12 * 48 + 12 and fc.role == "input features"


def test_removed_channels_that_contribute_nothing_leave_outputs_unchanged():
    model = seeded(ConvBN)
    dead = [1, 4, 6]
    with torch.no_grad():
        model.conv1.weight[dead] = 0
        model.conv1.bias[dead] = 0
        model.bn1.weight[dead] = 0
        model.bn1.bias[dead] = 0
        model.conv2.weight[:, dead] = 0
    x = image()
    work, _, _ = prune(model, {"conv1": 3}, x)
    assert work.conv1.out_channels == 5
    assert_same(outputs(work, x), outputs(model, x))


def test_residual_depthwise_and_concatenation_follow_exactly():
    model = seeded(Residual)
    x = image(size=6)
    # stem channels 0, 5 and side channels 1, 2 carry nothing: every weight on them is zero
    with torch.no_grad():
        for conv in (model.stem, model.branch, model.dw):
            conv.weight[[0, 5]] = 0
            conv.bias[[0, 5]] = 0
        model.branch.weight[:, [0, 5]] = 0
        model.side.weight[:, [0, 5]] = 0
        model.side.weight[[1, 2]] = 0
        model.side.bias[[1, 2]] = 0
        model.mix.weight[:, [0, 5, 9, 10]] = 0
    plan = plan_removal(model, {"stem": 2, "side": 2, "branch": 0.5}, ((x,), {}))
    stem = plan.group_of("stem")
    assert stem.roots == ("stem", "branch")  # branch's output is added to stem's
    roles = {c.name: c.role for c in stem.coupled}
    assert roles["dw"] == "depthwise channels"
    assert roles["mix"] == "input channels" and roles["side"] == "input channels"
    side = next(g for g in plan.groups if g.root == "side")
    assert [c.name for c in side.coupled] == ["mix"]
    work = copy.deepcopy(model)
    run(work, plan)
    # stem asks for 2 channels, branch for half: the group removes the smaller, 2
    assert (work.stem.out_channels, work.dw.groups, work.side.out_channels) == (6, 6, 2)
    assert work.mix.in_channels == 8  # 6 from the depthwise branch + 2 from the side
    assert_same(outputs(work, x), outputs(model, x))


def test_grouped_conv_after_a_concatenation_is_skipped():
    model = seeded(Residual, 2)
    plan = plan_removal(model, {"stem": 0.5, "side": 0.5, "mix": 0.5}, ((image(size=6),), {}))
    for root in ("stem", "side"):
        assert "grouped convolution mix (groups=2)" in plan.skipped[root]
        assert "concatenation" in plan.skipped[root]
    mix = plan.group_of("mix")
    assert mix.blocks == 2 and mix.keep == 4
    work = copy.deepcopy(model)
    run(work, plan)
    assert (work.mix.out_channels, work.mix.groups, work.head.in_features) == (4, 2, 4)


def test_grouped_conv_loses_channels_evenly_in_every_group():
    model = seeded(Grouped)
    x = image(size=5)
    # channels 0, 2, 4, 6 are position 0 of each of the 4 groups of 2 channels: dead
    dead = [0, 2, 4, 6]
    with torch.no_grad():
        model.a.weight[dead] = 0
        model.a.bias[dead] = 0
        model.g.weight[:, 0] = 0
    work, plan, _ = prune(model, {"a": 0.5}, x)
    assert plan.groups[0].blocks == 4
    assert work.g.in_channels == 4 and work.g.groups == 4 and work.g.weight.shape[1] == 1
    assert_same(outputs(work, x), outputs(model, x))


def test_torch_pruning_alone_mixes_multihead_attention_heads():
    """Why nn.MultiheadAttention loses positions evenly per head (Torch-Pruning #196): given
    two channels of one head, Torch-Pruning's pruner runs and computes something else than
    the attention with those channels zeroed (heads mix, and the softmax scale changes)."""
    import torch_pruning as tp

    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(1, 5, 8)
    dead = [0, 1]  # both in head 0
    masked = copy.deepcopy(mha)
    with torch.no_grad():
        rows = dead + [d + 8 for d in dead] + [d + 16 for d in dead]
        masked.in_proj_weight[rows] = 0
        masked.in_proj_weight[:, dead] = 0
        masked.in_proj_bias[rows] = 0
        masked.out_proj.weight[dead] = 0
        masked.out_proj.weight[:, dead] = 0
        masked.out_proj.bias[dead] = 0
        expected = masked(x, x, x)[0][..., 2:]
    tp.prune_multihead_attention_out_channels(mha, dead)
    assert (mha.embed_dim, mha.num_heads, mha.head_dim) == (6, 2, 3)
    with torch.no_grad():
        got = mha(x[..., 2:], x[..., 2:], x[..., 2:])[0]
    assert not torch.allclose(got, expected, atol=1e-3)


def test_torch_pruning_alone_breaks_uneven_grouped_removal():
    """Why blocks exist (Torch-Pruning #328): removing two channels of one group of a
    grouped conv's input straight through Torch-Pruning fails (or would compute something
    else); remove_channels never asks it to."""
    import torch_pruning as tp

    model = seeded(Grouped)
    x = image(size=5)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
    with pytest.raises(RuntimeError):
        dg.get_pruning_group(model.a, tp.prune_conv_out_channels, [0, 1]).prune()
        outputs(model, x)


def test_layernorm_and_groupnorm_follow():
    model = seeded(Norms)
    x = tokens()
    work, plan, _ = prune(model, {"fc1": 0.5, "conv": 0.5}, x)
    assert work.ln.normalized_shape == (8,) and work.conv.in_channels == 8
    assert work.gn.num_channels == 4 and plan.group_of("conv").blocks == 2
    assert outputs(work, x).shape == (2, 3)


def test_hand_written_attention_loses_whole_heads_and_its_head_count():
    model = seeded(Attention)
    x = tokens()
    # heads 1 and 2 contribute nothing: their q, k, v rows and o columns are zero
    dead = list(range(4, 12))
    with torch.no_grad():
        for lin in (model.attn.q, model.attn.k, model.attn.v):
            lin.weight[dead] = 0
            lin.bias[dead] = 0
        model.attn.o.weight[:, dead] = 0
    work, plan, result = prune(model, {"attn.q": 0.5}, x)
    group = plan.groups[0]
    assert group.unit == "heads" and (group.size, group.keep) == (4, 2)
    assert set(group.roots) == {"attn.q"} and {"attn.k", "attn.v", "attn.o"} <= set(group.layers)
    assert work.attn.num_heads == 2 and work.attn.head_dim == 4
    assert work.attn.q.out_features == 8 and work.attn.o.in_features == 8
    assert_same(outputs(work, x), outputs(model, x))
    assert row(result, "attn").detail == "heads 4 -> 2"


def test_attention_forward_that_ignores_num_heads_is_skipped():
    model = seeded(Attention, "constant")
    plan = plan_removal(model, {"attn.q": 0.5, "embed": 0.5}, ((tokens(),), {}))
    assert "does not follow its num_heads" in plan.skipped["attn.q"]
    assert "embed" in plan.coupled()


def test_attention_without_a_head_count_is_skipped():
    model = seeded(Attention, "no_attr")
    plan = plan_removal(model, {"attn.q": 0.5}, ((tokens(),), {}))
    assert "head-count attribute" in plan.skipped["attn.q"]


def test_multihead_attention_shrinks_evenly_per_head_and_keeps_what_it_computes():
    model = seeded(MHA)
    x = tokens()
    dim, heads = 16, 4
    # position 3 of every head (channels 3, 7, 11, 15) contributes nothing, in the model
    # width and inside the attention; what the other positions compute must not change,
    # including the softmax scale (head_dim 4 -> 3)
    dead = [3, 7, 11, 15]
    with torch.no_grad():
        model.embed.weight[dead] = 0
        model.embed.bias[dead] = 0
        rows = dead + [d + dim for d in dead] + [d + 2 * dim for d in dead]
        model.mha.in_proj_weight[rows] = 0
        model.mha.in_proj_weight[:, dead] = 0
        model.mha.in_proj_bias[rows] = 0
        model.mha.out_proj.weight[dead] = 0
        model.mha.out_proj.weight[:, dead] = 0
        model.mha.out_proj.bias[dead] = 0
        model.out.weight[:, dead] = 0
    work, plan, result = prune(model, {"mha": 4}, x)
    assert plan.groups[0].blocks == heads
    assert work.mha.num_heads == 4 and work.mha.embed_dim == 12 and work.mha.head_dim == 3
    assert work.embed.out_features == 12 and work.out.in_features == 12
    assert_same(outputs(work, x), outputs(model, x))
    assert row(result, "mha").detail == "heads 4, head_dim 4 -> 3"
    assert any("keeps its 4 heads" in note for note in result.notes)


def test_multihead_attention_out_proj_selected_means_its_attention():
    model = seeded(MHA)
    plan = plan_removal(model, {"mha.out_proj": 0.5}, ((tokens(),), {}))
    assert plan.groups[0].roots == ("mha.out_proj",)
    assert "mha" in plan.coupled() and "embed" in plan.coupled()


def test_a_removal_that_changes_what_the_model_computes_is_refused():
    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 8)
            self.b = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h - h.mean(1, keepdim=True))  # mixes channels: not tracked

    model = seeded(Mixer)
    x = torch.randn(3, 4)
    plan = plan_removal(model, {"a": 0.5}, ((x,), {}))
    with pytest.raises(UnsupportedError, match=r"computes something else.*removed safely"):
        run(copy.deepcopy(model), plan)


def test_a_channel_shuffle_is_refused_not_silently_wrong():
    class Shuffle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 4, 1)
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            n, c, height, width = h.shape
            h = h.view(n, 2, c // 2, height, width).transpose(1, 2).reshape(n, c, height, width)
            return self.out(self.b(h).mean((2, 3)))

    model = seeded(Shuffle)
    plan = plan_removal(model, {"a": 0.5}, ((image(),), {}))
    assert plan.groups[0].root == "a"  # the dependency graph sees an ordinary coupling
    with pytest.raises(UnsupportedError, match="after removing 4 channels of a the model computes"):
        run(copy.deepcopy(model), plan)


def test_a_forward_with_hard_coded_sizes_is_refused():
    class Hard(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 4 * 4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.c(x).view(-1, 8 * 4 * 4))

    model = seeded(Hard)
    plan = plan_removal(model, {"c": 0.5}, ((image(),), {}))
    with pytest.raises(UnsupportedError, match="of c the model no longer runs"):
        run(copy.deepcopy(model), plan)


# ----------------------------------------------------------------------------- benchmark models
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return models.CNN(widths=(8, 16, 16, 16)).eval()


def small_mobilenet() -> nn.Module:
    torch.manual_seed(0)
    return models.MobileNetV2(width=0.25, last=256).eval()


def small_bert(mha: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return models.Encoder(mha=mha, dim=32, num_heads=4, ffn=64, layers=2, vocab=64).eval()


# The benchmark models' architectures at test sizes, with an input batch of two.
SMALL = {
    "cnn": (small_cnn, lambda: models.example_input("cnn", 2)),
    "mobilenet": (small_mobilenet, lambda: models.example_input("mobilenet", 2)),
    "bert": (small_bert, lambda: models.example_input("bert", 2) % 64),
    "bert_mha": (lambda: small_bert(True), lambda: models.example_input("bert", 2) % 64),
}
KINDS = (nn.Linear, nn.Conv2d, nn.MultiheadAttention)


@pytest.mark.parametrize("name", list(SMALL))
def test_benchmark_architectures_halve_and_keep_output_shapes(name):
    build, example = SMALL[name]
    model = build()
    x = example()
    roots = {n: 0.5 for n, m in model.named_modules() if isinstance(m, KINDS)}
    work, plan, result = prune(model, roots, x[:1])
    assert outputs(work, x).shape == outputs(model, x).shape
    assert count(work) / count(model) < 0.35
    assert set(plan.skipped) <= {"classifier", "fc2"}
    changed = [r for r in result.layers if r.shape_after != r.shape_before]
    assert len(changed) > 5


def test_mobilenet_has_depthwise_and_skip_additions():
    model = models.mobilenet()
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) >= 50
    x = models.example_input("mobilenet")
    plan = plan_removal(model, {"features.3.conv.2": 0.5, "features.3.conv.0.0": 0.5}, ((x,), {}))
    # the projection of a block with a skip addition is coupled with its stage's others
    assert {"features.2.conv.2", "features.3.conv.2"} <= set(
        plan.group_of("features.3.conv.2").layers
    )
    # the expansion's channels go through the depthwise conv into the projection
    roles = {c.name: c.role for c in plan.group_of("features.3.conv.0.0").coupled}
    assert roles["features.3.conv.1.0"] == "depthwise channels"
    assert roles["features.3.conv.2"] == "input channels"


# ----------------------------------------------------------------------------- skips, refusals
def test_layer_whose_outputs_are_the_model_outputs_is_skipped():
    model = seeded(ConvBN)
    plan = plan_removal(model, {"out": 0.5, "fc": 0.5}, ((image(),), {}))
    assert plan.skipped["out"] == "its outputs are the model's outputs"
    assert [g.root for g in plan.groups] == ["fc"]
    only = plan_removal(model, {"out": 0.5}, ((image(),), {}))
    events, result = run(copy.deepcopy(model), only)
    assert events == [] and only.groups == ()
    out = row(result, "out")
    assert out.skipped == "its outputs are the model's outputs"
    assert out.shape_before == out.shape_after == (3, 12)


def test_residual_stream_that_is_the_output_is_skipped():
    class Stream(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.b(torch.relu(self.a(x)))

    plan = plan_removal(seeded(Stream), {"b": 0.5, "a": 0.5}, ((torch.randn(2, 4),), {}))
    assert "model's outputs" in plan.skipped["b"]
    assert plan.groups[0].root == "a"


def test_unsupported_layer_types_are_skipped_with_the_reason():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    plan = plan_removal(model, {"0": 0.5, "1": 0.5}, ((torch.tensor([[1, 2]]),), {}))
    assert "Embedding is not a layer whose channels can be removed" in plan.skipped["0"]


def test_untraceable_models_are_refused():
    class NoGrad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.fc(x)

    with pytest.raises(UnsupportedError, match="no output depends on its weights"):
        plan_removal(NoGrad(), {"fc": 0.5}, ((torch.randn(1, 3),), {}))
    with pytest.raises(UnsupportedError, match="cannot be traced on the example input"):
        plan_removal(seeded(ConvBN), {"fc": 0.5}, ((torch.randn(1, 5),), {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(UnsupportedError, match="TorchScript"):
        plan_removal(scripted, {"0": 0.5}, ((torch.randn(1, 3),), {}))


def test_amount_that_removes_every_channel_is_refused_naming_the_layer():
    model = seeded(ConvBN)
    with pytest.raises(RecipeError, match=r"r\.yaml: prune\[0\]\.amount: 8 .*all 8 .* conv1"):
        plan_removal(model, {"conv1": 8}, ((image(),), {}), sources={"conv1": "r.yaml: prune[0]"})
    with pytest.raises(RecipeError, match="all 6 output channels of conv2"):
        plan_removal(model, {"conv2": 0.95}, ((image(),), {}))
    with pytest.raises(RecipeError, match=r"amount: 1\.5 for conv1 is not in \[0, 1\)"):
        plan_removal(model, {"conv1": 1.5}, ((image(),), {}))
    with pytest.raises(RecipeError, match="no layer named 'nope'"):
        plan_removal(model, {"nope": 0.5}, ((image(),), {}))
    with pytest.raises(RecipeError, match="importance 'l3'"):
        plan_removal(model, {"conv1": 0.5}, ((image(),), {}), importance="l3")


def test_taylor_needs_data_and_uses_its_gradients():
    from core.data import Dataset

    model = seeded(ConvBN)
    x = image(8)
    plan = plan_removal(model, {"conv1": 0.5}, ((x[:1],), {}), importance="taylor")
    with pytest.raises(DataError, match="taylor needs data"):
        run(copy.deepcopy(model), plan)
    data = Dataset(x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), "train.npz")
    work = copy.deepcopy(model)
    run(work, plan, data=data)
    assert work.conv1.out_channels == 4
    assert all(p.requires_grad and p.grad is None for p in work.parameters())


# ----------------------------------------------------------------------------- amounts
def test_counts_round_to_and_blocks():
    model = seeded(ConvBN)
    assert plan_removal(model, {"conv1": 3}, ((image(),), {})).groups[0].keep == 5
    # keep 8 - round(0.6 * 8) = 3, rounded up to a multiple of 2
    plan = plan_removal(model, {"conv1": 0.6}, ((image(),), {}), round_to=2)
    assert plan.groups[0].keep == 4
    plan = plan_removal(model, {"conv1": 0.3}, ((image(),), {}), round_to=8)
    assert plan.groups[0].keep == 8  # a multiple of 8 keeps everything: nothing removed


def test_coupled_roots_share_one_group_with_the_smaller_amount():
    plan = plan_removal(seeded(Residual), {"stem": 0.25, "branch": 0.5}, ((image(size=6),), {}))
    assert plan.groups[0].roots == ("stem", "branch") and plan.groups[0].keep == 6


def test_global_scope_ranks_across_layers():
    model = seeded(ConvBN)
    weak = [0, 1, 2, 3, 4]  # five of conv2's six channels are far less important
    with torch.no_grad():
        model.conv2.weight[weak] *= 0.01
        model.bn2.weight[weak] *= 0.01
        for c in weak:
            model.fc.weight[:, c * 16 : (c + 1) * 16] *= 0.01
    x = image()
    roots = {"conv1": 0.5, "conv2": 0.5}
    local, _, _ = prune(model, roots, x)
    everywhere, plan, _ = prune(model, roots, x, scope="global")
    assert (local.conv1.out_channels, local.conv2.out_channels) == (4, 3)
    assert (everywhere.conv1.out_channels, everywhere.conv2.out_channels) == (6, 1)
    assert plan.scope == "global"


@pytest.mark.parametrize("importance", ["l1", "l2", "random"])
def test_importances_remove_the_planned_count(importance):
    work, _, _ = prune(seeded(ConvBN), {"conv1": 0.5}, image(), importance=importance)
    assert work.conv1.out_channels == 4


def test_l1_removes_the_smallest_channels():
    model = seeded(ConvBN)
    with torch.no_grad():
        model.conv1.weight[[2, 5]] *= 0.001
        model.bn1.weight[[2, 5]] *= 0.001
        model.conv2.weight[:, [2, 5]] *= 0.001
    work, _, _ = prune(model, {"conv1": 2}, image(), importance="l1")
    kept = [i for i in range(8) if i not in (2, 5)]
    assert torch.equal(work.conv1.weight, model.conv1.weight[kept])


# ----------------------------------------------------------------------------- engine shape
def test_progress_per_group_and_cancel_between_groups():
    model = seeded(ConvBN)
    plan = plan_removal(model, {"conv1": 0.5, "conv2": 0.5, "fc": 0.5}, ((image(),), {}))
    events, result = run(copy.deepcopy(model), plan)
    assert [(e.step, e.total, e.root) for e in events] == [
        (1, 3, "conv1"),
        (2, 3, "conv2"),
        (3, 3, "fc"),
    ]
    assert events[0].before == 8 and events[0].after == 4 and "conv1" in events[0].message
    assert {r.name for r in result.layers} >= {"conv1", "bn1", "conv2", "fc", "out"}
    calls = itertools.count()
    work = copy.deepcopy(model)
    gen = remove_channels(work, plan, should_stop=lambda: next(calls) > 3)
    with pytest.raises(Cancelled):
        list(gen)


def test_plan_and_removal_leave_the_original_alone():
    model = seeded(ConvBN)
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = plan_removal(model, {"conv1": 0.5, "conv2": 0.5}, ((image(),), {}))
    # a copy sharing the original's Parameter objects, as the engine makes without fine-tuning
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    work = copy.deepcopy(model, memo)
    run(work, plan)
    assert model.training and all(m.training for m in model.modules())
    assert all(not p.requires_grad for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert work.training  # the copy's mode is kept too
    assert all(not p.requires_grad for p in work.parameters())


# ----------------------------------------------------------------------------- saving
def save_and_rebuild(name: str, device: str) -> None:
    """Prune, save the state dict, rebuild the architecture (as --arch does) on ``device``,
    resize it from the JSON shapes record, load strictly, compare outputs."""
    build, example = SMALL[name]
    model = build()
    x = example()
    roots = {n: 0.5 for n, m in model.named_modules() if isinstance(m, KINDS)}
    work, _, _ = prune(model, roots, x[:1])
    shapes = json.loads(json.dumps(shapes_of(work, build())))
    buf = io.BytesIO()
    torch.save(work.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    with torch.device(device):
        fresh = build()
    apply_shapes(fresh, shapes)
    fresh.load_state_dict(state, strict=True, assign=device == "meta")
    assert not any(t.is_meta for t in itertools.chain(fresh.parameters(), fresh.buffers()))
    assert torch.equal(outputs(fresh.eval(), x), outputs(work, x))


@pytest.mark.parametrize("name", ["cnn", "bert", "bert_mha"])
def test_state_dict_and_shapes_round_trip_on_cpu(name):
    save_and_rebuild(name, "cpu")


@pytest.mark.parametrize("name", ["mobilenet", "bert_mha"])
def test_state_dict_and_shapes_round_trip_on_meta(name):
    save_and_rebuild(name, "meta")


def test_shapes_record_only_what_changed():
    model = seeded(Attention)
    work, _, _ = prune(model, {"attn.q": 0.5}, tokens())
    shapes = shapes_of(work, seeded(Attention))
    assert set(shapes["modules"]) == {"attn", "attn.q", "attn.k", "attn.v", "attn.o"}
    assert shapes["modules"]["attn"]["attributes"] == {"num_heads": 2}
    assert shapes["modules"]["attn.o"]["tensors"] == {"weight": [16, 8], "bias": [16]}


def test_apply_shapes_refuses_a_record_that_does_not_fit():
    shapes = {"shapes_version": 1, "modules": {"fc9": {"type": "Linear", "tensors": {}}}}
    with pytest.raises(ModelLoadError, match=r"out\.secateur\.json: names layer 'fc9'"):
        apply_shapes(seeded(ConvBN), shapes, source="out.secateur.json")
    shapes = {"shapes_version": 1, "modules": {"fc": {"type": "Conv2d"}}}
    with pytest.raises(
        ModelLoadError, match="fc was a Conv2d but the architecture builds a Linear"
    ):
        apply_shapes(seeded(ConvBN), shapes)
    with pytest.raises(ModelLoadError, match="shapes_version 7"):
        apply_shapes(seeded(ConvBN), {"shapes_version": 7})

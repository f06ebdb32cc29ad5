"""Models for the structural-pruning benchmark and tests, built by hand (no downloads).

Each builder takes no argument, is seeded, returns the model in eval mode, and works as
``--arch benchmarks.models:NAME``; ``example_input(NAME)`` gives a matching input batch.

- ``cnn``: a VGG-style CNN with BatchNorm whose last feature map is flattened into a Linear.
- ``mobilenet``: a MobileNetV2-style stack (52 Conv2d layers): inverted residual blocks with
  depthwise convolutions and skip additions.
- ``bert``: a small BERT-like encoder with hand-written attention (nn.Linear q, k, v, o and
  ``num_heads``/``head_dim`` attributes that its forward reads).
- ``bert_mha``: the same encoder with nn.MultiheadAttention.

All are small enough to run on a CPU in a few milliseconds at batch 1 on one thread, and big
enough that the latency is the model's, not Python's.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 1000
SEQ_LEN = 32
CLASSES = 10


def _seeded_stats(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, as a trained network has."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval()


# ----------------------------------------------------------------------------- (a) CNN
class CNN(nn.Module):
    """Conv-BN-ReLU stages on 3x32x32 inputs; the 4x4 map is flattened into ``fc1``."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 256), classes: int = CLASSES):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)]
            layers.append(nn.ReLU())
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            cin = width
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(cin * 4 * 4, 256)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(torch.flatten(self.features(x), 1))))


def cnn() -> CNN:
    """(a) A CNN with BatchNorm, flatten into Linear: 2.0M parameters."""
    torch.manual_seed(0)
    return _seeded_stats(CNN())


# ----------------------------------------------------------------------------- (b) MobileNetV2
def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, 1x1 projection; a skip addition when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_skip else y


class MobileNetV2(nn.Module):
    """MobileNetV2's layout (torchvision's settings) for 3x64x64 inputs: 52 Conv2d layers;
    ``width`` scales every channel count (1.0 is MobileNetV2 1.0)."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
    SETTINGS += ((6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, classes: int = CLASSES, last: int = 1280, width: float = 1.0) -> None:
        super().__init__()
        cin = max(8, int(32 * width))
        last = max(8, int(last * width))
        blocks: list[nn.Module] = [_conv_bn(3, cin, 3, 2)]
        for expand, cout, repeats, stride in self.SETTINGS:
            cout = max(8, int(cout * width))
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        blocks.append(_conv_bn(cin, last, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet() -> MobileNetV2:
    """(b) A MobileNetV2-style stack with depthwise convolutions and skip additions: 2.2M
    parameters, 52 Conv2d layers."""
    torch.manual_seed(0)
    return _seeded_stats(MobileNetV2())


# ----------------------------------------------------------------------------- (c), (d) BERT
class SelfAttention(nn.Module):
    """Multi-head self-attention written by hand; the forward reads ``num_heads`` and
    ``head_dim``, so both must describe the weights after heads are removed."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        shape = (b, t, self.num_heads, self.head_dim)
        q = self.q(x).view(shape).transpose(1, 2)
        k = self.k(x).view(shape).transpose(1, 2)
        v = self.v(x).view(shape).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
        return self.o(out)


class MHAttention(nn.Module):
    """nn.MultiheadAttention as a self-attention block."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class EncoderLayer(nn.Module):
    """Post-LayerNorm transformer layer, as in BERT."""

    def __init__(self, dim: int, num_heads: int, ffn: int, mha: bool) -> None:
        super().__init__()
        self.attn = MHAttention(dim, num_heads) if mha else SelfAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(ffn, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.fc2(self.act(self.fc1(x))))


class Encoder(nn.Module):
    """Token and position embeddings, encoder layers, a classifier on the first token."""

    def __init__(
        self,
        mha: bool = False,
        dim: int = 256,
        num_heads: int = 8,
        ffn: int = 1024,
        layers: int = 4,
        vocab: int = VOCAB,
        max_len: int = SEQ_LEN,
        classes: int = CLASSES,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn, mha) for _ in range(layers))
        self.classifier = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.tokens(ids) + self.positions(positions)
        x = self.norm(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x[:, 0])


def bert() -> Encoder:
    """(c) A BERT-like encoder with hand-written q/k/v attention: 3.4M parameters."""
    torch.manual_seed(0)
    return Encoder(mha=False).eval()


def bert_mha() -> Encoder:
    """(d) The same encoder with nn.MultiheadAttention."""
    torch.manual_seed(0)
    return Encoder(mha=True).eval()


# ----------------------------------------------------------------------------- inputs
BUILDERS = {"cnn": cnn, "mobilenet": mobilenet, "bert": bert, "bert_mha": bert_mha}


def example_input(name: str, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded input batch for the model built by ``BUILDERS[name]``."""
    gen = torch.Generator().manual_seed(seed)
    if name == "cnn":
        return torch.randn(batch, 3, 32, 32, generator=gen)
    if name == "mobilenet":
        return torch.randn(batch, 3, 64, 64, generator=gen)
    if name in ("bert", "bert_mha"):
        return torch.randint(0, VOCAB, (batch, SEQ_LEN), generator=gen)
    raise KeyError(f"benchmarks.models: no model named {name!r} (one of {', '.join(BUILDERS)})")

"""The bundled demo models: a small CNN and a transformer for scikit-learn's 8x8 digits.

Secateur ships one trained model so that the app (and its tests) can show a full
compress-and-measure round trip without the user supplying anything. The digits data set is
tiny, so training takes seconds on a CPU (see ``scripts/train_demo.py``), yet the network is
deliberately over-parameterized (most weights sit in ``fc1``) so that pruning and quantization
visibly shrink it while accuracy barely moves, which is the story the demo is meant to tell.

The transformer (``DigitsTransformer``) is the demo with attention: most of its weights sit
in 24 Linear layers, for per-layer quantization plans and for pruning heads. Where the files
live and which demos exist is ``core.demos`` (no torch needed to list them).
"""

from __future__ import annotations

import math

import torch
from safetensors.torch import load_file
from torch import nn

from core.demos import WEIGHTS_PATH


class DigitsCNN(nn.Module):
    """A small convolutional classifier for 8x8 grey-scale digit images.

    Input is float32 of shape (N, 1, 8, 8) with pixel values divided by 16 (the raw digits
    data is 0-16), so in [0, 1]. Output is (N, 10) unnormalized logits, one per digit.

    Layout: conv1 (1->32, 3x3) -> bn1 -> ReLU -> conv2 (32->32, 3x3) -> ReLU -> 2x2 max-pool
    -> flatten (32*4*4 = 512) -> fc1 (512->256) -> ReLU -> dropout(0.2) -> fc2 (256->10);
    143,530 parameters, 91% of them in fc1.

    conv1 is 32 channels wide rather than 16 on purpose: with only 16 filters (144 weights)
    the first layer became the bottleneck under 50% magnitude pruning, and the accuracy after
    pruning depended on the training seed (as low as 85%); at 32 filters it stayed at 97-98%,
    within about one point of the unpruned model, over every seed tried, so the demo's
    "prune half, lose almost nothing" result does not hinge on a lucky seed.
    Every submodule is a named attribute so layer names in reports read ``conv1``, ``fc1``...
    rather than ``features.0``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, 256)
        self.relu3 = nn.ReLU()
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (N, 1, 8, 8) batch of images to (N, 10) logits."""
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.drop(self.relu3(self.fc1(x)))
        return self.fc2(x)


def build_model() -> DigitsCNN:
    """Return a freshly initialized (untrained) ``DigitsCNN`` in eval mode.

    This is the architecture factory: it can be passed as ``--arch core.demo:build_model`` so a
    bare state dict (such as the shipped safetensors file) can be loaded into it.
    """
    return DigitsCNN().eval()


def load_demo_model() -> DigitsCNN:
    """Return the shipped, trained demo model in eval mode.

    Weights are read from ``WEIGHTS_PATH`` with safetensors (no pickle, so nothing executes on
    load) and loaded strictly, so a mismatch between the file and the architecture fails loudly
    instead of leaving layers silently untrained.
    """
    model = build_model()
    model.load_state_dict(load_file(str(WEIGHTS_PATH)), strict=True)
    return model.eval()


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: q, k, v and out projections as nn.Linear, so
    each shows in the layer tree and can be quantized or pruned on its own. ``num_heads`` and
    ``head_dim`` describe the projections (structural pruning of heads updates them)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape

        def heads(proj: nn.Linear) -> torch.Tensor:
            return proj(x).view(n, t, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q), heads(self.k), heads(self.v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        mixed = scores.softmax(dim=-1) @ v
        return self.out(mixed.transpose(1, 2).reshape(n, t, self.num_heads * self.head_dim))


class EncoderLayer(nn.Module):
    """A pre-norm transformer encoder layer: attention and a feed-forward block, each added
    back to its input."""

    def __init__(self, dim: int, num_heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.down = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))
        return x + self.drop(self.down(self.act(self.up(self.norm2(x)))))


class DigitsTransformer(nn.Module):
    """A small transformer encoder for 8x8 digits: each image row is a token.

    Input (N, 1, 8, 8) as for ``DigitsCNN``; the 8 rows become 8 tokens of 8 pixels, embedded
    to 256 features with a learned position embedding, then 4 encoder layers (8 heads of 32,
    feed-forward 1024), a final LayerNorm, the mean over tokens and a linear classifier to
    (N, 10) logits. 3.2M parameters, almost all in the 24 Linear layers of the encoder: the
    demo for per-layer quantization plans and for pruning attention heads.
    """

    DIM, HEADS, HIDDEN, LAYERS, TOKENS = 256, 8, 1024, 4, 8

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Linear(8, self.DIM)
        self.position = nn.Parameter(torch.zeros(1, self.TOKENS, self.DIM))
        self.encoder = nn.ModuleList(
            EncoderLayer(self.DIM, self.HEADS, self.HIDDEN, dropout) for _ in range(self.LAYERS)
        )
        self.norm = nn.LayerNorm(self.DIM)
        self.head = nn.Linear(self.DIM, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (N, 1, 8, 8) batch of images to (N, 10) logits."""
        tokens = self.embed(x.flatten(1, 2)) + self.position
        for layer in self.encoder:
            tokens = layer(tokens)
        return self.head(self.norm(tokens).mean(dim=1))


def build_transformer() -> DigitsTransformer:
    """A freshly initialized ``DigitsTransformer`` in eval mode (``--arch`` for its file)."""
    return DigitsTransformer().eval()

"""The bundled demo model: a small CNN for scikit-learn's 8x8 hand-written digits.

Secateur ships one trained model so that the app (and its tests) can show a full
compress-and-measure round trip without the user supplying anything. The digits data set is
tiny, so training takes seconds on a CPU (see ``scripts/train_demo.py``), yet the network is
deliberately over-parameterized (most weights sit in ``fc1``) so that pruning and quantization
visibly shrink it while accuracy barely moves, which is the story the demo is meant to tell.

This module imports only torch, safetensors, the standard library and the data package
``resources`` (found with importlib.resources, so the demo works from a source checkout, an
installed wheel and the desktop bundle alike): ``core`` must never depend on Qt.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import nn

import resources

RESOURCES_DIR = resources.path()
"""Directory of the data files shipped with Secateur (the ``resources`` package)."""
DEMO_DIR = RESOURCES_DIR / "demo"
"""Directory holding the demo model's weights and its train/test data."""
WEIGHTS_PATH = DEMO_DIR / "digits_cnn.safetensors"
"""Trained ``DigitsCNN`` state dict, written by ``scripts/train_demo.py``."""
TRAIN_DATA_PATH = DEMO_DIR / "digits_train.npz"
"""Training split: ``x`` float32 (N, 1, 8, 8) scaled to [0, 1], ``y`` int64 labels 0-9."""
TEST_DATA_PATH = DEMO_DIR / "digits_test.npz"
"""Held-out test split, same layout as the training split; used to measure accuracy."""
DEMO_RECIPE_PATH = RESOURCES_DIR / "recipes" / "demo.yaml"
"""The compression recipe the demo applies by default."""
INPUT_SHAPE = (1, 1, 8, 8)
"""Shape of one example input batch: (batch, channels, height, width)."""


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

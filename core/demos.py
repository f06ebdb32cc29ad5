"""The bundled demos and where their files live, without importing torch.

Each demo is a registry entry: its name (``--demo NAME``), label and tooltip (the window's
Open Demo menu), the ``--arch`` spec that builds it (``core.demo``), its trained weights and
the recipe it opens with. Every demo measures on the digits test split and fine-tunes on the
training split. The command line lists the names from here, so ``secateur --help`` needs no
torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import resources
from core.registry import Registry

RESOURCES_DIR = resources.path()
"""Directory of the data files shipped with Secateur: the ``resources`` package, found with
importlib.resources, so the demos work from a source checkout, an installed wheel and the
desktop bundle alike."""
DEMO_DIR = RESOURCES_DIR / "demo"
"""Directory holding the demo models' weights and their train/test data."""
WEIGHTS_PATH = DEMO_DIR / "digits_cnn.safetensors"
"""Trained ``DigitsCNN`` state dict, written by ``scripts/train_demo.py``."""
TRANSFORMER_WEIGHTS_PATH = DEMO_DIR / "digits_transformer.safetensors"
"""Trained ``DigitsTransformer`` state dict, written by ``scripts/train_demo.py``."""
TRAIN_DATA_PATH = DEMO_DIR / "digits_train.npz"
"""Training split: ``x`` float32 (N, 1, 8, 8) scaled to [0, 1], ``y`` int64 labels 0-9."""
TEST_DATA_PATH = DEMO_DIR / "digits_test.npz"
"""Held-out test split, same layout as the training split; used to measure accuracy."""
DEMO_RECIPE_PATH = RESOURCES_DIR / "recipes" / "demo.yaml"
"""The compression recipe the CNN demo applies by default."""
TRANSFORMER_RECIPE_PATH = RESOURCES_DIR / "recipes" / "demo-transformer.yaml"
"""The compression recipe the transformer demo applies by default."""
INPUT_SHAPE = (1, 1, 8, 8)
"""Shape of one example input batch: (batch, channels, height, width)."""


@dataclass(frozen=True)
class Demo:
    """A bundled model: what builds it, its trained weights and the recipe it opens with."""

    name: str
    label: str
    tooltip: str
    arch: str  # the --arch spec that builds it (a callable in core.demo)
    weights: Path
    recipe: Path


DEMOS: Registry[Demo] = Registry(
    "demo",
    [
        Demo(
            "digits_cnn",
            "Digits CNN",
            "A small CNN for 8x8 digits (143,530 parameters, 91% in one Linear layer)",
            "core.demo:build_model",
            WEIGHTS_PATH,
            DEMO_RECIPE_PATH,
        ),
        Demo(
            "digits_transformer",
            "Digits transformer",
            "A transformer encoder for 8x8 digits, rows as tokens (3.2M parameters, attention)",
            "core.demo:build_transformer",
            TRANSFORMER_WEIGHTS_PATH,
            TRANSFORMER_RECIPE_PATH,
        ),
    ],
)
DEFAULT_DEMO = "digits_cnn"

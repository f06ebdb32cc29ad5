"""Train the bundled demo model and write it, with its data split, to resources/demo/.

Run from anywhere with ``python scripts/train_demo.py [cnn|transformer]`` (or ``make
demo-model`` for both). The script is seeded and runs single-threaded with deterministic
algorithms, so a rerun on the same torch build reproduces the same weights. It needs
scikit-learn (a test extra), which the app itself does not: the app only reads the files this
script writes.

Outputs (paths from ``core.demo``):
  * ``digits_cnn.safetensors``: the trained ``DigitsCNN`` state dict.
  * ``digits_transformer.safetensors``: the trained ``DigitsTransformer`` state dict.
  * ``digits_train.npz`` / ``digits_test.npz``: the split, keys ``x`` (float32, N x 1 x 8 x 8,
    scaled to [0, 1]) and ``y`` (int64 labels).

After training the CNN it checks the property the demo relies on: pruning half of every
Conv2d/Linear weight by magnitude keeps test accuracy at or above 95%.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.utils import prune

# Make ``core`` importable when run as ``python scripts/train_demo.py`` without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.demo import DigitsCNN, DigitsTransformer, build_model
from core.demos import (
    DEMO_DIR,
    TEST_DATA_PATH,
    TRAIN_DATA_PATH,
    TRANSFORMER_WEIGHTS_PATH,
    WEIGHTS_PATH,
)

SEED = 0
EPOCHS = 30
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
TARGET_ACCURACY = 0.97
MIN_ACCURACY = 0.95
PRUNED_MIN_ACCURACY = 0.95


def seed_everything(seed: int) -> None:
    """Seed every RNG in play and force deterministic, single-threaded kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``x_train, x_test, y_train, y_test`` from a stratified 75/25 split of digits."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return (
        np.ascontiguousarray(x_train),
        np.ascontiguousarray(x_test),
        np.ascontiguousarray(y_train),
        np.ascontiguousarray(y_test),
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` (switched to eval mode) classifies as ``y``."""
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = EPOCHS,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Train ``model`` in place with cross-entropy (Adam unless an optimizer is given),
    printing the mean loss per epoch."""
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    n = x.shape[0]
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total += loss.item() * idx.numel()
        print(f"epoch {epoch:2d}/{epochs}  loss {total / n:.4f}")


TRANSFORMER_EPOCHS = 60
TRANSFORMER_LR = 5e-4


def train_transformer(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor
) -> int:
    """Train the transformer demo (AdamW, one-cycle schedule) and write its weights."""
    seed_everything(SEED)
    model = DigitsTransformer()
    print(f"DigitsTransformer: {sum(p.numel() for p in model.parameters()):,} parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRANSFORMER_LR, weight_decay=0.05)
    steps = TRANSFORMER_EPOCHS * -(-x_train.shape[0] // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, TRANSFORMER_LR, total_steps=steps)
    train(model, x_train, y_train, TRANSFORMER_EPOCHS, optimizer, schedule)
    test_acc = accuracy(model, x_test, y_test)
    print(f"transformer test accuracy: {test_acc:.4f}")
    if test_acc < MIN_ACCURACY:
        print(f"error: below the {MIN_ACCURACY:.0%} minimum; nothing written", file=sys.stderr)
        return 1
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(TRANSFORMER_WEIGHTS_PATH))
    print(f"wrote {TRANSFORMER_WEIGHTS_PATH} ({TRANSFORMER_WEIGHTS_PATH.stat().st_size:,} bytes)")
    return 0


def pruned_accuracy(
    state: dict[str, torch.Tensor], amount: float, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Accuracy after L1-unstructured pruning of ``amount`` of each Conv2d/Linear weight."""
    model = build_model()
    model.load_state_dict(state, strict=True)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            prune.l1_unstructured(module, name="weight", amount=amount)
            prune.remove(module, "weight")
    return accuracy(model, x, y)


def main(argv: list[str]) -> int:
    """Train, verify and write the demo artefacts; return a process exit code."""
    which = argv[0] if argv else "all"
    if which not in ("all", "cnn", "transformer"):
        print(f"usage: train_demo.py [cnn|transformer] (got {which!r})", file=sys.stderr)
        return 2
    seed_everything(SEED)
    x_train, x_test, y_train, y_test = load_split()
    print(f"train {len(y_train)} / test {len(y_test)} examples")

    xt_train, yt_train = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xt_test, yt_test = torch.from_numpy(x_test), torch.from_numpy(y_test)
    if which == "transformer":
        return train_transformer(xt_train, yt_train, xt_test, yt_test)

    model = DigitsCNN()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"DigitsCNN: {n_params:,} parameters")
    train(model, xt_train, yt_train)

    test_acc = accuracy(model, xt_test, yt_test)
    print(f"test accuracy: {test_acc:.4f}")
    if test_acc < TARGET_ACCURACY:
        print(f"warning: below the {TARGET_ACCURACY:.0%} target")
    if test_acc < MIN_ACCURACY:
        print(f"error: below the {MIN_ACCURACY:.0%} minimum; nothing written", file=sys.stderr)
        return 1

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    acc50 = pruned_accuracy(state, 0.5, xt_test, yt_test)
    acc80 = pruned_accuracy(state, 0.8, xt_test, yt_test)
    print(f"test accuracy after 50% L1 pruning of Conv2d/Linear: {acc50:.4f}")
    print(f"test accuracy after 80% L1 pruning of Conv2d/Linear: {acc80:.4f} (informative)")
    if acc50 < PRUNED_MIN_ACCURACY:
        print(
            f"error: 50% pruning drops accuracy below {PRUNED_MIN_ACCURACY:.0%}; nothing written",
            file=sys.stderr,
        )
        return 1

    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    save_file(state, str(WEIGHTS_PATH))
    np.savez_compressed(TRAIN_DATA_PATH, x=x_train, y=y_train)
    np.savez_compressed(TEST_DATA_PATH, x=x_test, y=y_test)
    for path in (WEIGHTS_PATH, TRAIN_DATA_PATH, TEST_DATA_PATH):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if which == "all":
        return train_transformer(xt_train, yt_train, xt_test, yt_test)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Recovery fine-tuning after pruning, with the pruning masks held so pruned weights stay zero.

Cross-entropy when the training data has labels; otherwise distillation to the original
model's outputs (MSE on every output tensor). Evaluation data is never trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from core.data import Dataset
from core.errors import Cancelled, DataError
from core.metrics import call, flatten_outputs
from core.recipe import Finetune


def finetune(
    model: nn.Module,
    teacher: nn.Module,
    data: Dataset,
    config: Finetune,
    should_stop: Callable[[], bool],
    seed: int = 0,
) -> Iterator[tuple[int, float]]:
    """Train ``model`` in place; yields (epoch, mean loss) after each epoch."""
    loss_kind = config.loss
    if loss_kind == "auto":
        loss_kind = "cross_entropy" if data.y is not None else "distillation"
    if loss_kind == "cross_entropy" and data.y is None:
        raise DataError(f"{data.source}: finetune.loss cross_entropy needs labels (y)")
    params = [p for p in model.parameters() if p.is_floating_point()]
    if not params:
        raise DataError("finetune: the model has no floating-point parameters to train")
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(data)
    model.train()
    try:
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(n, generator=gen)
            total, count = 0.0, 0
            for start in range(0, n, config.batch_size):
                if should_stop():
                    raise Cancelled()
                idx = order[start : start + config.batch_size]
                args, kwargs, y = _take(data, idx)
                with torch.enable_grad():
                    out = call(model, args, kwargs)
                    if loss_kind == "cross_entropy":
                        loss = nn.functional.cross_entropy(flatten_outputs(out)[0], y)
                    else:
                        with torch.no_grad():
                            target = flatten_outputs(call(teacher, args, kwargs))
                        loss = sum(
                            nn.functional.mse_loss(a.float(), b.float())
                            for a, b in zip(flatten_outputs(out), target)
                        )
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            yield epoch, total / max(count, 1)
    finally:
        model.eval()
        for p in params:
            p.requires_grad_(False)


def _take(data: Dataset, idx: torch.Tensor) -> tuple[tuple, dict, torch.Tensor | None]:
    y = None if data.y is None else data.y[idx]
    x = data.x
    if isinstance(x, torch.Tensor):
        return (x[idx],), {}, y
    if isinstance(x, tuple):
        return tuple(t[idx] for t in x), {}, y
    return (), {k: t[idx] for k, t in x.items()}, y

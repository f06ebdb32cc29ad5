"""Engine overhead: Secateur's prune + quantize vs the bare torch calls doing the same work.

Both sides start from the same float model and end with an equal compressed copy:
deepcopy, l1_unstructured on every Linear, prune.remove, torchao int8 dynamic quantize_.
The engine also takes its before/after size and sparsity measurements (--skip-metrics),
which is what a user gets from ``secateur compress --skip-metrics``. Runs alternate
(bare, engine, bare, engine, ...) and the ratio of medians is reported, so machine noise
hits both sides alike.

    python benchmarks/overhead.py [--params 50e6] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.nn.utils import prune

from core import compat
from core.engine import compress, run
from core.loading import LoadedModel
from core.recipe import parse_recipe

RECIPE = """
version: 1
prune: [{types: [Linear], method: l1_unstructured, amount: 0.5}]
quantize: {scheme: int8_dynamic, backend: torchao, granularity: per_channel, types: [Linear]}
"""


def linear_stack(params: float, layers: int = 6) -> nn.Module:
    width = int((params / layers) ** 0.5)
    torch.manual_seed(0)
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods).eval()


def bare(model: nn.Module) -> nn.Module:
    ao = compat.torchao()
    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, nn.Linear):
            prune.l1_unstructured(m, "weight", amount=0.5)
            prune.remove(m, "weight")
    with compat.quiet():
        ao.quantize_(out, ao.Int8DynamicActivationInt8WeightConfig(granularity=ao.PerRow()))
    return out


def engine(model: nn.Module) -> nn.Module:
    # Cold, as on the command line: the "before" measurements are not reused across runs.
    from core.metrics import _STATS_CACHE

    _STATS_CACHE.clear()
    loaded = LoadedModel(model, "bench", "pickle")
    return run(compress(loaded, parse_recipe(RECIPE, "bench"), skip_metrics=True)).model


def measure(model: nn.Module, repeats: int) -> dict[str, float]:
    bare(model), engine(model)  # warm-up: imports, allocator
    times: dict[str, list[float]] = {"bare": [], "engine": []}
    for _ in range(repeats):
        for name, func in (("bare", bare), ("engine", engine)):
            t0 = time.perf_counter()
            out = func(model)
            times[name].append(time.perf_counter() - t0)
            del out
    b, e = statistics.median(times["bare"]), statistics.median(times["engine"])
    return {"bare_s": b, "engine_s": e, "ratio": e / b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=50e6)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = linear_stack(args.params)
    n = sum(p.numel() for p in model.parameters())
    r = measure(model, args.repeats)
    print(
        f"{n / 1e6:.1f}M-parameter Linear stack, threads={torch.get_num_threads()}: "
        f"bare torch {r['bare_s']:.3f} s, engine {r['engine_s']:.3f} s, "
        f"ratio {r['ratio']:.3f} (median of {args.repeats}, alternating)"
    )


if __name__ == "__main__":
    main()

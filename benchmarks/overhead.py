"""Figure 1, engine overhead: Secateur's prune + quantize vs the bare torch calls doing the
same work, on the demo, a ~50M-parameter Linear stack and a ResNet-like conv net.

All sides start from the same float model and end with an equal compressed copy: deepcopy,
L1-unstructured pruning at 50% of every Conv2d/Linear, prune.remove, torchao int8 dynamic
quantize_ (per channel) of every Linear. The engine also takes its before/after size and
sparsity measurements (``skip_metrics=True``), which is what ``secateur compress
--skip-metrics`` does. Three sides alternate and the ratio of medians is reported:

- bare torch: ``torch.nn.utils.prune.l1_unstructured`` (what a user would write);
- bare, same selection: the same masks found the way the engine finds them (kthvalue
  threshold + ``prune.custom_from_mask``), so engine / this isolates the engine's own
  bookkeeping (copy, plan, measurements, events) from its faster selection.

    python benchmarks/overhead.py [--params 50e6] [--repeats 5]
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from benchmarks.common import Figure, Target, alternate, conv_net, linear_stack, median, parameters
from core import compat
from core.engine import compress, run
from core.loading import LoadedModel, load_demo
from core.recipe import parse_recipe

RECIPE = """
version: 1
prune: [{{types: [{types}], method: l1_unstructured, amount: 0.5}}]
quantize: {{scheme: int8_dynamic, backend: torchao, granularity: per_channel, types: [Linear]}}
"""
TARGET = 1.10


def _prunable(model: nn.Module, types: tuple[type, ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, types)]


def _quantize(model: nn.Module) -> None:
    ao = compat.torchao()
    with compat.quiet():
        ao.quantize_(model, ao.Int8DynamicActivationInt8WeightConfig(granularity=ao.PerRow()))


def bare(model: nn.Module, types: tuple[type, ...] = (nn.Linear,)) -> nn.Module:
    """What a user writes with torch alone."""
    out = copy.deepcopy(model)
    for m in _prunable(out, types):
        prune.l1_unstructured(m, "weight", amount=0.5)
        prune.remove(m, "weight")
    _quantize(out)
    return out


def bare_same_selection(model: nn.Module, types: tuple[type, ...] = (nn.Linear,)) -> nn.Module:
    """The same masks, selected with a kthvalue threshold as the engine does."""
    out = copy.deepcopy(model)
    for m in _prunable(out, types):
        w = m.weight.detach()
        flat = w.abs().flatten()
        k = prune._compute_nparams_toprune(0.5, flat.numel())
        keep = torch.ones_like(flat, dtype=torch.bool)
        if k:
            threshold = torch.kthvalue(flat, k).values
            below = flat < threshold
            keep &= ~below
            missing = k - int(below.sum())
            if missing > 0:
                keep[torch.nonzero(flat == threshold).flatten()[:missing]] = False
        prune.custom_from_mask(m, "weight", keep.view_as(w).to(w.dtype))
        prune.remove(m, "weight")
    _quantize(out)
    return out


def engine(model: nn.Module, types: tuple[type, ...] = (nn.Linear,)) -> nn.Module:
    """Secateur's engine, cold as on the command line (no cached "before" numbers)."""
    from core import metrics

    cache = getattr(metrics, "_STATS_CACHE", None)
    if cache is not None:
        cache.clear()
    recipe = parse_recipe(RECIPE.format(types=", ".join(t.__name__ for t in types)), "bench")
    loaded = LoadedModel(model, "bench", "pickle")
    return run(compress(loaded, recipe, skip_metrics=True)).model


def engine_fused(model: nn.Module, types: tuple[type, ...] = (nn.Linear,)) -> nn.Module:
    """The engine with the proposed fused L1 pruning (benchmarks/proposals.py) patched in."""
    from benchmarks import proposals

    with proposals.patched(["fused"]):
        return engine(model, types)


def measure(
    model: nn.Module, types: tuple[type, ...], repeats: int, warmup: int = 1
) -> dict[str, float]:
    sides: dict[str, Callable[[], nn.Module]] = {
        "bare": lambda: bare(model, types),
        "same": lambda: bare_same_selection(model, types),
        "engine": lambda: engine(model, types),
        "fused": lambda: engine_fused(model, types),
    }
    times = alternate(sides, repeats, warmup)
    b, s, e, f = (median(times[k]) for k in ("bare", "same", "engine", "fused"))
    return {
        "bare_s": b,
        "same_s": s,
        "engine_s": e,
        "fused_s": f,
        "ratio": e / b,
        "ratio_same": e / s,
        "ratio_fused": f / b,
    }


def cases(tiny: bool) -> list[tuple[str, nn.Module, tuple[type, ...], int]]:
    """(name, model, pruned types, repeats): small models get more rounds, since a round
    of theirs lasts milliseconds and one busy time slice on this shared machine moves it."""
    demo = load_demo()[0].model
    if tiny:
        stack = linear_stack(60e3)
        conv = conv_net(widths=(8, 16), blocks=1)
    else:
        stack = linear_stack(50e6)
        conv = conv_net()
    return [
        ("demo digits CNN", demo, (nn.Conv2d, nn.Linear), 1 if tiny else 31),
        ("Linear stack (6 layers)", stack, (nn.Linear,), 1 if tiny else 5),
        ("ResNet-like conv net", conv, (nn.Conv2d, nn.Linear), 1 if tiny else 15),
    ]


def figures(tiny: bool = False, repeats: int | None = None) -> list[Figure]:
    fig = Figure(
        key="overhead",
        title="1. Overhead: engine vs bare torch calls",
        columns=[
            "model",
            "parameters",
            "bare torch (s)",
            "bare, same selection (s)",
            "engine (s)",
            "engine / bare torch",
            "engine / same selection",
            f"target <= {TARGET:.2f}",
            "proposal: fused L1 / bare torch",
        ],
        ratios=[
            "engine / bare torch",
            "engine / same selection",
            "proposal: fused L1 / bare torch",
        ],
        formats={"bare torch (s)": ".3f", "bare, same selection (s)": ".3f", "engine (s)": ".3f"},
        intro=(
            "Each side copies the model, prunes 50% of every Conv2d/Linear weight by L1 "
            "magnitude, folds the masks and applies torchao int8 dynamic quantization "
            "(per channel) to every Linear. *Bare torch* uses `prune.l1_unstructured`; "
            "*bare, same selection* finds the same masks with a kthvalue threshold as the "
            "engine does, so the last ratio is the engine's own bookkeeping (plan, "
            "size/sparsity before and after, progress events). The engine runs with "
            "`skip_metrics=True` and no cached numbers (as `secateur compress --skip-metrics`). "
            f"torch at {torch.get_num_threads()} thread(s). "
            "Sides alternate; times are medians. The last column is the engine with the "
            "proposed fused L1 pruning patched in (`benchmarks/proposals.py`; not in core)."
        ),
    )
    counts = []
    for name, model, types, default_reps in cases(tiny):
        reps = repeats if repeats is not None else default_reps
        counts.append(f"{name} {reps}")
        r = measure(model, types, reps, warmup=0 if tiny else 1)
        fig.add(
            **{
                "model": name,
                "parameters": parameters(model),
                "bare torch (s)": r["bare_s"],
                "bare, same selection (s)": r["same_s"],
                "engine (s)": r["engine_s"],
                "engine / bare torch": r["ratio"],
                "engine / same selection": r["ratio_same"],
                f"target <= {TARGET:.2f}": "holds" if r["ratio"] <= TARGET else "MISSED",
                "proposal: fused L1 / bare torch": r["ratio_fused"],
            }
        )
    fig.notes.append(
        "medians of alternating rounds per side, after one warm-up round; rounds: "
        + ", ".join(counts)
        + "."
    )
    for row in fig.rows:
        ratio = row["engine / bare torch"]
        fig.targets.append(
            Target(
                f"overhead, {row['model']}",
                f"engine / bare torch <= {TARGET:.2f}",
                f"{ratio:.2f}",
                ratio <= TARGET,
            )
        )
    return [fig]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=50e6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", choices=["demo", "stack", "conv"], help="cProfile the engine")
    args = parser.parse_args()
    if args.profile:
        import cProfile
        import pstats

        index = {"demo": 0, "stack": 1, "conv": 2}[args.profile]
        _, model, types, _ = cases(tiny=False)[index]
        engine(model, types)  # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.repeats):
            engine(model, types)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return
    model = linear_stack(args.params)
    n = parameters(model)
    r = measure(model, (nn.Linear,), args.repeats)
    print(
        f"{n / 1e6:.1f}M-parameter Linear stack, threads={torch.get_num_threads()}: "
        f"bare torch {r['bare_s']:.3f} s, same selection {r['same_s']:.3f} s, "
        f"engine {r['engine_s']:.3f} s, ratio {r['ratio']:.3f} "
        f"(vs same selection {r['ratio_same']:.3f}; median of {args.repeats}, alternating)"
    )


if __name__ == "__main__":
    main()

"""Figure 7, the measured quantization plan: per model and batch size, the plan's end-to-end
latency beside every uniform scheme within the same budget, the measured drops, and what
computing the plan costs (and how that grows with the number of layers).

Everything comes from one ``core.plan.make_plan`` run per case: it times each layer under
every candidate, then the whole model under the plan and under each uniform scheme, each
alternating with a copy of the original (``paired_latency_ms``), at one thread. The plan is
what the engine would apply; "best uniform" is the fastest uniform scheme whose measured drop
stays within the budget.

    python benchmarks/plan.py [--tiny]
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import tempfile
import time
from typing import Any

import torch
from torch import nn

from benchmarks.common import Figure, Target, conv_net, mlp
from core.data import Dataset, load_data
from core.demos import TEST_DATA_PATH
from core.loading import load_demo
from core.plan import PlanSettings, make_plan
from core.progress import run
from core.schemes import CANDIDATES

MAX_DROP = 0.01
BATCHES = (1, 32)
GOAL_VS_UNIFORM = 1.2  # the goal on the transformer: this much faster than uniform


def _random(shape: tuple[int, ...], samples: int = 64) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    return Dataset(torch.randn((samples, *shape), generator=gen), None, "random")


def cases(tiny: bool) -> list[tuple[str, nn.Module, Dataset]]:
    if tiny:
        return [("MLP 32-64-64-32", mlp((32, 64, 64, 32)), _random((32,), 16))]
    test = load_data(TEST_DATA_PATH)
    return [
        ("MLP 1024-4096-4096-1024", mlp(), _random((1024,))),
        ("ResNet-like conv net", conv_net(), _random((3, 32, 32))),
        ("digits CNN (demo)", load_demo("digits_cnn")[0].model, test),
        ("digits transformer (demo)", load_demo("digits_transformer")[0].model, test),
    ]


def weight_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def deep_stack(layers: int, width: int = 256) -> nn.Module:
    torch.manual_seed(0)
    blocks: list[nn.Module] = []
    for _ in range(layers):
        blocks += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*blocks).eval()


def figures(tiny: bool = False) -> list[Figure]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="secateur-plan-cache-") as cache:
        saved = os.environ.get("SECATEUR_CACHE_DIR")
        os.environ["SECATEUR_CACHE_DIR"] = cache
        try:
            return _figures(tiny)
        finally:
            if saved is None:
                os.environ.pop("SECATEUR_CACHE_DIR", None)
            else:
                os.environ["SECATEUR_CACHE_DIR"] = saved


def _figures(tiny: bool) -> list[Figure]:
    fig = Figure(
        key="plan",
        title="7. The measured quantization plan (one thread, max drop 0.01)",
        columns=[
            "model",
            "batch",
            "layers",
            "chosen",
            "chosen / original",
            "plan / original",
            "best uniform within budget",
            "best uniform / original",
            "plan / best uniform",
            "measured drop",
            "plan took s",
        ],
        ratios=["chosen / original", "plan / original", "best uniform / original"],
        formats={"measured drop": ".4f", "plan took s": ".1f"},
        intro=(
            "Per case one `make_plan` run: every layer timed under every candidate "
            f"({', '.join(CANDIDATES.names())}) on its captured input, then the whole model "
            "under the plan and under each uniform scheme, each alternating with a copy of the "
            "original, then up to 16 end-to-end trials refining the best one family of alike "
            "layers at a time. Drops are accuracy points (labelled digits data) or 1 - cosine "
            "similarity (random input). *chosen* is what the engine applies: the fastest "
            "within the budget, or float when nothing beats the original by 2%; *plan* is the "
            "per-layer plan after the refinement."
        ),
    )
    batches = (1,) if tiny else BATCHES
    results: list[dict[str, Any]] = []
    for name, model, data in cases(tiny):
        layers = weight_layers(model)
        for batch in batches:
            settings = PlanSettings(CANDIDATES.names(), MAX_DROP, batch_size=batch)
            t0 = time.perf_counter()
            # the fidelity costs do not depend on the batch: the second batch size reuses
            # the first one's (the sweep cache, in a folder of this run's own)
            plan = run(make_plan(model, data, layers, settings, use_cache=True))
            seconds = time.perf_counter() - t0
            within = {n: m for n, m in plan.uniform.items() if m.within_budget}
            best_name = min(within, key=lambda n: within[n].ratio) if within else None
            best = within[best_name].ratio if best_name else None
            plan_ratio = plan.plan.ratio if plan.plan else None
            chosen_ratio = 1.0
            drop = 0.0
            if plan.chosen == "plan" and plan.plan is not None:
                chosen_ratio, drop = plan.plan.ratio, plan.plan.drop
            elif plan.chosen.startswith("uniform:"):
                m = plan.uniform[plan.chosen.split(":", 1)[1]]
                chosen_ratio, drop = m.ratio, m.drop
            row = {
                "model": name,
                "batch": batch,
                "layers": len(layers),
                "chosen": plan.chosen,
                "chosen / original": chosen_ratio,
                "plan / original": plan_ratio,
                "best uniform within budget": best_name or "none",
                "best uniform / original": best,
                "plan / best uniform": (chosen_ratio / best) if best else None,
                "measured drop": drop,
                "plan took s": seconds,
            }
            fig.add(**row)
            results.append(row)
    slower = [r for r in results if r["chosen / original"] > 1.0]
    over = [r for r in results if r["measured drop"] > MAX_DROP + 1e-12]
    worse = [
        r
        for r in results
        if r["plan / best uniform"] is not None and r["plan / best uniform"] > 1.0 + 1e-9
    ]
    fig.targets += [
        Target(
            "plan: never slower than the original",
            "chosen / original <= 1.0 in every case",
            f"{len(results) - len(slower)} of {len(results)} cases",
            not slower,
        ),
        Target(
            "plan: at most the best uniform scheme within the budget",
            "chosen / best uniform <= 1.0",
            f"{len(results) - len(worse)} of {len(results)} cases",
            not worse,
        ),
        Target(
            "plan: measured drop within the budget",
            f"<= {MAX_DROP}",
            f"{len(results) - len(over)} of {len(results)} cases",
            not over,
        ),
    ]
    transformer = [r for r in results if "transformer" in r["model"]]
    if transformer:
        gains = [1 / r["plan / best uniform"] for r in transformer if r["plan / best uniform"]]
        fig.targets.append(
            Target(
                "plan on the transformer: faster than the best uniform scheme (a goal)",
                f">= {GOAL_VS_UNIFORM}x",
                ", ".join(f"{g:.2f}x" for g in gains) or "no uniform scheme within the budget",
                bool(gains) and min(gains) >= GOAL_VS_UNIFORM,
            )
        )
    fig.notes.append(
        "The per-layer times are taken with the model's memory traffic: before each timed "
        "call a buffer as large as the model's tensors (up to 64 MB) is touched, so the "
        "layer's weights come from memory as they do inside the model (timed alone and hot "
        "in cache, small int8 layers looked slower than they are in the model)."
    )
    figs = [fig]
    if not tiny:
        figs.append(_growth())
    return figs


def _growth() -> Figure:
    fig = Figure(
        key="plan_growth",
        title="7b. Time to compute a plan vs the number of layers (256-wide Linear stacks)",
        columns=["layers", "candidates", "plan took s", "s per layer"],
        formats={"plan took s": ".1f", "s per layer": ".2f"},
        intro="One thread, batch 1, 64 random samples, every candidate, no cache.",
    )
    data = _random((256,))
    seconds = {}
    for layers in (10, 25, 50):
        model = deep_stack(layers)
        names = weight_layers(model)
        settings = PlanSettings(CANDIDATES.names(), MAX_DROP)
        t0 = time.perf_counter()
        run(make_plan(model, data, names, settings, use_cache=False))
        seconds[layers] = time.perf_counter() - t0
        fig.add(
            layers=layers,
            candidates=len(CANDIDATES),
            **{"plan took s": seconds[layers], "s per layer": seconds[layers] / layers},
        )
    fig.targets.append(
        Target(
            "plan: a 50-layer model on this 2-core machine",
            "under 5 minutes",
            f"{seconds[50]:.0f} s",
            seconds[50] < 300,
        )
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    for fig in figures(args.tiny):
        print(fig.markdown())
        for target in fig.targets:
            print(f"- {target.what}: {target.measured} (target {target.target})")


if __name__ == "__main__":
    main()

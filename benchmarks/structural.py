"""Structural pruning: remove 50% of the channels of four models, measure what it buys.

For each of ``benchmarks.models`` (a) a CNN with BatchNorm, (b) a MobileNetV2-style stack,
(c) a BERT-like encoder with hand-written attention and (d) the same with
nn.MultiheadAttention: every Linear, Conv2d and nn.MultiheadAttention is a root with amount
0.5 (l2 importance, layer scope; the output layer is skipped by rule), then, pruned vs
original, side by side in one run on one thread:

- parameters and state-dict bytes (the ``torch.save`` file, measured);
- latency at batch 1 and batch 32: forwards alternate (original, pruned, original, ...)
  under torch.inference_mode and the ratio of the medians is reported, so the load of this
  shared machine falls on both sides alike;
- output shapes at both batch sizes;
- the round trip of every save format: the state dict rebuilt from the architecture on the
  meta device and resized from the JSON shapes record (``shapes_of``/``apply_shapes``);
  a torch.export program (.pt2, dynamic batch, loaded with no model code, run at batch 1
  and 32); a pickle of the whole module.

    python benchmarks/structural.py [--tiny]
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import copy
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks import models
from benchmarks.common import Figure, Target, alternate, median, wait_for_quiet
from core.shapes import apply_shapes, shapes_of
from core.structural import plan_removal, remove_channels

CASES = (
    ("cnn", "(a) CNN + BatchNorm", 0.5),
    ("mobilenet", "(b) MobileNetV2-style, depthwise + skips", 0.75),
    ("bert", "(c) BERT-like, hand-written q/k/v", 0.5),
    ("bert_mha", "(d) BERT-like, nn.MultiheadAttention", 0.5),
)
ROOT_TYPES = (nn.Linear, nn.Conv2d, nn.MultiheadAttention)


def prune_half(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, Any, Any, float]:
    """Remove 50% of every root's channels from a copy; returns (pruned, plan, result, s)."""
    roots = {n: 0.5 for n, m in model.named_modules() if isinstance(m, ROOT_TYPES)}
    t0 = time.perf_counter()
    plan = plan_removal(model, roots, ((x,), {}))
    work = copy.deepcopy(model)
    gen = remove_channels(work, plan)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result = stop.value
            break
    return work.eval(), plan, result, time.perf_counter() - t0


def quiet_probe(limit_s: float) -> dict[str, float]:
    """``wait_for_quiet`` at every core: its probe compares the default thread count with
    one thread, so under ``torch.set_num_threads(1)`` it would always read 1."""
    saved = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 2)
    try:
        return wait_for_quiet(limit_s)
    finally:
        torch.set_num_threads(saved)


def latency_ratio(
    original: nn.Module, pruned: nn.Module, x: torch.Tensor, budget_s: float, rounds: int = 5
) -> tuple[float, float, float, float]:
    """Pruned / original forward time: ``rounds`` rounds that each alternate the two models
    (original, pruned, original, ...) and divide their medians; returns the median ratio,
    the lowest and highest round's ratio, and the original's median milliseconds."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        original(x)
        pruned(x)
        once = time.perf_counter() - t0
        repeats = max(5, min(300, int(budget_s / rounds / max(once, 1e-4))))
        ratios, base = [], []
        for _ in range(rounds):
            times = alternate(
                {"original": lambda: original(x), "pruned": lambda: pruned(x)}, repeats
            )
            a, b = median(times["original"]), median(times["pruned"])
            ratios.append(b / a)
            base.append(a)
    return median(ratios), min(ratios), max(ratios), median(base) * 1e3


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max())


def round_trips(name: str, pruned: nn.Module, folder: Path, batches: list[torch.Tensor]):
    """(state-dict bytes, {format: max abs error over the batches or the failure})."""
    ok: dict[str, Any] = {}
    expected = [outputs(pruned, x) for x in batches]

    def check(fmt: str, reloaded: Any) -> None:
        ok[fmt] = max(max_error(outputs(reloaded, x), e) for x, e in zip(batches, expected))

    # state dict + shapes record, rebuilt from the architecture on the meta device
    path = folder / f"{name}.pt"
    torch.save(pruned.state_dict(), path)
    sidecar = folder / f"{name}.pt.secateur.json"
    sidecar.write_text(json.dumps({"shapes": shapes_of(pruned, models.BUILDERS[name]())}))
    try:
        with torch.device("meta"):
            fresh = models.BUILDERS[name]()
        apply_shapes(fresh, json.loads(sidecar.read_text())["shapes"], sidecar.name)
        fresh.load_state_dict(torch.load(path, weights_only=True), strict=True, assign=True)
        check("state_dict", fresh.eval())
    except Exception as exc:
        ok["state_dict"] = f"{type(exc).__name__}: {exc}"[:120]
    size = path.stat().st_size

    # torch.export, batch dimension dynamic, loaded with no model code
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # traced at the larger batch: a batch of 1 would specialise the dimension
            program = torch.export.export(
                pruned, (batches[-1],), dynamic_shapes=({0: torch.export.Dim.AUTO},)
            )
            torch.export.save(program, folder / f"{name}.pt2")
            check("exported", torch.export.load(folder / f"{name}.pt2").module())
    except Exception as exc:
        ok["exported"] = f"{type(exc).__name__}: {exc}"[:120]

    # the whole module pickled
    try:
        torch.save(pruned, folder / f"{name}.pkl")
        check("pickle", torch.load(folder / f"{name}.pkl", weights_only=False).eval())
    except Exception as exc:
        ok["pickle"] = f"{type(exc).__name__}: {exc}"[:120]
    return size, ok


def figures(tiny: bool = False) -> list[Figure]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [_figure(tiny)]
    finally:
        torch.set_num_threads(threads)


def _figure(tiny: bool) -> Figure:
    fig = Figure(
        key="structural",
        title="8. Structural pruning: 50% of channels removed, pruned / original",
        columns=[
            "model",
            "parameters",
            "params",
            "state dict",
            "latency b1",
            "latency b32",
            "b1 / b32 rounds",
            "b1 ms (orig)",
            "shapes kept",
            "round trip",
            "groups / skipped",
            "prune s",
            "noise",
        ],
        ratios=["params", "state dict", "latency b1", "latency b32"],
        formats={"b1 ms (orig)": ".2f", "prune s": ".2f", "noise": ".2f"},
        intro=(
            "Every Linear, Conv2d and nn.MultiheadAttention of each model is a root of "
            "`remove_channels` with amount 0.5 (l2 importance, layer scope); coupled layers "
            "follow and the output layer is skipped by rule. Ratios are pruned / original, "
            "measured side by side in one run on one thread: latency alternates the two "
            "models and divides the medians, in five rounds; the table gives the median of "
            "the rounds' ratios and their range. Round trip: the pruned model saved as a state "
            "dict (rebuilt from `--arch` on the meta device, resized by `apply_shapes` from "
            "the JSON record), as a torch.export .pt2 (dynamic batch, run at batch 1 and 32) "
            "and as a pickle, reloaded and compared with the pruned model in memory (max abs "
            "error). Noise: the parallel-region probe of `benchmarks/common.py` just before "
            "timing (about 1 on a quiet machine; the run waits up to 90 s for quiet)."
        ),
    )
    budget = 0.3 if tiny else 4.0
    with tempfile.TemporaryDirectory(prefix="secateur-structural-") as tmp:
        folder = Path(tmp)
        for name, label, target in CASES:
            model = models.BUILDERS[name]()
            x1 = models.example_input(name, batch=1)
            x32 = models.example_input(name, batch=32, seed=1)
            pruned, plan, _, seconds = prune_half(model, x1)
            params = sum(p.numel() for p in pruned.parameters()) / sum(
                p.numel() for p in model.parameters()
            )
            shapes_kept = all(
                outputs(pruned, x).shape == outputs(model, x).shape for x in (x1, x32)
            )
            size, trips = round_trips(name, pruned, folder, [x1, x32])
            torch.save(model.state_dict(), folder / "original.pt")
            size_ratio = size / (folder / "original.pt").stat().st_size
            probe = quiet_probe(0 if tiny else 90)
            b1, low1, high1, ms1 = latency_ratio(model, pruned, x1, budget)
            b32, low32, high32, _ = latency_ratio(model, pruned, x32, budget)
            trip = ", ".join(
                f"{fmt} {err:.1e}" if isinstance(err, float) else f"{fmt} FAILED ({err})"
                for fmt, err in trips.items()
            )
            trips_ok = all(isinstance(e, float) and e <= 1e-4 for e in trips.values())
            fig.add(
                model=label,
                parameters=sum(p.numel() for p in model.parameters()),
                params=params,
                **{
                    "state dict": size_ratio,
                    "latency b1": b1,
                    "latency b32": b32,
                    "b1 / b32 rounds": f"{low1:.2f}–{high1:.2f} / {low32:.2f}–{high32:.2f}",
                    "b1 ms (orig)": ms1,
                    "shapes kept": shapes_kept,
                    "round trip": ("ok: " if trips_ok else "FAILED: ") + trip,
                    "groups / skipped": f"{len(plan.groups)} / {', '.join(plan.skipped)}",
                    "prune s": seconds,
                    "noise": probe["ratio"],
                },
            )
            short = label.split(")")[0] + ")"
            fig.targets += [
                Target(f"{short} parameters", "<= 0.30", f"{params:.3f}", params <= 0.30),
                Target(f"{short} state dict", "<= 0.32", f"{size_ratio:.3f}", size_ratio <= 0.32),
                Target(f"{short} latency b1", f"<= {target}", f"{b1:.3f}", b1 <= target),
                Target(f"{short} shapes + round trips", "ok", trip, shapes_kept and trips_ok),
            ]
    fig.notes.append(
        "(d) keeps its 8 heads per nn.MultiheadAttention: the inner width of "
        "nn.MultiheadAttention is its embed_dim, so its head_dim halves (32 -> 16) instead "
        "(the same positions in every head, softmax scale compensated); (c) loses whole heads "
        "(8 -> 4, head_dim 32)."
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="short timing budget")
    args = parser.parse_args()
    fig = figures(args.tiny)[0]
    print(fig.markdown())
    for t in fig.targets:
        mark = "ok" if t.holds else ("MISSED" if t.holds is False else "-")
        print(f"- {t.what}: target {t.target}, measured {t.measured}: {mark}")


if __name__ == "__main__":
    main()

"""Figure 9, sweeps on Ray (``--ray``): a 52-layer sweep in this process and through a local
Ray instance with 2 workers, side by side in one run; what one task and the object-store
transfer cost; and, multiplied out from those measurements, how a 300-layer transformer's
sweep would scale with N workers (``docs/cluster.md`` explains the model and assumptions).

Every sweep here is ``core.sensitivity.sweep``: locally with the default evaluator, on Ray
with ``core.cluster.RayEvaluator`` (one task per layer, one CPU and one torch thread each).
The JSON of both must be identical; the figure says so.

    python benchmarks/cluster.py [--tiny]
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import importlib.util
import json
import math
import pickle
import statistics
import time
from typing import Any

import torch
from torch import nn

from benchmarks.common import Figure, Target, alternate, noise_probe
from benchmarks.models import Encoder, example_input, mobilenet
from core.cluster import RayEvaluator
from core.data import Dataset
from core.progress import run
from core.sensitivity import DEFAULT_AMOUNTS, SweepSettings, sweep

WORKERS = 2
DEEP_BLOCKS = 50  # 50 encoder blocks x 6 Linear layers + the classifier: 301 layers
WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)
NETWORK_GBPS = 1.0  # assumed node-to-node transfer for the estimate, GB/s (10 GbE)


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _sweep_seconds(
    model: nn.Module, data: Dataset, settings: SweepSettings, evaluator: Any = None
) -> tuple[dict[str, Any], float]:
    result, seconds = _timed(
        lambda: run(sweep(model, data, settings, use_cache=False, evaluator=evaluator))
    )
    return result.data, seconds


def _stack(layers: int, width: int = 32) -> nn.Module:
    torch.manual_seed(0)
    blocks: list[nn.Module] = []
    for _ in range(layers):
        blocks += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*blocks).eval()


def _pending(reason: str) -> list[Figure]:
    fig = Figure(key="cluster", title="9. Sweeps on Ray", columns=["case", "note"])
    fig.add(case="all", note=f"pending: {reason}")
    return [fig]


def figures(tiny: bool = False) -> list[Figure]:
    if importlib.util.find_spec("ray") is None:
        return _pending("Ray is not installed (pip install 'secateur[cluster]')")
    saved_threads = torch.get_num_threads()
    evaluator = RayEvaluator("local", num_cpus=WORKERS)
    try:
        _, start_s = _timed(evaluator.connect)
        side, costs, overhead_s = _side_by_side(evaluator, tiny, start_s)
        deep = _deep_costs(evaluator, tiny)
    finally:
        evaluator.close()
        torch.set_num_threads(saved_threads)
    costs.add(**deep["row"])
    return [side, costs, _scaling(deep, overhead_s)]


# ----------------------------------------------------------------- 9a: side by side
def _side_by_side(
    evaluator: RayEvaluator, tiny: bool, start_s: float
) -> tuple[Figure, Figure, float]:
    if tiny:
        name, model = "Linear stack, 20 layers", _stack(20)
        data = Dataset(torch.randn(8, 32, generator=torch.Generator().manual_seed(0)), None, "x")
        settings = SweepSettings(amounts=(0.5,))
    else:
        name, model = "MobileNetV2-like, 52 Conv2d", mobilenet()
        data = Dataset(example_input("mobilenet", 16), None, "random 16x3x64x64")
        settings = SweepSettings(amounts=DEFAULT_AMOUNTS)
    layers = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules())
    fig = Figure(
        key="cluster",
        title=f"9a. A sensitivity sweep here and on a local Ray instance ({WORKERS} workers)",
        columns=["where", "sweep s", "vs here, 1 thread", "vs here, 2 threads", "same JSON"],
        ratios=["vs here, 1 thread", "vs here, 2 threads"],
        formats={"sweep s": ".1f"},
        intro=(
            f"{name} ({layers} layers), {len(settings.amounts)} amounts per layer, "
            f"{len(data)} samples, cosine similarity, no cache: {layers * len(settings.amounts)} "
            "evaluations. Here: this process, one layer after the other, at 1 and 2 torch "
            f"threads. Ray: `RayEvaluator('local', num_cpus={WORKERS})`, one task per layer, "
            "each task one CPU and one torch thread; *cold* is the first sweep (worker "
            "processes start and import torch), *warm* the next one. Ray itself started in "
            f"{start_s:.1f} s (not counted)."
        ),
    )
    torch.set_num_threads(1)
    _, cold = _sweep_seconds(model, data, settings, evaluator)  # the workers start
    outputs: dict[str, Any] = {}
    task_seconds: list[float] = []

    def here(threads: int) -> Any:
        def side() -> None:
            torch.set_num_threads(threads)
            outputs[f"here {threads}"] = _sweep_seconds(model, data, settings)[0]
            torch.set_num_threads(1)

        return side

    def on_ray() -> None:
        outputs["ray"] = _sweep_seconds(model, data, settings, evaluator)[0]
        task_seconds.extend(evaluator.stats.task_seconds)

    probe = noise_probe()
    times = alternate(
        {"here 1": here(1), "ray": on_ray, "here 2": here(2)}, repeats=1 if tiny else 3, warmup=0
    )
    probe_after = noise_probe()
    here_1, warm, here_2 = (statistics.median(times[k]) for k in ("here 1", "ray", "here 2"))
    stats = evaluator.stats  # the last warm sweep's
    # like for like: a task runs at one thread; at two, the kernels sum in another order
    same = json.dumps(outputs["ray"]) == json.dumps(outputs["here 1"])
    other_threads = _max_difference(outputs["ray"], outputs["here 2"])
    for where, seconds in (
        ("here, 1 thread", here_1),
        ("here, 2 threads", here_2),
        (f"Ray, {WORKERS} workers, cold", cold),
        (f"Ray, {WORKERS} workers, warm", warm),
    ):
        fig.add(
            where=where,
            **{
                "sweep s": seconds,
                "vs here, 1 thread": seconds / here_1,
                "vs here, 2 threads": seconds / here_2,
                "same JSON": same if where.startswith("Ray") else None,
            },
        )
    fig.notes.append(
        "*same JSON*: Ray's result against this process's at one thread, the thread count "
        "of a task. Against this process at two threads the metrics differ by at most "
        f"{other_threads:.1e} (multi-threaded kernels sum in another order), as two local "
        "sweeps at one and two threads do."
    )
    fig.notes.append(
        f"Medians of {len(times['ray'])} alternating rounds (here 1 thread, Ray, here 2 "
        f"threads). Parallel-region probe before / after: {probe['ratio']:.1f}x / "
        f"{probe_after['ratio']:.1f}x (~1x: no other process held a core)."
    )
    fig.targets += [
        Target(
            "Ray sweep: the same JSON as the local sweep at one thread",
            "identical",
            "identical" if same else "differs",
            same,
        ),
        Target(
            f"Ray sweep, {WORKERS} workers (warm): faster than here on one thread",
            "< 1.0x",
            f"{warm / here_1:.2f}x",
            warm < here_1,
        ),
    ]
    fig.notes.append(
        "On this 2-core machine two workers can at best halve the one-thread time; against "
        "two torch threads in one process the gain is what intra-op threading leaves on the "
        "table for small convolutions. The point of --ray is a cluster: see 9c."
    )
    costs = Figure(
        key="cluster_costs",
        title="9b. What one task and the object-store transfer cost",
        columns=[
            "model",
            "layers",
            "job MB",
            "put s",
            "first fetch s",
            "per task s",
            "overhead per task s",
        ],
        formats={
            "job MB": ".1f",
            "put s": ".3f",
            "first fetch s": ".3f",
            "per task s": ".3f",
            "overhead per task s": ".3f",
        },
        intro=(
            "*job MB*: the pickled job (model, data, the original's outputs) put in the "
            "object store once per sweep; *put s*: that `ray.put`; *first fetch s*: a "
            "worker's first task getting it from the store and copying the model (median "
            "over workers; later tasks of the same worker reuse it); *per task s*: one "
            "layer's evaluation in a worker (median), all amounts; *overhead per task*: the "
            "warm sweep's wall time minus put, fetch and evaluation, spread over the tasks "
            "(scheduling, results, the driver's loop)."
        ),
    )
    overhead = max(
        (
            stats.wall_seconds
            - stats.put_seconds
            - max(stats.fetch_seconds, default=0.0)
            - sum(stats.task_seconds) / WORKERS
        )
        / max(layers / WORKERS, 1),
        0.0,
    )
    costs.add(
        model=name,
        layers=layers,
        **{
            "job MB": _job_mb(model, data, settings),
            "put s": stats.put_seconds,
            "first fetch s": _first_fetch(stats),
            "per task s": statistics.median(task_seconds),
            "overhead per task s": overhead,
        },
    )
    return fig, costs, overhead


def _max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest difference between two sweeps' metrics, point by point."""
    pairs = [(a["baseline"], b["baseline"])]
    for row_a, row_b in zip(a["layers"], b["layers"]):
        pairs += [(p["metric"], q["metric"]) for p, q in zip(row_a["points"], row_b["points"])]
    return max(abs(x - y) for x, y in pairs)


def _first_fetch(stats: Any) -> float:
    cold = [s for s in stats.fetch_seconds if s > 1e-3]  # warm fetches cost microseconds
    return statistics.median(cold) if cold else 0.0


def _job_mb(model: nn.Module, data: Dataset, settings: SweepSettings) -> float:
    """The size of what goes into the object store, as pickled."""
    from core.metrics import run_outputs

    reference = run_outputs(model, data)
    return len(pickle.dumps((model, data, settings, reference))) / 1e6


# ------------------------------------------------------------ 9b: the deep transformer
def _deep_costs(evaluator: RayEvaluator, tiny: bool) -> dict[str, Any]:
    """Per-task time and transfer on the 300-layer encoder itself: a sweep of four of its
    layers on Ray, two tasks a worker (the whole sweep would take an hour here)."""
    blocks = 2 if tiny else DEEP_BLOCKS
    torch.manual_seed(0)
    model = Encoder(layers=blocks, dim=32 if tiny else 256, ffn=64 if tiny else 1024).eval()
    samples = 4 if tiny else 32
    data = Dataset(example_input("bert", samples), None, f"random {samples} x 32 tokens")
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    middle = len(names) // 2
    picked = names[middle : middle + 2 * WORKERS]  # two tasks on each worker
    settings = SweepSettings(layers=picked, amounts=(0.5,) if tiny else DEFAULT_AMOUNTS)
    torch.set_num_threads(1)  # as in a worker
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(*(data.slice(0, samples)[0]))
    forward_s = time.perf_counter() - t0
    _sweep_seconds(model, data, settings, evaluator)
    stats = evaluator.stats
    per_task = statistics.median(stats.task_seconds)
    job_mb = _job_mb(model, data, settings)
    row = {
        "model": f"encoder, {blocks} blocks (dim {model.layers[0].fc1.in_features})",
        "layers": len(names),
        "job MB": job_mb,
        "put s": stats.put_seconds,
        "first fetch s": _first_fetch(stats),
        "per task s": per_task,
        "overhead per task s": None,
    }
    return {
        "row": row,
        "layers": len(names),
        "per_task_s": per_task,
        "put_s": stats.put_seconds,
        "fetch_s": _first_fetch(stats),
        "job_mb": job_mb,
        "forward_s": forward_s,
        "samples": samples,
        "amounts": len(settings.amounts),
    }


# --------------------------------------------------------------------- 9c: on paper
def estimate(deep: dict[str, Any], workers: int, overhead_s: float) -> float:
    """Seconds for the whole sweep on ``workers`` workers (one per node at most 8 to a
    node): the job put once, fetched once per node over the network and once per worker
    from its node's store, then the layers in ceil(layers / workers) waves."""
    nodes = math.ceil(workers / 8)
    network_s = deep["job_mb"] / 1000 / NETWORK_GBPS if nodes > 1 else 0.0
    waves = math.ceil(deep["layers"] / workers)
    return (
        deep["put_s"]
        + network_s
        + deep["fetch_s"]
        + waves * (deep["per_task_s"] + overhead_s)
        + deep["forward_s"]  # the original's outputs, once, on the driver
    )


def _scaling(deep: dict[str, Any], overhead_s: float) -> Figure:
    local = deep["layers"] * deep["per_task_s"] + deep["forward_s"]
    fig = Figure(
        key="cluster_scaling",
        title=f"9c. On paper: the {deep['layers']}-layer encoder's sweep on N workers",
        columns=["workers", "estimated minutes", "vs one worker"],
        ratios=["vs one worker"],
        formats={"estimated minutes": ".1f"},
        intro=(
            f"Multiplied out from 9b's measured encoder row ({deep['samples']} samples, "
            f"{deep['amounts']} amounts): per task {deep['per_task_s']:.2f} s, job "
            f"{deep['job_mb']:.0f} MB, put {deep['put_s']:.2f} s, first fetch "
            f"{deep['fetch_s']:.2f} s, the original's outputs on the driver "
            f"{deep['forward_s']:.2f} s. Assumes workers as fast as this machine's cores, "
            f"8 workers a node, {NETWORK_GBPS:g} GB/s between nodes, and 9a's measured "
            f"overhead per task ({overhead_s * 1000:.0f} ms). One worker here would take "
            f"{local / 60:.0f} min."
        ),
    )
    one = estimate(deep, 1, overhead_s)
    for n in WORKER_COUNTS:
        seconds = estimate(deep, n, overhead_s)
        fig.add(workers=n, **{"estimated minutes": seconds / 60, "vs one worker": seconds / one})
    fig.notes.append(
        "The sweep is (layers x amounts) forward passes of the whole model, so it grows with "
        "the square of the depth; the tasks are independent, so it divides by the workers "
        "until the waves run out (ceil(layers / N)), while the one-off costs (put, fetch, "
        "the original's outputs) stay."
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

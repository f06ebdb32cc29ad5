"""A 1-billion-parameter Linear stack: inspect, prune and int8-quantize it, measuring peak RSS.

    python scripts/big_model.py [--workdir /tmp/secateur-big] [--params 1e9]

Builds the model with a fixed seed, saves its state dict (4 GB, never checked in), then runs
``secateur inspect`` and ``secateur compress`` on it as separate processes and reports each
one's peak resident memory (ru_maxrss) relative to the model's fp32 size. ``build`` is also
the --arch callable for the saved file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

LAYERS = 8
PARAMS = float(os.environ.get("SECATEUR_BIG_PARAMS", "1e9"))


def build() -> nn.Module:
    width = int((PARAMS / LAYERS) ** 0.5)
    mods: list[nn.Module] = []
    for _ in range(LAYERS):
        mods += [nn.Linear(width, width, bias=False), nn.ReLU()]
    return nn.Sequential(*mods).eval()


RECIPE = """version: 1
prune: [{types: [Linear], method: l1_unstructured, amount: 0.5}]
quantize: {scheme: int8_dynamic, types: [Linear]}
"""


def _child_peak(argv: list[str]) -> tuple[int, float]:
    """Run a command, sampling its resident memory every 20 ms; return (peak bytes, seconds)."""
    import psutil

    env = {**os.environ, "SECATEUR_BIG_PARAMS": str(PARAMS)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    handle = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    _, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()}")
    return peak, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/secateur-big")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "big.pt"
    torch.manual_seed(0)
    if not weights.exists():
        t0 = time.perf_counter()
        model = build()
        torch.save(model.state_dict(), weights)
        del model
        print(f"built and saved {weights} in {time.perf_counter() - t0:.0f} s")
    fp32 = weights.stat().st_size
    recipe = work / "recipe.yaml"
    recipe.write_text(RECIPE)
    secateur = [sys.executable, "-m", "gui.launcher"]
    arch = f"{Path(__file__).resolve()}:build"
    width = int((PARAMS / LAYERS) ** 0.5)
    runs = [
        ("inspect", [*secateur, "inspect", str(weights), "--arch", arch]),
        (
            "compress (prune 50% + int8, --skip-metrics)",
            [
                *secateur,
                "compress",
                str(weights),
                "--arch",
                arch,
                "--recipe",
                str(recipe),
                "--output",
                str(work / "big_int8.pt"),
                "--input-shape",
                f"4x{width}",
                "--skip-metrics",
            ],
        ),
    ]
    print(
        f"model: {LAYERS} x Linear({width}, {width}) = {LAYERS * width * width / 1e9:.2f}B params, "
        f"fp32 file {fp32 / 2**30:.2f} GiB"
    )
    base, _ = _child_peak([sys.executable, "-c", "import core.compat as c, core.cli; c.torchao()"])
    print(f"baseline (python + torch + torchao imported): {base / 2**30:.2f} GiB")
    print("| step | peak RSS | peak RSS / fp32 size | (peak - baseline) / fp32 size | wall time |")
    print("|---|---|---|---|---|")
    for label, argv in runs:
        peak, elapsed = _child_peak(argv)
        print(
            f"| {label} | {peak / 2**30:.2f} GiB | {peak / fp32:.2f}x | "
            f"{(peak - base) / fp32:.2f}x | {elapsed:.0f} s |"
        )
    out_file = work / "big_int8.pt"
    if out_file.exists():
        print(
            f"\ncompressed file: {out_file.stat().st_size / 2**30:.2f} GiB "
            f"({out_file.stat().st_size / fp32:.3f}x)"
        )


if __name__ == "__main__":
    main()

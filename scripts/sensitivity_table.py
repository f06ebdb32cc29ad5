"""Uniform vs automatic vs automatic + fine-tune pruning on the demo, measured in one run.

    python scripts/sensitivity_table.py [--target 0.8] [--epochs 3]

Prints the markdown table the README shows. Every number is measured by the engine on the
demo's test split; training uses only the training split.
"""

from __future__ import annotations

import argparse

from core.engine import compress, run
from core.loading import load_demo
from core.recipe import Finetune, Recipe
from core.sensitivity import SweepSettings, allocate, recipe_from_amounts, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    loaded, test, train = load_demo()
    result = run(sweep(loaded.model, test, SweepSettings(), use_cache=False))
    amounts = allocate(result.data, target_sparsity=args.target)
    sizes = {row["name"]: row["parameters"] for row in result.data["layers"]}
    names = list(sizes)
    uniform = Recipe.from_dict(
        {"version": 1, "prune": [{"types": ["Conv2d", "Linear"], "amount": args.target}]}
    )
    automatic = recipe_from_amounts(amounts)
    tuned = recipe_from_amounts(amounts)
    tuned.finetune = Finetune(epochs=args.epochs, lr=1e-3, batch_size=64)
    rows = []
    for label, recipe in (
        (f"uniform {args.target:.0%}", uniform),
        (f"automatic (target {args.target:.0%})", automatic),
        (f"automatic + fine-tune ({args.epochs} epochs)", tuned),
    ):
        report = run(compress(loaded, recipe, data=test, train_data=train)).report.to_dict()
        layers = {r["name"]: r for r in report["layers"]}
        zeros = sum(layers[n]["sparsity_after"] * sizes[n] for n in names)
        sparsity = zeros / sum(sizes.values())
        rows.append((label, sparsity, report["before"]["accuracy"], report["after"]["accuracy"]))
    print("| recipe | sparsity of Conv2d/Linear weights | accuracy before | accuracy after |")
    print("|---|---|---|---|")
    for label, sparsity, before, after in rows:
        print(f"| {label} | {sparsity:.4f} | {before:.4f} | {after:.4f} |")
    print()
    print("automatic amounts: " + ", ".join(f"{k} {v:g}" for k, v in amounts.items()))


if __name__ == "__main__":
    main()

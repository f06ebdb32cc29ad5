"""The README's "smaller and faster" table: the digits CNN demo compressed three ways, measured
in one run by the engine itself (sizes from the real state dicts; latency at one thread, batch
1, the original and the result alternating; accuracy on the 450-image test split).

    python scripts/demo_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import compat
from core.engine import compress, run
from core.loading import load_demo
from core.recipe import parse_recipe

RECIPES = {
    "zero 50% of every weight (L1) + torchao int8 on Linear": """
version: 1
prune: [{types: [Conv2d, Linear], method: l1_unstructured, amount: 0.5}]
quantize: {scheme: int8_dynamic, types: [Linear]}
""",
    "remove 50% of the channels of conv1, conv2, fc1": """
version: 1
prune: [{layers: [conv1, conv2, fc1], method: remove_channels, amount: 0.5}]
""",
    "the same + 5 epochs of fine-tune": """
version: 1
prune: [{layers: [conv1, conv2, fc1], method: remove_channels, amount: 0.5}]
finetune: {epochs: 5}
""",
    "the same + the measured quantization plan (the demo recipe)": """
version: 1
prune: [{layers: [conv1, conv2, fc1], method: remove_channels, amount: 0.5}]
finetune: {epochs: 5}
quantize: {scheme: auto, types: [Linear], max_drop: 0.01}
""",
}


def main() -> int:
    loaded, test, train = load_demo()
    print("| recipe | parameters | state dict | latency | accuracy (before 0.9844) |")
    print("|---|---|---|---|---|")
    for label, text in RECIPES.items():
        recipe = parse_recipe(text, label)
        with compat.quiet():
            report = run(compress(loaded, recipe, data=test, train_data=train)).report
        b, a = report.before, report.after
        print(
            f"| {label} | {a.parameters / b.parameters:.3f}x "
            f"| {a.state_dict_bytes / b.state_dict_bytes:.3f}x "
            f"| {a.latency_ms / b.latency_ms:.3f}x | {a.accuracy:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: the figure table, the machine header, side-by-side timing,
the benchmark models and child processes.

Every figure is a ratio measured side by side in one run: the two sides alternate
(A, B, A, B, ...) and the ratio of their medians is reported, so the noise of a shared
machine falls on both sides alike.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# ----------------------------------------------------------------------------- figures
@dataclass
class Target:
    """One line of the summary: what is aimed at, what was measured, whether it holds
    (None: pending or informational)."""

    what: str
    target: str
    measured: str
    holds: bool | None


@dataclass
class Figure:
    """One table of docs/benchmarks.md.

    ``rows`` are dicts keyed by column name; ``ratios`` names the columns that hold ratios
    (each must be a positive finite number, or None where a case is pending or impossible);
    ``formats`` gives a format spec per column (default: ``.3f`` for floats).
    """

    key: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    intro: str = ""
    notes: list[str] = field(default_factory=list)
    extra: str = ""  # markdown appended verbatim (e.g. another script's own output)
    targets: list[Target] = field(default_factory=list)

    def add(self, marks: dict[str, str] | None = None, **row: Any) -> None:
        """Append a row; ``marks`` overrides how some cells are shown (e.g. "1.2 **SLOWER**")."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"{self.key}: unknown columns {sorted(unknown)}")
        if marks:
            row["_marks"] = marks
        self.rows.append(row)

    def cell(self, column: str, value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            spec = self.formats.get(column, ".3f")
            return format(value, spec)
        if isinstance(value, int):
            return format(value, self.formats.get(column, ","))
        return str(value).replace("|", "\\|")

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.intro:
            out += [self.intro.strip(), ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            marks = row.get("_marks", {})
            cells = [marks.get(c) or self.cell(c, row.get(c)) for c in self.columns]
            out.append("| " + " | ".join(cells) + " |")
        if self.notes:
            out.append("")
            out += [f"- {note.strip()}" for note in self.notes]
        if self.extra:
            out += ["", self.extra.strip()]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["targets"] = [t.__dict__ for t in self.targets]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        data = dict(data)
        data["targets"] = [Target(**t) for t in data.get("targets", [])]
        return cls(**data)


def is_ratio(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


# ----------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import psutil
    import torch

    from core import compat

    try:
        ao_version = compat.torchao().__name__ and __import__("torchao").__version__
    except Exception as exc:  # pragma: no cover - reported, not fatal
        ao_version = f"unavailable ({exc})"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchao": ao_version,
        "threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ----------------------------------------------------------------------------- timing
def noise_probe() -> dict[str, float]:
    """Time of a small parallel op (GELU on 32x4096) at the default thread count vs one
    thread. Near 1 on a quiet machine; far above when another process holds a core, since
    every parallel region then waits for a time slice."""
    import torch

    x = torch.randn(32, 4096)
    f = torch.nn.GELU()
    threads = torch.get_num_threads()
    out = {}
    for n in (threads, 1):
        torch.set_num_threads(n)
        for _ in range(20):
            f(x)
        t0 = time.perf_counter()
        for _ in range(200):
            f(x)
        out[n] = (time.perf_counter() - t0) / 200 * 1e3
    torch.set_num_threads(threads)
    return {"threads_ms": out[threads], "one_ms": out[1], "ratio": out[threads] / out[1]}


def wait_for_quiet(limit_s: float, threshold: float = 1.5) -> dict[str, float]:
    """Wait (up to ``limit_s``) until the parallel-region probe says no other process holds
    a core; returns the last probe and how long it waited."""
    t0 = time.perf_counter()
    probe = noise_probe()
    while probe["ratio"] > threshold and time.perf_counter() - t0 < limit_s:
        time.sleep(5)
        probe = noise_probe()
    return {**probe, "waited_s": time.perf_counter() - t0}


def alternate(
    sides: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run the sides in turn ``repeats`` times (after ``warmup`` rounds); wall seconds."""
    for _ in range(warmup):
        for func in sides.values():
            func()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, func in sides.items():
            t0 = time.perf_counter()
            out = func()
            times[name].append(time.perf_counter() - t0)
            del out
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ----------------------------------------------------------------------------- models
def linear_stack(params: float, layers: int = 6, seed: int = 0):
    """A Sequential of ``layers`` square Linear + ReLU pairs holding about ``params`` weights."""
    import torch
    from torch import nn

    width = max(int((params / layers) ** 0.5), 4)
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods).eval()


def mlp(dims: Sequence[int] = (1024, 4096, 4096, 1024), seed: int = 0):
    """A Linear-heavy MLP (default 1024-4096-4096-1024, 25.2M parameters)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        mods.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            mods.append(nn.GELU())
    return nn.Sequential(*mods).eval()


def conv_net(widths: Sequence[int] = (32, 64, 128, 256), blocks: int = 2, classes: int = 10):
    """A small ResNet-like conv net (basic blocks, BatchNorm, strided stages), built by hand
    because torchvision is not installed. Default: 2.8M parameters, for 3x32x32 inputs."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.down = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(y)) + self.down(x))

    class ResNetish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
            )
            stages = []
            cin = widths[0]
            for i, w in enumerate(widths):
                layers = [Block(cin, w, 1 if i == 0 else 2)]
                layers += [Block(w, w, 1) for _ in range(blocks - 1)]
                stages.append(nn.Sequential(*layers))
                cin = w
            self.stages = nn.Sequential(*stages)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))

    torch.manual_seed(0)
    model = ResNetish().eval()
    # Non-trivial BatchNorm statistics, so the net is not an identity map after init.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.uniform_(-0.1, 0.1)
    return model


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def fp32_bytes(model) -> int:
    return sum(p.numel() * 4 for p in model.parameters())


# ----------------------------------------------------------------------------- processes
def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_child(
    module: str, args: Sequence[str], timeout: float = 600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --child ARGS`` and parse the JSON it prints last."""
    proc = subprocess.run(
        [PYTHON, "-m", f"benchmarks.{module}", "--child", *args],
        cwd=ROOT,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmarks.{module} {' '.join(args)} failed: " + " / ".join(tail))
    return json.loads(lines[-1])


def quiet_torchao() -> None:
    """Import torchao once, quietly (its CPU-machine chatter would end up in the report)."""
    from core import compat

    compat.torchao()


# ----------------------------------------------------------------------------- schemes
@dataclass(frozen=True)
class Scheme:
    scheme: str
    backend: str = "torchao"
    granularity: str = "per_channel"

    @property
    def label(self) -> str:
        if self.scheme in ("fp16", "bf16"):
            return self.scheme
        return f"{self.scheme} ({self.backend}, {self.granularity})"

    @property
    def int8(self) -> bool:
        return self.scheme.startswith("int8")

    def recipe(self, types: Sequence[str] = ("Linear",), prune: float | None = None):
        """A Recipe quantizing ``types`` with this scheme (int8 schemes: Linear only)."""
        from core.recipe import parse_recipe

        quant_types = ["Linear"] if self.int8 else list(types)
        doc: dict[str, Any] = {
            "version": 1,
            "quantize": {
                "scheme": self.scheme,
                "backend": self.backend,
                "granularity": self.granularity,
                "types": quant_types,
            },
        }
        if prune is not None:
            doc["prune"] = [{"types": list(types), "method": "l1_unstructured", "amount": prune}]
        return parse_recipe(json.dumps(doc), "bench")


SCHEMES: tuple[Scheme, ...] = (
    Scheme("int8_dynamic", "torchao", "per_channel"),
    Scheme("int8_dynamic", "torchao", "per_tensor"),
    Scheme("int8_dynamic", "legacy", "per_channel"),
    Scheme("int8_dynamic", "legacy", "per_tensor"),
    Scheme("int8_weight_only", "torchao", "per_channel"),
    Scheme("int8_weight_only", "torchao", "per_tensor"),
    Scheme("fp16"),
    Scheme("bf16"),
)


def compress_quiet(model, recipe, **kwargs: Any):
    """Run the engine to its end on an in-memory eager model; returns the CompressionResult."""
    from core.engine import compress, run
    from core.loading import LoadedModel

    return run(compress(LoadedModel(model, "bench", "pickle"), recipe, **kwargs))


def heartbeat() -> Any:
    """A started 1 ms Qt timer whose ``worst`` is the longest gap between its ticks: how long
    the event loop was blocked. Qt is imported here, so the other benchmarks never load it."""
    from PySide6.QtCore import QElapsedTimer, QObject, QTimer

    class Heartbeat(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.clock = QElapsedTimer()
            self.clock.start()
            self.last = 0
            self.worst = 0
            self.timer = QTimer(self)
            self.timer.setInterval(1)
            self.timer.timeout.connect(self.tick)
            self.timer.start()

        def tick(self) -> None:
            now = self.clock.elapsed()
            self.worst = max(self.worst, now - self.last)
            self.last = now

        def restart(self) -> None:
            self.last = self.clock.elapsed()
            self.worst = 0

    return Heartbeat()

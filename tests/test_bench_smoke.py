"""Smoke run of the benchmark suite at tiny sizes: every benchmark function runs and returns
well-formed figures whose ratios are positive finite numbers. No timing is asserted here;
the real figures come from `make bench` (docs/benchmarks.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common, run_all  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a shared 2-core machine a busy neighbour makes every parallel region
    wait for a time slice, and the smoke run only checks structure."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check(figures: list[common.Figure]) -> None:
    assert figures, "a benchmark returned no figure"
    for fig in figures:
        assert fig.key and fig.title and fig.columns
        assert fig.rows, f"{fig.key}: no rows"
        assert set(fig.ratios) <= set(fig.columns), fig.key
        measured = 0
        for row in fig.rows:
            assert {k for k in row if not k.startswith("_")} <= set(fig.columns), fig.key
            for col in fig.ratios:
                value = row.get(col)
                assert value is None or common.is_ratio(value), (
                    f"{fig.key}: {col} = {value!r} is not a positive finite ratio"
                )
                measured += value is not None
        pending = all(any("pending" in str(v) for v in row.values()) for row in fig.rows)
        assert measured or pending or not fig.ratios, f"{fig.key}: no ratio measured at all"
        text = fig.markdown()
        assert text.startswith(f"## {fig.title}") and "|---|" in text
        for target in fig.targets:
            assert target.holds in (True, False, None)


@pytest.mark.parametrize("name", run_all.MODULES)
def test_benchmark_runs_at_tiny_size(name: str) -> None:
    module = __import__(f"benchmarks.{name}", fromlist=["figures"])
    check(module.figures(tiny=True))


def test_report_renders(tmp_path: Path) -> None:
    fig = common.Figure("k", "A figure", ["case", "ratio"], ratios=["ratio"])
    fig.add(case="x", ratio=0.5)
    fig.targets.append(common.Target("x", "<= 1", "0.5", True))
    meta = {
        "machine": common.machine(),
        "probe_start": run_all.noise_probe(),
        "probe_end": run_all.noise_probe(),
        "seconds": {"k": 1.0},
    }
    out = tmp_path / "bench.md"
    run_all.write([fig], meta, tiny=True, path=out)
    text = out.read_text()
    assert common.cpu_model() in text and torch.__version__ in text
    assert "| x | 0.500 |" in text
    assert "Summary of targets" in text and "holds" in text

"""Sweeps on a Ray cluster (``--ray``): the same numbers as a local sweep, a layer that fails
to evaluate reported alone, a killed worker retried, Cancel, and the one-line refusals.

One local Ray instance with 2 CPUs serves the whole module (starting one takes seconds).
The models below live in this test module, which the workers cannot import by name: they
travel by value with the model, as a user's ``--arch FILE.py`` does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from core.cli import main
from core.cluster import RayEvaluator, _root_cause, local_modules
from core.data import Dataset
from core.errors import Cancelled
from core.loading import load_demo
from core.plan import PlanSettings, make_plan
from core.progress import run
from core.sensitivity import SweepSettings, allocate, fingerprint, sweep

ray = pytest.importorskip("ray", reason="the cluster extra is not installed")

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 16


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance, 2 CPUs, for every test of the module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Local sweeps at one torch thread, as every task runs: like for like (at more threads
    the kernels may sum in another order, a difference in the ninth decimal)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo():
    return load_demo()


class Stack(nn.Module):
    """``depth`` Linear layers with ReLUs between them."""

    def __init__(self, depth: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(depth))
        self.driver = os.getpid()  # the test process: hooks below act only in a worker

    def in_worker(self) -> bool:
        return os.getpid() != self.driver

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == 0 else layer(torch.relu(x))
        return x


class Fragile(Stack):
    """Cannot run with its third layer pruned (wherever it runs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((self.layers[2].weight == 0).any()):
            raise RuntimeError("layer 2 cannot run pruned")
        return super().forward(x)


class DiesOnce(Stack):
    """The first forward pass in a Ray worker kills that worker's process (SIGKILL, as the
    out-of-memory killer would); the marker file, written first, makes it happen once."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_worker():
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


class Slow(Stack):
    """Each forward pass in a worker takes ``delay`` seconds."""

    delay = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_worker():
            time.sleep(self.delay)
        return super().forward(x)


def _data(samples: int = 32) -> Dataset:
    gen = torch.Generator().manual_seed(1)
    return Dataset(torch.randn(samples, WIDTH, generator=gen), None, "random")


def _sweep(model, data, settings, evaluator=None, use_cache=False, **kwargs):
    events = []
    result = run(
        sweep(model, data, settings, evaluator=evaluator, use_cache=use_cache, **kwargs),
        events.append,
    )
    return result, events


def test_same_json_locally_and_through_ray(ray_local, demo) -> None:
    loaded, test, _ = demo
    settings = SweepSettings(amounts=(0.3, 0.7), quantize="int8_dynamic", subset=200)
    local, local_events = _sweep(loaded.model, test, settings)
    evaluator = RayEvaluator("local")
    on_ray, ray_events = _sweep(loaded.model, test, settings, evaluator, use_cache=True)
    assert json.dumps(on_ray.data) == json.dumps(local.data)
    assert [row["name"] for row in on_ray.data["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    # the cache entry a Ray sweep writes is the one a local sweep reads
    key = fingerprint(loaded.model, test.subset(200), settings)
    assert on_ray.cache_path is not None and on_ray.cache_path.name == f"{key}.json"
    assert _sweep(loaded.model, test, settings, use_cache=True)[0].cached
    # the same events, a layer's trials before its row; steps rise to the same total
    assert sorted(e.message for e in ray_events) == sorted(e.message for e in local_events)
    steps = [e.step for e in ray_events]
    assert steps == sorted(steps) and steps[-1] == ray_events[-1].total == local_events[-1].total
    rows = [e.layer["name"] for e in ray_events if e.layer is not None]
    assert sorted(rows) == ["conv1", "conv2", "fc1", "fc2"]
    assert evaluator.status.connected and evaluator.status.workers == 2
    assert (evaluator.status.done, evaluator.status.tasks) == (4, 4)
    assert evaluator.stats.workers_used == 2  # one task per layer, spread over both CPUs


def test_a_layer_that_fails_is_reported_alone_and_not_cached(ray_local, tmp_path) -> None:
    model, data = Fragile().eval(), _data()
    assert [m.__name__ for m in local_modules(model)] == [__name__]  # shipped by value
    settings = SweepSettings(amounts=(0.5,))
    evaluator = RayEvaluator("local")
    result, events = _sweep(model, data, settings, evaluator, use_cache=True)
    rows = {row["name"]: row for row in result.data["layers"]}
    failed = rows.pop("layers.2")
    assert failed["points"] == [] and "layer 2 cannot run pruned" in failed["failed"]
    assert all(len(row["points"]) == 1 and "failed" not in row for row in rows.values())
    assert result.cache_path is None and not (tmp_path / "cache").exists()
    assert "1 of 4 layers failed" in result.notes[0]
    assert any(e.layer and e.layer.get("failed") for e in events)
    assert evaluator.status.failed == 1
    # a local sweep says the same; the allocation leaves the failed layer out
    assert _sweep(model, data, settings)[0].data == result.data
    assert "layers.2" not in allocate(result.data, target_sparsity=0.3)


def test_random_methods_prune_the_same_weights_on_ray(ray_local) -> None:
    model, data = Stack().eval(), _data()
    settings = SweepSettings(method="random_unstructured", amounts=(0.3, 0.6))
    torch.rand(7)  # the caller's random stream: not the sweep's business
    state = torch.random.get_rng_state()
    local = _sweep(model, data, settings)[0].data
    assert torch.equal(torch.random.get_rng_state(), state)
    assert _sweep(model, data, settings, RayEvaluator("local"))[0].data == local


def test_a_killed_worker_is_retried_and_the_sweep_completes(ray_local, tmp_path) -> None:
    marker = tmp_path / "killed"
    model, data = DiesOnce(marker).eval(), _data()
    settings = SweepSettings(amounts=(0.5,))
    result, _ = _sweep(model, data, settings, RayEvaluator("local"))
    killed = int(marker.read_text())
    with pytest.raises(ProcessLookupError):  # that worker is gone, its task ran again
        os.kill(killed, 0)
    assert all(len(row["points"]) == 1 and "failed" not in row for row in result.data["layers"])
    assert _sweep(model, data, settings)[0].data == result.data


def test_cancel_cancels_the_outstanding_tasks(ray_local) -> None:
    model, data = Slow(depth=8).eval(), _data(4)
    evaluator = RayEvaluator("local")
    # both workers up first (one may be starting after the killed-worker test): a task
    # cancelled while its worker still imports torch ends only once the import is done
    _sweep(Slow(depth=2).eval(), data, SweepSettings(amounts=(0.5,)), evaluator)
    rows: list[tuple[float, dict]] = []

    def stop() -> bool:
        return bool(rows)  # Cancel as soon as the first layer is back

    def on_event(event) -> None:
        if event.layer is not None:
            rows.append((time.perf_counter(), event.layer))

    with pytest.raises(Cancelled):
        run(sweep(model, data, SweepSettings(amounts=(0.5,)), stop, False, evaluator), on_event)
    after_first = time.perf_counter() - rows[0][0]
    assert len(rows) == 1 and evaluator.status.cancelled == 8 - evaluator.status.done
    # the running task was interrupted, the queued ones never started: no 3.5 s more of
    # work, and not the CANCEL_WAIT_S a task that ignored its cancel would cost
    assert after_first < 2 * Slow.delay
    deadline = time.monotonic() + 5
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == 2  # both workers free again


def test_plan_fidelity_on_ray_and_timing_here(ray_local) -> None:
    model, data = Stack().eval(), _data()
    layers = [f"layers.{i}" for i in range(4)]
    settings = PlanSettings(("float", "bf16"), max_drop=0.05)
    evaluator = RayEvaluator("local")
    on_ray = run(make_plan(model, data, layers, settings, use_cache=False, evaluator=evaluator))
    local = run(make_plan(model, data, layers, settings, use_cache=False))
    assert len(evaluator.stats.task_seconds) == len(layers)  # one task per layer, no timing
    for a, b in zip(on_ray.layers, local.layers):
        assert a["candidates"]["bf16"]["metric"] == b["candidates"]["bf16"]["metric"]
        assert a["candidates"]["bf16"]["ms"] > 0  # timed in this process
    assert on_ray.chosen in ("plan", "float", "uniform:bf16")


def test_cli_ray_local_writes_what_a_local_run_writes(ray_local, tmp_path, capsys) -> None:
    common = ["sensitivity", "--demo", "--subset", "100", "--amounts", "0.5", "--no-cache"]
    assert main([*common, "--output", str(tmp_path / "local.json")]) == 0
    assert main([*common, "--ray", "local", "--output", str(tmp_path / "ray.json")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "ray.json").read_text() == (tmp_path / "local.json").read_text()
    assert "evaluated on Ray local: 2 workers, 4/4 tasks done" in out
    plan = ["plan", "--demo", "--candidates", "float,bf16", "--ray", "local"]
    assert main([*plan, "--emit-recipe", str(tmp_path / "plan.yaml")]) == 0
    assert "evaluated on Ray local" in capsys.readouterr().out


REFUSALS = """
import socket, sys, threading
sys.modules["ray"] = None  # as if the extra were not installed
from core.cli import main
argv = ["sensitivity", "--demo", "--output", sys.argv[1], "--ray"]
codes = [main([*argv, "local"])]
del sys.modules["ray"]
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
codes.append(main([*argv, f"127.0.0.1:{closed.getsockname()[1]}"]))  # nothing listens
other = socket.socket()
other.bind(("127.0.0.1", 0))
other.listen()

def serve():
    while True:
        conn, _ = other.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\\r\\n\\r\\n")
        conn.close()

threading.Thread(target=serve, daemon=True).start()
codes.append(main([*argv, f"127.0.0.1:{other.getsockname()[1]}"]))  # not a Ray cluster
codes.append(main([*argv, "nonsense"]))
print(codes)
"""


def test_missing_ray_and_bad_addresses_exit_2_with_one_line(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SECATEUR_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", REFUSALS, str(tmp_path / "s.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.stdout.strip() == "[2, 2, 2, 2]", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 4, proc.stderr
    assert "pip install 'secateur[cluster]'" in lines[0]
    assert "--ray 127.0.0.1:" in lines[1] and "no Ray cluster reachable" in lines[1]
    assert "--ray 127.0.0.1:" in lines[2] and "not a Ray cluster" in lines[2]
    assert "'nonsense' is not local, auto, HOST:PORT" in lines[3]
    assert not (tmp_path / "s.json").exists()


def test_without_ray_nothing_imports_it(tmp_path) -> None:
    code = (
        "import sys\n"
        "from core.cli import main\n"
        "from core.parser import parse\n"
        "assert main(['sensitivity', '--demo', '--subset', '50', '--amounts', '0.5', "
        f"'--output', {str(tmp_path / 's.json')!r}]) == 0\n"
        "print('ray' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SECATEUR_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_a_connection_failure_names_its_root_cause() -> None:
    folded = RuntimeError(
        "Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: token missing\n"
    )
    try:
        try:
            raise folded
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at h:1") from inner
    except ConnectionError as outer:
        assert (
            _root_cause(outer) == "AuthenticationError: RPC error: InvalidAuthToken: token missing"
        )
    assert _root_cause(ValueError("Invalid address format: x")) == (
        "ValueError: Invalid address format: x"
    )

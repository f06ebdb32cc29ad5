"""Sweeps on a Ray cluster: the sensitivity sweep's per-layer evaluations as Ray tasks.

``RayEvaluator`` is an ``core.sensitivity.Evaluator``: ``sweep(..., evaluator=...)`` hands it
the prepared job (the model, the data, the original's outputs) and the layer names; it puts
the job into Ray's object store once, submits one task per layer (all its amounts and
candidates), and yields each layer's trials and row as its task finishes (``ray.wait``). The
task runs ``core.sensitivity.evaluate_layer``, the same function a local sweep runs, so the
numbers, the rows and the cache key are the same. Ray does the scheduling, retries a task
whose worker died (``max_retries``) and cancels (``ray.cancel``); nothing here schedules.

Only evaluations go to the cluster. Latency (the plan's per-layer and end-to-end timing) is
always measured in this process: it is this machine the plan is for.

Ray is imported when a ``RayEvaluator`` connects, never at import time, so ``secateur
--help`` and every sweep without ``--ray`` run without it. It comes with the optional extra
``secateur[cluster]``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import logging
import math
import os
import re
import socket
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from core.data import Dataset
from core.errors import Cancelled, ClusterError, first_line
from core.progress import run
from core.sensitivity import LayerDone, SweepJob, Trial, evaluate_layer, failed_row

LOCAL = "local"
INSTALL_HINT = (
    "install the cluster extra: pip install 'secateur[cluster]' (in a checkout: "
    ".venv/bin/pip install -e '.[cluster]')"
)
CONNECT_TIMEOUT_S = 5.0  # an address that does not answer within this is reported at once
POLL_S = 0.1  # how often a waiting sweep looks at its stop flag
CANCEL_WAIT_S = 3.0  # how long a cancelled sweep waits for its tasks to stop
MAX_RETRIES = 3  # times Ray reruns a task whose worker process died
# The HTTP/2 client greeting and an empty SETTINGS frame: a gRPC server answers with its own
# SETTINGS frame (frame type 4).
HTTP2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4
# A traceback's last line: "package.module.SomeError: message"
RAISED_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")
# Packages the workers import by name (installed there, or shipped by this module); the
# model's classes from anywhere else are sent by value with the model.
SHIPPED = ("core", "gui")


@dataclass
class ClusterStatus:
    """What a view shows of the cluster: connected, how many workers, tasks done."""

    address: str
    connected: bool = False
    nodes: int = 0
    workers: int = 0  # CPUs: evaluations that run at once
    tasks: int = 0  # tasks of the current (or last) sweep
    done: int = 0
    failed: int = 0
    cancelled: int = 0

    def text(self) -> str:
        """One line for a status bar, e.g. 'Ray local: 2 workers, 7/20 tasks done'."""
        if not self.connected:
            return f"Ray {self.address}: not connected"
        nodes = f"{self.nodes} nodes, " if self.nodes > 1 else ""
        text = f"Ray {self.address}: {nodes}{self.workers} worker{'s' * (self.workers != 1)}"
        if self.tasks:
            text += f", {self.done}/{self.tasks} tasks done"
            if self.failed:
                text += f", {self.failed} failed"
            if self.cancelled:
                text += f", {self.cancelled} cancelled"
        return text


@dataclass
class TaskResult:
    """What one layer's task sends back: its trials and row, and what it cost."""

    trials: list[Trial]
    row: dict[str, Any]
    seconds: float  # evaluating the layer
    fetch_seconds: float  # getting the job from the object store (0 when the worker had it)
    pid: int


@dataclass
class RunStats:
    """The costs of the last sweep on the cluster, for benchmarks and logs."""

    put_seconds: float = 0.0  # the job into the object store, once
    task_seconds: list[float] = field(default_factory=list)
    fetch_seconds: list[float] = field(default_factory=list)
    workers_used: int = 0  # distinct worker processes that ran a task
    wall_seconds: float = 0.0


def import_ray() -> ModuleType:
    """Ray, or a ``ClusterError`` that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ClusterError(f"--ray: Ray is not installed; {INSTALL_HINT}") from None


class RayEvaluator:
    """Evaluates a sweep's layers as Ray tasks, on ``address``: ``local`` starts a Ray
    instance on this machine (``num_cpus`` workers, default all cores); anything else is a
    cluster address (``HOST:PORT`` of the head node, ``auto``, or ``ray://HOST:PORT`` with
    Ray Client installed). ``on_status`` is called with a copy of ``status`` whenever it
    changes, from the thread that runs the sweep."""

    def __init__(
        self,
        address: str = LOCAL,
        num_cpus: int | None = None,
        max_retries: int = MAX_RETRIES,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        on_status: Callable[[ClusterStatus], None] | None = None,
    ) -> None:
        if not address.strip():
            raise ClusterError("--ray: give local or a cluster address (HOST:PORT)")
        self.address = address.strip()
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.connect_timeout_s = connect_timeout_s
        self.on_status = on_status
        self.status = ClusterStatus(self.address)
        self.stats = RunStats()
        self._started = False  # this object started the Ray instance (and shuts it down)

    # ------------------------------------------------------------------ connection
    def connect(self) -> ClusterStatus:
        """Start or join the cluster (once); a ``ClusterError`` names what failed."""
        ray = import_ray()
        if ray.is_initialized() and not self._started:
            self._check_same_cluster(ray)
        if not ray.is_initialized():
            if self.address != LOCAL:
                check_reachable(self.address, self.connect_timeout_s)
            try:
                _init(ray, self.address, self.num_cpus, self.connect_timeout_s)
            except Exception as exc:
                raise ClusterError(
                    f"--ray {self.address}: cannot connect ({_root_cause(exc)})"
                ) from None
            self._started = True
        self._refresh(ray)
        return self.status

    def _check_same_cluster(self, ray: ModuleType) -> None:
        """This process is already connected (a Ray driver joins one cluster at a time):
        ``local`` uses that instance; an address must be the one it is connected to."""
        if self.address in (LOCAL, "auto"):
            return
        current = ray.get_runtime_context().gcs_address
        if current != self.address and not _same_host_port(current, self.address):
            raise ClusterError(
                f"--ray {self.address}: this process is already connected to the Ray "
                f"cluster at {current}; close that first"
            )

    def close(self) -> None:
        """Leave the cluster; a local instance this object started is shut down."""
        if self._started:
            import_ray().shutdown()
            self._started = False
        self.status.connected = False
        self._changed()

    def __enter__(self) -> RayEvaluator:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh(self, ray: ModuleType) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.status.connected = True
        self.status.nodes = len(nodes)
        self.status.workers = int(ray.cluster_resources().get("CPU", 0))
        self._changed()

    def _changed(self) -> None:
        if self.on_status is not None:
            self.on_status(dataclasses.replace(self.status))

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, job: SweepJob, names: Sequence[str], should_stop: Callable[[], bool]
    ) -> Iterator[Trial | LayerDone]:
        """One task per layer; each layer's trials and row as its task finishes."""
        ray = import_ray()
        self.connect()
        t0 = time.perf_counter()
        self.stats = RunStats()
        try:
            with _by_value(job.model):
                job_ref = ray.put(_compact(job))
        except Exception as exc:  # a model pickle cannot hold (a lambda, an open file...)
            raise ClusterError(
                f"--ray {self.address}: the model cannot be sent to the cluster "
                f"({type(exc).__name__}: {first_line(exc, 200)})"
            ) from None
        self.stats.put_seconds = time.perf_counter() - t0
        task = _remote_task(ray).options(max_retries=self.max_retries)
        # The job's reference goes in a list, so Ray passes the reference, not the object:
        # a worker fetches the job once and keeps it for the next layer of the same sweep.
        pending = {task.remote([job_ref], name): name for name in names}
        pids: set[int] = set()
        self.status.tasks, self.status.done = len(names), 0
        self.status.failed = self.status.cancelled = 0
        self._changed()
        try:
            while pending:
                if should_stop():
                    raise Cancelled()
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    name = pending.pop(ref)
                    result = self._result(ray, ref, job, name)
                    if result.pid > 0:  # the task ran to its end in a worker
                        pids.add(result.pid)
                        self.stats.task_seconds.append(result.seconds)
                        self.stats.fetch_seconds.append(result.fetch_seconds)
                    self.status.done += 1
                    self.status.failed += "failed" in result.row
                    self._changed()
                    yield from result.trials
                    yield LayerDone(name, result.row)
        finally:
            if pending:  # cancelled, or the consumer went away: stop the outstanding tasks
                self._cancel(ray, list(pending))
            self.stats.workers_used = len(pids)
            self.stats.wall_seconds = time.perf_counter() - t0
            del job_ref  # the object store frees the job once no task holds it

    def _result(self, ray: ModuleType, ref: Any, job: SweepJob, name: str) -> TaskResult:
        """The task's result; a task Ray could not finish (its worker died more than
        ``max_retries`` times, the job could not be read there) is a failed row."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            reason = f"{type(cause).__name__}: {first_line(cause, 200)}"
            return TaskResult([], failed_row(job.model, name, reason), 0.0, 0.0, -1)

    def _cancel(self, ray: ModuleType, refs: list[Any]) -> None:
        for ref in refs:
            ray.cancel(ref)
        # Wait briefly for them to end, so the workers are free when the sweep returns.
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
        self.status.cancelled = len(refs)
        self._changed()


def connect(address: str, **options: Any) -> RayEvaluator:
    """A connected ``RayEvaluator`` for ``--ray ADDRESS`` (see ``RayEvaluator``)."""
    evaluator = RayEvaluator(address, **options)
    evaluator.connect()
    return evaluator


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse at once an address where no Ray cluster answers within ``timeout_s``: Ray
    itself retries for minutes against a closed port or a silent peer. A Ray head (and a
    Ray Client server) speaks gRPC, so it answers the HTTP/2 greeting with its settings."""
    if address == "auto":
        return  # Ray looks up the cluster this machine belongs to, and fails quickly
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--ray: {address!r} is not local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS cluster does not answer a plain greeting
            conn.settimeout(timeout_s)
            conn.sendall(HTTP2_GREETING)
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(
            f"--ray {address}: no Ray cluster reachable there ({why} within {timeout_s:g} s)"
        ) from None
    if len(head) < 9 or head[3] != HTTP2_SETTINGS:
        raise ClusterError(f"--ray {address}: something answers there, but not a Ray cluster")


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of ``exc``, in one line: Ray wraps what went wrong (a cluster
    that wants an authentication token, another Ray version) in a bare "Failed to
    connect"."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    # Ray also folds an earlier traceback into a message: its last exception line is why
    raised = [line for line in str(exc).splitlines() if RAISED_LINE.match(line)]
    if "Traceback (most recent call last)" in str(exc) and raised:
        name, _, message = raised[-1].partition(": ")
        return f"{name.rpartition('.')[2]}: {first_line(ValueError(message), 240)}"
    return f"{type(exc).__name__}: {first_line(exc, 240)}"


def _same_host_port(a: str, b: str) -> bool:
    """Whether two HOST:PORT addresses name the same endpoint (names resolved)."""
    try:
        (ha, _, pa), (hb, _, pb) = a.rpartition(":"), b.removeprefix("ray://").rpartition(":")
        return pa == pb and socket.gethostbyname(ha) == socket.gethostbyname(hb)
    except OSError:
        return False


def _init(ray: ModuleType, address: str, num_cpus: int | None, timeout_s: float) -> None:
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address == LOCAL:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
        return
    # The workers of a remote cluster get this very core package (the evaluation code
    # must be the one that computed the local numbers); torch and the model's libraries
    # must be installed there.
    runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
    # Ray retries a GCS that does not answer about once a second, 20 times by default,
    # each retry a warning line from its C++ client: here the retries fit in the connect
    # timeout and their lines are dropped (the failure becomes one line of ours).
    retries = str(max(1, math.ceil(timeout_s)))
    with _environ(RAY_gcs_server_port_wait_time_s=retries), _native_stderr_dropped():
        ray.init(address=address, runtime_env=runtime_env, **quiet)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Environment variables set for the duration of the block, then restored."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _native_stderr_dropped() -> Iterator[None]:
    """File descriptor 2 sent to a scratch file for the duration of the block (Ray's C++
    client writes there directly); what was written is passed on if the block succeeds."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                scratch.seek(0)
                sys.stderr.write(scratch.read().decode(errors="replace"))


# ---------------------------------------------------------------------- the worker side
_REMOTE: list[Any] = []  # evaluate_in_worker as a remote function, made once
# The job of the sweep this worker process is evaluating, and its private copy of the model:
# {"key": object id, "job": SweepJob, "work": nn.Module}. One at a time.
_WORKER_JOB: dict[str, Any] = {}


def _remote_task(ray: ModuleType) -> Any:
    """``evaluate_in_worker`` as a Ray remote function (made once per process)."""
    if not _REMOTE:
        # one CPU per task: an evaluation runs on one thread, as many at once as CPUs
        _REMOTE.append(ray.remote(num_cpus=1, retry_exceptions=False)(evaluate_in_worker))
    return _REMOTE[0]


def evaluate_in_worker(boxed_job: list[Any], name: str) -> TaskResult:
    """Runs in a Ray worker: layer ``name`` of the job (fetched once per worker)."""
    ray = import_ray()
    t0 = time.perf_counter()
    ref = boxed_job[0]
    key = ref.hex()
    if _WORKER_JOB.get("key") != key:
        _WORKER_JOB.clear()
        job = ray.get(ref)
        _WORKER_JOB.update(key=key, job=job, work=copy.deepcopy(job.model).eval())
    fetched = time.perf_counter()
    job, work = _WORKER_JOB["job"], _WORKER_JOB["work"]
    trials: list[Trial] = []
    row = run(evaluate_layer(job, work, name), trials.append)
    if "failed" in row:  # the copy may be left half-changed: the next task makes a new one
        _WORKER_JOB.clear()
    seconds = time.perf_counter() - fetched
    return TaskResult(trials, row, seconds, fetched - t0, os.getpid())


# ------------------------------------------------------------------------- shipping
def _compact(job: SweepJob) -> SweepJob:
    """The job with its data copied out of any larger tensor it views (a subset of a big
    file would otherwise carry the whole file into the object store)."""

    def own(t: torch.Tensor) -> torch.Tensor:
        return t.clone() if t.untyped_storage().nbytes() > t.nbytes else t

    x = job.data.x
    if isinstance(x, torch.Tensor):
        x = own(x)
    elif isinstance(x, tuple):
        x = tuple(own(t) for t in x)
    else:
        x = {k: own(t) for k, t in x.items()}
    y = None if job.data.y is None else own(job.data.y)
    return dataclasses.replace(job, data=Dataset(x, y, job.data.source))


def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")]


def local_modules(model: nn.Module) -> list[ModuleType]:
    """The modules that define the model's classes and are not installed packages: an
    ``--arch FILE.py``, a script, a checkout. A worker could not import them by name, so
    they travel by value with the model."""
    roots = _installed_roots()
    found: dict[str, ModuleType] = {}
    for cls in {type(m) for m in model.modules()}:
        for klass in cls.__mro__:
            name = klass.__module__
            if name in found or name.split(".")[0] in SHIPPED or name == "builtins":
                continue
            module = sys.modules.get(name)
            file = getattr(module, "__file__", None)
            if module is None or file is None:
                continue
            path = Path(file).resolve()
            if not any(path.is_relative_to(root) for root in roots):
                found[name] = module
    return list(found.values())


@contextlib.contextmanager
def _by_value(model: nn.Module) -> Iterator[None]:
    """Pickle the model's local modules by value while the job is put in the store."""
    cloudpickle = import_ray().cloudpickle  # Ray's own copy, the one ray.put uses
    modules = [m for m in local_modules(model) if m.__name__ != "__main__"]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        for module in modules:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(module)

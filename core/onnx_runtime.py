"""ONNX files in ONNX Runtime: sessions, the round trip, paired latency against torch, and
what ``secateur inspect`` shows of an ONNX file (detected by content)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import Cancelled, ModelLoadError, UnsupportedError, first_line
from core.metrics import flatten_outputs
from core.onnx_export import (
    INT8_TOLERANCE,
    PROVIDER,
    QUANTIZED_OPS,
    example_tensors,
    input_names,
    load_proto,
    rebatch,
)


# ----------------------------------------------------------------------------- running
def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads (default: torch's count)
    and one inter-op thread: the same parallelism torch eager uses for one forward pass."""
    import onnxruntime as ort

    count = threads if threads is not None else torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = count
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings reach the user as exceptions
    if count > 1:
        # Idle workers would spin between runs and steal the cores from the torch runs
        # that alternate with them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=[PROVIDER])


def _feed(session: Any, names: list[str], tensors: list[torch.Tensor]) -> dict[str, np.ndarray]:
    arrays = dict(zip(names, tensors))
    feed = {}
    for item in session.get_inputs():
        if item.name not in arrays:
            raise UnsupportedError(
                f"the ONNX file wants an input {item.name!r} the example does not have "
                f"(it has {', '.join(names)})"
            )
        feed[item.name] = arrays[item.name].detach().cpu().numpy()
    return feed


def _torch_outputs(model: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [t.detach().float() for t in flatten_outputs(model(*args, **kwargs))]


def verify_onnx(
    model: nn.Module,
    path: str | Path,
    args: tuple,
    kwargs: dict,
    int8: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the file in onnxruntime on the example and at another batch size; compare with
    the torch model. Returns ``{ok, max_abs_error, ...}`` like core.saving.verify_round_trip,
    plus ``batch_sizes`` checked, ``relative_error`` and ``runtime``; ``reason`` when not ok.

    A float file must match to 1e-4 of the output scale; an int8 file differs from the float
    model by its quantization, so it must stay within ``INT8_TOLERANCE`` relative error
    (a wrongly wired file is off by ~100%)."""
    path = Path(path)
    try:
        tensors = example_tensors(args, kwargs, path)
        names = input_names(model, args, kwargs)
        session = open_session(path, threads)
        batch = int(tensors[0].shape[0]) if tensors[0].dim() else 1
        checks = [(batch, tensors)]
        other = batch + 3
        checks.append((other, rebatch(tensors, other)))
        worst = rel_worst = 0.0
        scale = 1.0
        sizes = []
        for size, inputs in checks:
            pos, kw = inputs[: len(args)], dict(zip(names[len(args) :], inputs[len(args) :]))
            try:
                expected = _torch_outputs(model, tuple(pos), kw)
            except Exception:
                if size != batch:
                    continue  # the torch model itself takes only its own batch size
                raise
            got = [
                torch.from_numpy(np.asarray(a)).float()
                for a in session.run(None, _feed(session, names, inputs))
            ]
            if len(got) != len(expected) or any(a.shape != b.shape for a, b in zip(expected, got)):
                ours = [tuple(t.shape) for t in got]
                theirs = [tuple(t.shape) for t in expected]
                reason = f"outputs differ in shape at batch {size}: {ours} vs {theirs}"
                return {"ok": False, "max_abs_error": None, "reason": reason}
            for a, b in zip(expected, got):
                if a.numel():
                    worst = max(worst, float((a - b).abs().max()))
                    scale = max(scale, float(a.abs().max()))
                norm = float(a.norm())
                rel = float((a - b).norm()) / norm if norm > 0 else float((a - b).norm())
                rel_worst = max(rel_worst, rel)
            sizes.append(size)
    except Exception as exc:
        return {"ok": False, "max_abs_error": None, "reason": first_line(exc, 200)}
    out: dict[str, Any] = {
        "max_abs_error": worst,
        "relative_error": rel_worst,
        "batch_sizes": sizes,
        "runtime": runtime_label("onnxruntime", threads),
    }
    if int8:
        out["ok"] = rel_worst <= INT8_TOLERANCE
        if not out["ok"]:
            out["reason"] = (
                f"int8 outputs are {rel_worst:.1%} off the float model's (more than "
                f"{INT8_TOLERANCE:.0%}: not a rounding difference)"
            )
    else:
        out["ok"] = worst <= 1e-4 * scale
        if not out["ok"]:
            out["reason"] = f"outputs differ by up to {worst:.3g} (output scale {scale:.3g})"
    return {"ok": out.pop("ok"), **out}


def runtime_label(runtime: str, threads: int | None = None) -> str:
    """How reports name where a latency was measured: 'onnxruntime 1.32.0 (CPU, 1 thread)'."""
    count = threads if threads is not None else torch.get_num_threads()
    plural = "s" if count != 1 else ""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__} ({PROVIDER}, {count} thread{plural})"
    return f"torch {torch.__version__} eager (CPU, {count} thread{plural})"


@dataclass
class RuntimeLatency:
    """Median forward times of the torch model and of the ONNX file, measured alternately."""

    torch_ms: float
    onnxruntime_ms: float
    batch: int
    threads: int
    torch_runtime: str
    onnxruntime_runtime: str

    @property
    def ratio(self) -> float:
        """onnxruntime / torch (below 1: the file runs faster)."""
        return self.onnxruntime_ms / self.torch_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "torch_ms": self.torch_ms,
            "torch_runtime": self.torch_runtime,
            "onnxruntime_ms": self.onnxruntime_ms,
            "onnxruntime_runtime": self.onnxruntime_runtime,
            "batch": self.batch,
            "threads": self.threads,
        }


def paired_onnx_latency_ms(
    model: nn.Module,
    path: str | Path,
    args: tuple,
    kwargs: dict,
    threads: int | None = None,
    min_runs: int = 10,
    max_runs: int = 200,
    budget_s: float = 1.0,
    warmup: int = 3,
    should_stop: Callable[[], bool] | None = None,
    session: Any = None,
) -> RuntimeLatency:
    """Median forward time of the torch model and of the ONNX file in onnxruntime, in
    blocks of 3 runs alternating on the same input, at the same thread count (torch's
    intra-op threads and the session's intra-op threads; one inter-op thread each), as
    ``core.metrics.paired_latency_ms`` does for two torch models."""
    count = threads if threads is not None else torch.get_num_threads()
    tensors = example_tensors(args, kwargs, Path(path))
    names = input_names(model, args, kwargs)
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        session = session or open_session(path, count)
        feed = _feed(session, names, tensors)
        times: tuple[list[float], list[float]] = ([], [])
        runs = (lambda: model(*args, **kwargs), lambda: session.run(None, feed))
        with torch.inference_mode():
            for run in runs:
                for _ in range(warmup):
                    run()
            start = time.perf_counter()
            while len(times[0]) < min_runs or (
                len(times[0]) < max_runs and time.perf_counter() - start < budget_s
            ):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                for run, bucket in zip(runs, times):
                    for _ in range(3):
                        t0 = time.perf_counter()
                        run()
                        bucket.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(saved)
    batch = int(tensors[0].shape[0]) if tensors[0].dim() else 1
    return RuntimeLatency(
        statistics.median(times[0]) * 1000.0,
        statistics.median(times[1]) * 1000.0,
        batch,
        count,
        runtime_label("torch", count),
        runtime_label("onnxruntime", count),
    )


# ----------------------------------------------------------------------------- inspecting
# ModelProto's fields as a protobuf writer emits them, in field order: the first byte is
# the tag of ir_version (field 1, varint), then a small version, then the next field's tag.
_MODEL_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}


def looks_like_onnx(head: bytes) -> bool:
    """True when the first bytes of a file look like a serialised ONNX ModelProto."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _MODEL_TAGS


def is_onnx(path: str | Path) -> bool:
    """Content detection for core.loading (the extension is not trusted)."""
    try:
        with Path(path).open("rb") as fh:
            return looks_like_onnx(fh.read(3))
    except OSError:
        return False


def read_onnx(path: str | Path) -> Any:
    """Load and check an ONNX file (an ``onnx.ModelProto``, external data loaded).

    A damaged, truncated or non-ONNX file, or one whose external data file is missing or
    points outside its folder, raises ModelLoadError with one line naming the file."""
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[Any, set[str]]:
    """The checked ModelProto and the names of its external data files."""
    import onnx
    from google.protobuf.message import DecodeError

    name = path.name
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{name}: is empty (0 bytes)")
    try:
        proto = load_proto(path, external=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(
            f"{name}: is damaged or truncated, not a readable ONNX model ({first_line(exc, 120)})"
        ) from None
    locations = set()
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            locations.add(entries.get("location", ""))
    for location in locations:
        if not location or Path(location).name != location or location in (".", ".."):
            raise ModelLoadError(
                f"{name}: names external data {location!r} outside its own folder; refused"
            )
        if not (path.parent / location).is_file():
            raise ModelLoadError(f"{name}: its weights file {location} is missing beside it")
    try:
        if locations:
            onnx.checker.check_model(str(path))  # by path: the checker reads the data file
            onnx.load_external_data_for_model(proto, str(path.parent))
        else:
            onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelLoadError(
            f"{name}: is damaged or truncated, not a valid ONNX model ({first_line(exc, 160)})"
        ) from None
    if not proto.graph.node:
        raise ModelLoadError(f"{name}: is an ONNX model without any node (damaged?)")
    return proto, locations


@dataclass(frozen=True)
class OnnxLayer:
    """One node of the graph as a row of the layer table."""

    name: str
    op: str
    parameters: int  # elements of the initializers it is the first to use
    shape: tuple[int, ...] | None  # of its largest initializer (its weight)
    dtype: str | None
    sparsity: float | None


@dataclass
class OnnxSummary:
    """What ``secateur inspect`` shows for an ONNX file."""

    path: Path
    file_bytes: int
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[tuple[str, tuple[int | str, ...], str]]
    outputs: list[tuple[str, tuple[int | str, ...], str]]
    layers: list[OnnxLayer]
    parameters: int
    int8: bool


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def onnx_layers(proto: Any) -> list[OnnxLayer]:
    """One row per node, in graph order: its op and the weight it holds."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    seen: set[str] = set()
    rows = []
    for index, node in enumerate(proto.graph.node):
        own = [inits[n] for n in node.input if n in inits]
        params = 0
        for tensor in own:
            if tensor.name not in seen:
                seen.add(tensor.name)
                params += int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1
        weight = max(own, key=lambda t: int(np.prod(t.dims, dtype=np.int64)), default=None)
        shape = dtype = sparsity = None
        if weight is not None and len(weight.dims) > 0:
            shape = tuple(int(d) for d in weight.dims)
            dtype = _dtype_name(weight.data_type)
            values = numpy_helper.to_array(weight)
            if values.size:
                sparsity = 1.0 - float(np.count_nonzero(values)) / values.size
        rows.append(
            OnnxLayer(
                node.name or f"{node.op_type}_{index}", node.op_type, params, shape, dtype, sparsity
            )
        )
    return rows


def _value_info(value: Any) -> tuple[str, tuple[int | str, ...], str]:
    kind = value.type.tensor_type
    dims = tuple(d.dim_param or d.dim_value for d in kind.shape.dim)
    return value.name, dims, _dtype_name(kind.elem_type)


def describe_onnx(path: str | Path) -> OnnxSummary:
    """The checked file's inputs, outputs and layer table (ModelLoadError when damaged)."""
    path = Path(path)
    proto, data_files = _read(path)
    layers = onnx_layers(proto)
    size = path.stat().st_size + sum((path.parent / f).stat().st_size for f in data_files)
    return OnnxSummary(
        path=path,
        file_bytes=size,
        ir_version=int(proto.ir_version),
        opsets={o.domain or "ai.onnx": int(o.version) for o in proto.opset_import},
        producer=f"{proto.producer_name} {proto.producer_version}".strip(),
        inputs=[_value_info(v) for v in proto.graph.input],
        outputs=[_value_info(v) for v in proto.graph.output],
        layers=layers,
        parameters=sum(row.parameters for row in layers),
        int8=any(row.op in QUANTIZED_OPS for row in layers),
    )

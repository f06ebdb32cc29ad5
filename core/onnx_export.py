"""ONNX files: export, int8 through ONNX Runtime, round trip, latency and inspection.

- ``check_exportable`` refuses, before any work, what the dynamo exporter cannot turn into a
  file that runs in onnxruntime, with the reason and what works instead.
- ``export_onnx`` exports a float eager model with ``torch.onnx.export(..., dynamo=True)``,
  the batch dimension of every input dynamic, and writes it atomically: everything is
  produced in a hidden temporary folder beside the target and renamed into place at the
  end, so a failure (a full disk included) leaves the target as it was and nothing else.
  With ``int8`` the float file goes through onnxruntime's ``quant_pre_process`` and
  ``quantize_dynamic`` (without the pre-processing, a dynamo-exported CNN fails with
  "Inferred shape and existing shape differ").
- A model whose weights take more than 1.5 GiB cannot be one ONNX file (protobuf cannot
  serialise a message of 2 GiB, graph included): it is written as ``NAME.onnx`` plus its
  weights in ``NAME.onnx.data`` beside it (ONNX external data), the data file renamed into
  place first; ``OnnxFile.data_path`` names it. An older ``NAME.onnx.data`` is replaced.
- ``verify_onnx`` runs the file in onnxruntime on the example and on another batch size
  and compares with the torch model; ``paired_onnx_latency_ms`` times the two alternately.
- ``is_onnx`` / ``read_onnx`` / ``describe_onnx`` detect an ONNX model by content and
  give the layer table ``secateur inspect`` prints.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.atomic import TEMP_SUFFIX, remove_stale_temporaries, temp_prefix
from core.errors import Cancelled, SaveError, UnsupportedError, first_line
from core.metrics import flatten_outputs

# Weights above this go to an external data file: protobuf cannot serialise a message of
# 2 GiB or more, and the graph needs room too (torch.onnx's own threshold, so both agree).
ONE_FILE_LIMIT = 1536 * 2**20
DEFAULT_INT8_OPS: tuple[str, ...] = ("MatMul", "Gemm")
INT8_NOTE = (
    "ONNX Runtime int8 quantizes MatMul/Gemm (Linear) only: its int8 convolution "
    "(ConvInteger) runs several times slower than its float convolution on CPUs (measured "
    "in docs/benchmarks.md, table 2e), so convolutions stay float"
)
INT8_TOLERANCE = 0.1  # relative L2 error of an int8 file vs the float model: above is wrong
QUANTIZED_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QGemm"}
PROVIDER = "CPUExecutionProvider"
_MODEL_ATTR = "model"  # the wrapped model's name inside the export wrapper
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ----------------------------------------------------------------------------- refusal
# Why a combination cannot become a working ONNX file, and what works instead. The same
# words serve the check on a recipe (before the work) and on a model (before the export).
TORCHAO_REASON = (
    "torchao's int8 tensors cannot be exported to ONNX (their int8 matmul, aten._int_mm, has "
    "no ONNX function); quantize with backend: onnxruntime (scheme: int8_dynamic) and "
    "--format onnx, or save the torchao result as state_dict, compressed or exported"
)
LEGACY_REASON = (
    "torch.ao's packed int8 modules (backend: legacy) have no ONNX export; quantize with "
    "backend: onnxruntime (scheme: int8_dynamic) instead, or save as state_dict or compressed"
)
MASKS_REASON = (
    "pruning masks still attached cannot be exported; use permanent: true in the recipe so "
    "the zeros are folded into the weights"
)
BF16_REASON = (
    "ONNX Runtime's CPU provider has no bf16 Gemm/MatMul kernel, so a bf16 file would not "
    "run; use fp16, or backend: onnxruntime (scheme: int8_dynamic)"
)
FP16_INT8_REASON = (
    "ONNX Runtime's int8 quantizes float32 weights; do not combine fp16 layers with "
    "backend: onnxruntime"
)
TORCHSCRIPT_REASON = (
    "a TorchScript model cannot be exported by the dynamo ONNX exporter; open the eager "
    "model (a state dict with --arch, or a pickle) and export that"
)
ORT_SCHEMES = ("int8_dynamic",)


def why_not_onnx_recipe(backend: str | None, scheme: str | None, permanent: bool) -> str | None:
    """Why one quantize rule (``backend``/``scheme``, None when there is none) with pruning
    masks folded (``permanent``) or kept cannot be saved as ONNX, or None: checked before
    any work starts."""
    if not permanent:
        return MASKS_REASON
    if scheme is None:
        return None
    if backend == "onnxruntime":
        if scheme not in ORT_SCHEMES:
            return (
                f"backend: onnxruntime quantizes with scheme {', '.join(ORT_SCHEMES)} only, "
                f"not {scheme}"
            )
        return None
    if scheme == "bf16":
        return BF16_REASON
    if scheme.startswith("int8"):
        return LEGACY_REASON if backend == "legacy" else TORCHAO_REASON
    return None


def why_not_onnx(model: nn.Module, int8: bool = False) -> str | None:
    """Why this model cannot become a working ONNX file (and what works instead), or None.

    Cheap: looks at module types and state-dict tensor types only. ``int8``: the file is
    to be quantized by ONNX Runtime.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return TORCHSCRIPT_REASON
    for name, module in model.named_modules():
        where = name or "(model)"
        if type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")):
            return f"layer {where}: {LEGACY_REASON}"
        if hasattr(module, "weight_mask") or hasattr(module, "weight_orig"):
            return f"layer {where}: {MASKS_REASON}"
    for key, value in model.state_dict().items():
        if type(value).__module__.startswith("torchao"):
            return f"{key}: {TORCHAO_REASON}"
        if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
            return f"{key} is bf16: {BF16_REASON}"
        if int8 and isinstance(value, torch.Tensor) and value.dtype == torch.float16:
            return f"{key} is fp16: {FP16_INT8_REASON}"
    return None


def check_exportable(model: nn.Module, path: str | Path, int8: bool = False) -> None:
    """Raise UnsupportedError naming the file when ``why_not_onnx`` has a reason."""
    reason = why_not_onnx(model, int8)
    if reason is not None:
        raise UnsupportedError(f"{Path(path).name}: cannot be saved as ONNX: {reason}")


# ----------------------------------------------------------------------------- export
@dataclass
class OnnxFile:
    """An ONNX file written by ``export_onnx``."""

    path: Path
    file_bytes: int  # the .onnx file plus its external data file, if any
    data_path: Path | None  # NAME.onnx.data when the weights did not fit one file
    int8: bool
    quantized_nodes: int  # MatMulInteger/ConvInteger... nodes in the file
    input_names: list[str]
    notes: list[str] = field(default_factory=list)


def input_names(model: nn.Module, args: tuple, kwargs: dict) -> list[str]:
    """The ONNX input names, in the order the inputs are fed: the forward parameter each
    positional example binds to, then the keyword names as given."""
    names: list[str] = []
    try:
        signature = inspect.signature(model.forward)
        bound = signature.bind_partial(*args)
    except (TypeError, ValueError):
        bound = None
    if bound is not None:
        for pname, value in bound.arguments.items():
            if signature.parameters[pname].kind == inspect.Parameter.VAR_POSITIONAL:
                names += [f"{pname}_{i}" for i in range(len(value))]
            else:
                names.append(pname)
    names += list(kwargs)
    if len(names) != len(args) + len(kwargs) or len(set(names)) != len(names):
        names = [f"input_{i}" for i in range(len(args))] + list(kwargs)
    return names


class _Flat(nn.Module):
    """The model with flat tensor inputs (positional, then keyword) and a flat tuple of
    output tensors, in ``core.metrics.flatten_outputs`` order: dataclass or nested outputs
    export, and the round trip compares outputs one to one."""

    def __init__(self, model: nn.Module, positional: int, keywords: list[str]) -> None:
        super().__init__()
        setattr(self, _MODEL_ATTR, model)
        self.positional = positional
        self.keywords = keywords

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = tensors[: self.positional]
        kwargs = dict(zip(self.keywords, tensors[self.positional :]))
        return tuple(flatten_outputs(getattr(self, _MODEL_ATTR)(*args, **kwargs)))


def example_tensors(args: tuple, kwargs: dict, path: Path) -> list[torch.Tensor]:
    tensors = [*args, *kwargs.values()]
    for i, value in enumerate(tensors):
        if not isinstance(value, torch.Tensor):
            raise UnsupportedError(
                f"{path.name}: ONNX export needs tensor inputs; input {i} is a "
                f"{type(value).__name__}"
            )
    if not tensors:
        raise UnsupportedError(f"{path.name}: ONNX export needs an example input")
    return tensors


def rebatch(tensors: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """The same inputs at another batch size, rows repeated in turn (real inputs, new N)."""
    out = []
    for t in tensors:
        if t.dim() == 0 or t.shape[0] == 0:
            out.append(t)
        else:
            out.append(t[torch.arange(batch) % t.shape[0]].clone())
    return out


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what the exporter says on every call and we cannot act on: its progress
    lines, the log line per torchvision operator it skips (torchvision is not needed),
    and torch's own pytree deprecation raised from inside the exporter."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
            )
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Export in eval mode (dropout off, BatchNorm running stats), then restore each flag."""
    flags = [(m, m.training) for m in model.modules()]
    for module, _ in flags:
        module.training = False  # not .eval(): an ExportedProgram's module refuses train()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _export_reason(exc: BaseException) -> str:
    """The useful line of an exporter error (its own text is a multi-line how-to)."""
    cause = exc.__cause__ or exc
    return _ANSI.sub("", first_line(cause, 200))


def export_program(model: nn.Module, args: tuple, kwargs: dict, path: Path) -> Any:
    """``torch.onnx.export(dynamo=True)`` of the model in memory (a ``torch.onnx.ONNXProgram``)
    with named inputs, dynamic batch dimensions named ``batch`` and flat outputs."""
    tensors = example_tensors(args, kwargs, path)
    names = input_names(model, args, kwargs)
    example = [t.detach().clone() for t in tensors]  # no inference-mode tensors
    if all(t.dim() > 0 and t.shape[0] == 1 for t in example):
        example = rebatch(example, 2)  # a batch of 1 invites 0/1 specialisation
    wrapper = _Flat(model, len(args), list(kwargs))
    dims = tuple({0: torch.export.Dim.AUTO} if t.dim() > 0 else None for t in example)
    try:
        with _quiet_exporter(), _eval_mode(wrapper):
            program = torch.onnx.export(
                wrapper,
                tuple(example),
                dynamo=True,
                verbose=False,
                input_names=names,
                dynamic_shapes=(dims,),
            )
    except Exception as exc:
        raise UnsupportedError(
            f"{path.name}: this model cannot be exported to ONNX ({_export_reason(exc)})"
        ) from None
    graph = program.model.graph
    prefix = f"{_MODEL_ATTR}."
    for value in list(graph.initializers.values()):
        if value.name and value.name.startswith(prefix):
            value.name = value.name[len(prefix) :]
    batch_dims = []
    for value in graph.inputs:
        dim = value.shape[0] if value.shape is not None and len(value.shape) else None
        if dim is not None and not isinstance(dim, int) and str(dim) not in batch_dims:
            batch_dims.append(str(dim))
    if batch_dims:
        program.rename_axes(
            {d: "batch" if len(batch_dims) == 1 else f"batch_{i}" for i, d in enumerate(batch_dims)}
        )
    return program


def _initializer_bytes(program: Any) -> int:
    total = 0
    for value in program.model.graph.initializers.values():
        tensor = value.const_value
        if tensor is not None:
            total += int(tensor.nbytes)
    return total


class _LogCollector(logging.Handler):
    """Keeps what onnxruntime.quantization logs through the root logger (as notes) instead
    of letting logging's last-resort handler print it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = first_line(Exception(record.getMessage()), 200)
        if line not in self.lines:
            self.lines.append(line)


@contextlib.contextmanager
def _collect_root_warnings() -> Iterator[list[str]]:
    root = logging.getLogger()
    handler = _LogCollector()
    root.addHandler(handler)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)


def _quantize(
    source: Path,
    target: Path,
    folder: Path,
    external: bool,
    per_channel: bool,
    op_types: tuple[str, ...],
) -> list[str]:
    """onnxruntime's quant_pre_process then quantize_dynamic (int8 weights, QInt8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = folder / "preprocessed.onnx"
    with _collect_root_warnings() as lines:
        quant_pre_process(
            str(source),
            str(pre),
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            external_data_location=pre.name + ".data" if external else None,
        )
        quantize_dynamic(
            str(pre),
            str(target),
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            use_external_data_format=external,
        )
    return [f"onnxruntime.quantization: {line}" for line in lines[:3]]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    args: tuple,
    kwargs: dict,
    int8: bool = False,
    per_channel: bool = True,
    op_types: tuple[str, ...] = DEFAULT_INT8_OPS,
    should_stop: Callable[[], bool] | None = None,
) -> OnnxFile:
    """Export ``model`` (float, eager) to ``path`` as ONNX, int8-quantized by ONNX Runtime
    when ``int8``; atomic: on any failure or cancel the target is untouched and nothing is
    left behind. ``per_channel`` maps the recipe's granularity to ORT's weight scales."""
    path = Path(path)
    check_exportable(model, path, int8)
    stop = should_stop or (lambda: False)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SaveError(f"{path}: the folder {folder} does not exist")
    if path.is_dir():
        raise SaveError(f"{path}: is a folder; give a file name to save to")
    remove_stale_temporaries(folder)  # a killed export's folder, as for every other save
    program = export_program(model, args, kwargs, path)
    if stop():
        raise Cancelled()
    external = _initializer_bytes(program) > ONE_FILE_LIMIT
    names = [str(v.name) for v in program.model.graph.inputs]
    notes: list[str] = []
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=folder))
    except PermissionError:
        raise SaveError(f"{path}: permission denied (cannot write in {folder})") from None
    except OSError as exc:
        raise SaveError(f"{path}: cannot write in {folder} ({exc.strerror})") from None
    try:
        built = tmp / path.name
        float_file = tmp / "float.onnx" if int8 else built
        with _quiet_exporter():
            program.save(str(float_file), external_data=external)
        del program
        if stop():
            raise Cancelled()
        if int8:
            notes += _quantize(float_file, built, tmp, external, per_channel, op_types)
            notes.append(INT8_NOTE)
            if stop():
                raise Cancelled()
        data = built.with_name(built.name + ".data")
        outputs = [p for p in (data, built) if p.exists()]
        if data.exists() != external:
            raise SaveError(f"{path}: the exporter wrote an unexpected set of files")
        quantized = 0
        if int8:
            proto = load_proto(built, external=False)
            quantized = sum(1 for node in proto.graph.node if node.op_type in QUANTIZED_OPS)
            del proto
        for item in outputs:
            _fsync(item)
        for item in outputs:  # the data first: the .onnx that names it comes last
            os.replace(item, folder / item.name)
        _fsync_dir(folder)
    except (SaveError, UnsupportedError, Cancelled):
        raise
    except OSError as exc:
        raise SaveError(f"{path}: write failed ({exc.strerror or first_line(exc)})") from None
    except Exception as exc:
        raise UnsupportedError(
            f"{path.name}: the ONNX file could not be written ({first_line(exc, 200)})"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    data_path = folder / (path.name + ".data") if external else None
    if int8 and not quantized:
        notes.append(
            f"no {'/'.join(op_types)} node with constant weights to quantize: the file is float"
        )
    size = path.stat().st_size + (data_path.stat().st_size if data_path else 0)
    return OnnxFile(path, size, data_path, int8, quantized, names, notes)


def _fsync(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_proto(path: Path, external: bool) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=external)

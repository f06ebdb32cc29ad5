"""Figure 3, size: artifact bytes (the file ``core.saving.save_model`` writes, plus its
sidecar) / fp32 state-dict bytes, for each scheme and for pruned models, beside the physical
limit of what the numbers themselves need.

Physical limit: the bits the weights must hold, per weight: int8 = 8 bits plus one fp32
scale per output channel (per_channel) or per tensor, the float bias kept at 32 bits;
fp16/bf16 = 16 bits for everything. For pruned models, what a sparse encoding could reach:
a 1-bit-per-weight presence mask plus the surviving values (fp32, or int8 when quantized).
Measured beside it: the same file gzip'ed, and torch's own sparse CSR layout.

Then the deployable files of issue 12: the ``compressed`` format (``core.compressed``) for
the same compressions, with its load time beside the dense state dict's, and ONNX files
(``core.onnx_format``: float, and int8 by ONNX Runtime) of the demo, the MLP and the
ResNet-like net, with the round trip's max abs error.

    python benchmarks/size.py [--tiny]
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import io
import tempfile
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from benchmarks.common import (
    SCHEMES,
    Figure,
    Scheme,
    Target,
    alternate,
    compress_quiet,
    conv_net,
    median,
    mlp,
    parameters,
)
from core import compat, compressed, compressed_read, onnx_export, onnx_runtime
from core.data import random_data
from core.metrics import state_dict_bytes
from core.saving import save_model

COMPRESSED_TARGETS = {"prune 50% + int8": 0.17, "prune 90%": 0.20}  # issue 12


def artifact_bytes(result: Any, folder: Path, name: str, sample: tuple[int, ...]) -> int:
    """Save as a state dict (the CLI default for state-dict inputs); file + sidecar bytes."""
    path = folder / f"{name}.pt"
    outcome = save_model(
        result.model, path, "state_dict", random_data((1, *sample)), sidecar=result.sidecar
    )
    total = outcome.file_bytes
    if outcome.sidecar is not None:
        total += outcome.sidecar.stat().st_size
    return total


def limit_bytes(model: nn.Module, scheme: Scheme | None, nonzero: float = 1.0) -> float:
    """Bytes the numbers need: weights at the scheme's width (only the ``nonzero`` fraction,
    plus a 1-bit mask, when sparse), scales, float biases and every other parameter."""
    total = 0.0
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            n = p.numel()
            is_weight = pname == "weight" and isinstance(module, nn.Linear | nn.Conv2d)
            if scheme is not None and not scheme.int8:
                bits = 16.0
            elif scheme is not None and is_weight and isinstance(module, nn.Linear):
                bits = 8.0
                scales = p.shape[0] if scheme.granularity == "per_channel" else 1
                total += scales * 4
            else:
                bits = 32.0
            if is_weight and nonzero < 1.0:
                total += n * nonzero * bits / 8 + n / 8  # surviving values + presence mask
            else:
                total += n * bits / 8
    return total


def gzip_bytes(path: Path) -> int:
    return len(zlib.compress(path.read_bytes(), 6))


def _csr_bytes(model: nn.Module) -> int:
    state = {
        k: v.to_sparse_csr() if v.dim() == 2 and k.endswith("weight") else v
        for k, v in model.state_dict().items()
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()


def csr_bytes(model: nn.Module) -> int:
    """torch.save of the state dict with every 2-D weight in torch's sparse CSR layout."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return _csr_bytes(model)


def compressed_row(
    result: Any, folder: Path, label: str, fp32: int, repeats: int, limit: float | None
) -> dict[str, Any]:
    """Write ``result`` in the compressed format beside its state-dict artifact (``p.pt``
    or ``q.pt``, already saved) and time loading each, alternately."""
    path = folder / "c.secz"
    with path.open("wb") as fh:
        summary = compressed.write(result.model, fh, result.sidecar or {})
    dense = folder / "dense.pt"
    torch.save(result.model.state_dict(), dense)

    def load_dense() -> Any:
        with compat.quiet():  # torch.ao's packed weights go through the deprecated storage
            return torch.load(dense, map_location="cpu", weights_only=True)

    times = alternate(
        {"compressed": lambda: compressed_read.read(path), "dense": load_dense}, repeats
    )
    load_c, load_d = median(times["compressed"]), median(times["dense"])
    encodings = summary.by_encoding()
    return {
        "recipe": label,
        "state dict / fp32": dense.stat().st_size / fp32,
        "compressed / fp32": path.stat().st_size / fp32,
        "mask + values limit": limit,
        "tensors bitmask / dense": f"{encodings.get('bitmask', 0)} / {encodings.get('dense', 0)}",
        "load compressed ms": load_c * 1e3,
        "load state dict ms": load_d * 1e3,
        "load ratio": load_c / load_d,
    }


def compressed_figure(name: str, rows: list[dict[str, Any]], repeats: int) -> Figure:
    fig = Figure(
        key="size_compressed",
        title="3c. The compressed format: zeros and int8 stored compactly",
        columns=[
            "recipe",
            "state dict / fp32",
            "compressed / fp32",
            "mask + values limit",
            "tensors bitmask / dense",
            "load compressed ms",
            "load state dict ms",
            "load ratio",
        ],
        ratios=["state dict / fp32", "compressed / fp32", "mask + values limit", "load ratio"],
        formats={"load compressed ms": ".1f", "load state dict ms": ".1f"},
        intro=(
            f"The same {name} and compressions, written by `core.compressed.write` (each "
            "tensor as the smaller of a bitmask of its nonzeros plus the values, or its dense "
            "bytes byte-shuffled; zstd level 3; docs/compressed-format.md) beside "
            "`torch.save(state_dict)`, both / the fp32 state dict. Load: "
            "`core.compressed.read` (decodes every tensor, checks every CRC) vs "
            "`torch.load(weights_only=True)` of the dense file (reads every byte; "
            f"without mmap), alternating, median of {repeats}; load ratio = compressed / "
            "dense."
        ),
    )
    for row in rows:
        fig.add(**row)
    for label, target in COMPRESSED_TARGETS.items():
        row = next((r for r in rows if r["recipe"] == label), None)
        if row is not None:
            fig.targets.append(
                Target(
                    f"size: compressed format, {label}",
                    f"compressed / fp32 state dict <= {target:.2f}",
                    f"{row['compressed / fp32']:.3f}",
                    row["compressed / fp32"] <= target,
                )
            )
    return fig


def onnx_models(tiny: bool) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, model, one sample's input shape) of the ONNX figures."""
    if tiny:
        return [("MLP 32-64-64-32", mlp((32, 64, 64, 32)), (32,))]
    from core.demo import load_demo_model

    return [
        ("demo digits CNN", load_demo_model(), (1, 8, 8)),
        ("MLP 1024-4096-4096-1024", mlp(), (1024,)),
        ("ResNet-like conv net, 3x32x32", conv_net(), (3, 32, 32)),
    ]


def onnx_figure(tiny: bool) -> Figure:
    fig = Figure(
        key="size_onnx",
        title="3d. ONNX files: size and round trip in onnxruntime",
        columns=[
            "model",
            "file",
            "bytes",
            "file / fp32",
            "quantized nodes",
            "round trip max abs error",
            "relative error",
            "round trip ok",
        ],
        ratios=["file / fp32"],
        formats={"round trip max abs error": ".2e", "relative error": ".2e"},
        intro=(
            "`core.onnx_export.export_onnx` (`torch.onnx.export(dynamo=True)`, dynamic batch) "
            "of the float model, and with `int8=True` (onnxruntime's `quant_pre_process` then "
            "`quantize_dynamic`, MatMul/Gemm only, per-channel weights); file / the fp32 state "
            "dict. Round trip: `core.onnx_runtime.verify_onnx`, the file in onnxruntime vs "
            "the torch float model on 4 seeded samples and again at batch 7; an int8 file "
            f"passes within {onnx_export.INT8_TOLERANCE:.0%} relative error (its quantization)."
        ),
    )
    with tempfile.TemporaryDirectory(prefix="secateur-bench-") as tmp:
        for name, model, sample in onnx_models(tiny):
            fp32 = state_dict_bytes(model)
            x = torch.randn((4, *sample), generator=torch.Generator().manual_seed(0))
            for int8 in (False, True):
                path = Path(tmp) / f"model_{int8}.onnx"
                written = onnx_export.export_onnx(model, path, (x,), {}, int8=int8)
                check = onnx_runtime.verify_onnx(model, path, (x,), {}, int8=int8)
                fig.add(
                    model=name,
                    file="ONNX int8 (onnxruntime)" if int8 else "ONNX float",
                    bytes=written.file_bytes,
                    **{
                        "file / fp32": written.file_bytes / fp32,
                        "quantized nodes": written.quantized_nodes,
                        "round trip max abs error": check["max_abs_error"],
                        "relative error": check.get("relative_error"),
                        "round trip ok": check["ok"],
                    },
                )
                path.unlink()
    fig.notes.append(onnx_export.INT8_NOTE + ".")
    failed = [f"{r['model']} ({r['file']})" for r in fig.rows if not r["round trip ok"]]
    fig.targets.append(
        Target(
            "ONNX: every exported file round-trips in onnxruntime",
            "float to 1e-4 of the output scale; int8 within "
            f"{onnx_export.INT8_TOLERANCE:.0%} relative error",
            "all pass" if not failed else "fails: " + ", ".join(failed),
            not failed,
        )
    )
    return fig


def figures(tiny: bool = False) -> list[Figure]:
    dims = (32, 64, 64, 32) if tiny else (1024, 4096, 4096, 1024)
    repeats = 2 if tiny else 7
    compact_rows: list[dict[str, Any]] = []
    model = mlp(dims)
    sample = (dims[0],)
    fp32 = state_dict_bytes(model)
    raw = 4 * parameters(model)  # the fp32 numbers alone, without the file's own overhead
    name = "MLP " + "-".join(map(str, dims))

    quant = Figure(
        key="size_schemes",
        title="3a. Size per scheme: artifact / fp32 state dict",
        columns=[
            "scheme",
            "artifact bytes",
            "artifact / fp32",
            "physical limit",
            "artifact / limit",
        ],
        ratios=["artifact / fp32", "physical limit", "artifact / limit"],
        intro=(
            f"{name} ({parameters(model):,} parameters, fp32 state dict {fp32:,} bytes), saved "
            "with `core.saving.save_model(..., 'state_dict')` (plus the small sidecar that "
            "rebuilds the quantized modules). The physical limit counts the numbers only, "
            "against the 4 bytes per parameter of fp32: "
            "8-bit weights plus one fp32 scale per output channel (or per tensor) and fp32 "
            "biases; 16 bits for everything under fp16/bf16."
        ),
    )
    with tempfile.TemporaryDirectory(prefix="secateur-bench-") as tmp:
        folder = Path(tmp)
        plain = SimpleNamespace(model=model, sidecar=None)
        compact_rows.append(
            compressed_row(plain, folder, "fp32 (no compression)", fp32, repeats, 1.0)
        )
        for scheme in SCHEMES:
            result = compress_quiet(model, scheme.recipe(), skip_metrics=True)
            size = artifact_bytes(result, folder, "q", sample)
            limit = limit_bytes(model, scheme)
            quant.add(
                **{
                    "scheme": scheme.label,
                    "artifact bytes": size,
                    "artifact / fp32": size / fp32,
                    "physical limit": limit / raw,
                    "artifact / limit": size / limit,
                }
            )
            if scheme == SCHEMES[0]:
                compact_rows.append(
                    compressed_row(result, folder, scheme.label, fp32, repeats, limit / raw)
                )
            del result
        quant.notes += [
            "torchao's Int8Tensor also stores an int8 zero point per channel (always 0 for "
            "this symmetric scheme); the legacy packed format stores fp64 scales and int64 "
            "zero points per channel (16 bytes a row), and its file layout carries more "
            "per-tensor overhead.",
        ]

        pruned = Figure(
            key="size_pruned",
            title="3b. Size of pruned models: unstructured sparsity alone does not shrink a "
            "dense file",
            columns=[
                "recipe",
                "parameters zero",
                "artifact / fp32",
                "gzip of artifact / fp32",
                "torch sparse CSR / fp32",
                "mask + values limit",
            ],
            ratios=[
                "artifact / fp32",
                "gzip of artifact / fp32",
                "torch sparse CSR / fp32",
                "mask + values limit",
            ],
            formats={"parameters zero": ".1%"},
            intro=(
                f"The same {name}, L1-unstructured pruning of every Linear, masks folded. The "
                "file stores every zero, so the artifact stays at ~1.0x. Beside it, measured: "
                "the artifact gzip'ed (level 6), and the state dict saved with torch's sparse "
                "CSR layout (int64 indices: worse than dense until far past 50%); computed: a "
                "1-bit presence mask plus the surviving values, what a compact sparse "
                "encoding could reach (the compressed format, 3c, gets close to it)."
            ),
        )
        int8 = SCHEMES[0]
        for amount, scheme in ((0.5, None), (0.9, None), (0.5, int8), (0.9, int8)):
            if scheme is None:
                from core.recipe import parse_recipe

                recipe = parse_recipe(
                    "version: 1\nprune: [{types: [Linear], method: l1_unstructured, "
                    f"amount: {amount}}}]\n",
                    "bench",
                )
                label = f"prune {amount:.0%}"
            else:
                recipe = scheme.recipe(prune=amount)
                label = f"prune {amount:.0%} + {scheme.label}"
            result = compress_quiet(model, recipe, skip_metrics=True)
            size = artifact_bytes(result, folder, "p", sample)
            before, after = result.report.before.model_dump(), result.report.after.model_dump()
            zero = 1 - after["nonzero_parameters"] / before["parameters"]
            weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
            weight_n = sum(w.numel() for w in weights)
            nonzero = 1 - zero * before["parameters"] / weight_n
            pruned.add(
                **{
                    "recipe": label,
                    "parameters zero": zero,
                    "artifact / fp32": size / fp32,
                    "gzip of artifact / fp32": gzip_bytes(folder / "p.pt") / fp32,
                    "torch sparse CSR / fp32": csr_bytes(result.model) / fp32
                    if scheme is None
                    else None,
                    "mask + values limit": limit_bytes(model, scheme, nonzero) / raw,
                }
            )
            short = f"prune {amount:.0%}" + (" + int8" if scheme is not None else "")
            limit = limit_bytes(model, scheme, nonzero) / raw
            compact_rows.append(compressed_row(result, folder, short, fp32, repeats, limit))
            del result
        pruned.notes.append(
            "sparse CSR applies to float weights only (not to torchao's int8 tensors): '—'."
        )
    best = min(quant.rows, key=lambda r: r["artifact / fp32"])
    quant.targets.append(
        Target(
            "size: int8 artifact beside its physical limit",
            "informational (limit ~0.25 + scales)",
            f"best {best['artifact / fp32']:.3f} ({best['scheme']}), "
            f"limit {best['physical limit']:.3f}",
            None,
        )
    )
    dense = [r for r in pruned.rows if "+" not in r["recipe"]]
    pruned.targets.append(
        Target(
            "size: unstructured pruning alone",
            "said honestly: ~1.0 (a dense file stores zeros)",
            ", ".join(f"{r['recipe']}: {r['artifact / fp32']:.3f}" for r in dense),
            None,
        )
    )
    return [quant, pruned, compressed_figure(name, compact_rows, repeats), onnx_figure(tiny)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    for fig in figures(args.tiny):
        print(fig.markdown())


if __name__ == "__main__":
    main()

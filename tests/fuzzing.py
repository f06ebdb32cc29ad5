"""A mutation fuzzer for every kind of file Secateur reads (``tests/test_fuzz.py``,
``benchmarks/fuzz.py``).

Each file kind is one ``FileKind`` entry in ``KINDS``: how to make a valid file, the role the
file plays on the command line (a model, data, a recipe, a sidecar, a cache entry, a report),
the commands it is run through, and the mutations that understand its structure. A case takes
a kind's valid file, applies one seeded mutation, byte-level (flip, truncate, splice, repeat,
zero a range) or structural (wrong dtypes, wrong shapes, extra or missing keys, huge declared
sizes, a mutated member of an archive), and runs one command on it.

Cases run in a worker process that imports torch once and calls ``core.cli.main`` in-process
(fast), with its output captured at the file-descriptor level (what a user would see, torch's
C++ warnings included). The parent enforces a time limit per case (a case that overruns is a
hang: the worker is killed and restarted), the worker's address space is capped
(``ADDRESS_SPACE``) so a runaway allocation cannot take the shared machine down, and the peak
resident memory of each case is measured (``MEMORY_BOUND``). A case passes when it ends in
exit 0, or in exit 2 with exactly one line on stderr; when it leaves no partial output and no
temporary file; and when the input file is byte-identical afterwards.

Adding a kind: one ``FileKind`` entry in ``KINDS``.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import io
import itertools
import json
import os
import pickletools
import random
import resource
import select
import shutil
import struct
import subprocess
import sys
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TOY = f"{TESTS / 'toy_models.py'}:mlp"
TIME_LIMIT_S = 30.0
"""Per case. A valid case takes well under 2 s here; anything near this is a hang."""
MEMORY_BOUND = 1 << 30
"""Peak resident memory of the process while it runs one case (the worker idles at ~0.4 GiB
with torch and torchao imported; every fuzzed file is under 100 KB)."""
ADDRESS_SPACE = 6 << 30
"""RLIMIT_AS of the worker: an allocation driven by a declared size fails here instead of
swapping the machine (and the case is then reported as an allocation failure)."""
ALLOCATION_FAILED = ("MemoryError", "can't allocate memory", "bad_alloc", "Cannot allocate memory")
SWEEP_FLAGS = ("--types", "Linear", "--amounts", "0.3,0.6", "--target-sparsity", "0.4")

Mutator = Callable[[bytes, random.Random, Sequence[bytes]], bytes]


# ------------------------------------------------------------------ byte-level
def flip(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """Flip 1-8 random bits."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """Cut the file at a random length (possibly zero)."""
    return data[: rng.randrange(len(data))] if data else data


def splice(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """Insert or overwrite with a chunk of this file or of another kind's file."""
    donor = rng.choice([data, *donors]) or data
    a = rng.randrange(len(donor))
    chunk = donor[a : a + rng.randint(1, 512)]
    at = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        return data[:at] + chunk + data[at:]
    return data[:at] + chunk + data[at + len(chunk) :]


def repeat(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """Repeat a random range 2-64 times in place."""
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 256))
    return data[:a] + data[a:b] * rng.randint(2, 64) + data[b:]


def zero(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """Zero a random range of up to 1 KB."""
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 1024))
    return data[:a] + bytes(b - a) + data[b:]


BYTE_MUTATIONS: dict[str, Mutator] = {
    "flip": flip,
    "truncate": truncate,
    "splice": splice,
    "repeat": repeat,
    "zero": zero,
}


# ------------------------------------------------------------------ archives
def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def rezip(members: Sequence[tuple[str, bytes]], align: int = 64) -> bytes:
    """A stored (uncompressed) zip with every member's data aligned as torch writes them."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        warnings.simplefilter("ignore")  # a duplicated member is one of the mutations
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            start = buf.tell() + 30 + len(name.encode())
            pad = (-(start + 4)) % align
            info.extra = struct.pack("<HH", 0x4246, pad) + bytes(pad)  # torch's 'FB' padding
            zf.writestr(info, content)
    return buf.getvalue()


def _pick_member(members: list[tuple[str, bytes]], rng: random.Random) -> int:
    return rng.randrange(len(members))


def zip_member(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """One member of the archive mutated byte-wise (or, for JSON, structurally), in an
    archive that is otherwise valid (sizes and checksums right)."""
    members = _members(data)
    i = _pick_member(members, rng)
    name, content = members[i]
    if name.endswith(".json") and rng.random() < 0.5:
        try:
            content = json.dumps(mutate_document(json.loads(content), rng)).encode()
        except ValueError:
            content = flip(content, rng, donors)
    else:
        mutation = rng.choice(list(BYTE_MUTATIONS.values()))
        content = mutation(content, rng, donors) if content else b"\x00"
    members[i] = (name, content)
    return rezip(members)


def zip_missing_member(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """One member of the archive left out."""
    members = _members(data)
    del members[_pick_member(members, rng)]
    return rezip(members)


def zip_extra_member(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """A member added, or one duplicated under the same name."""
    members = _members(data)
    if rng.random() < 0.5:
        members.insert(rng.randrange(len(members) + 1), members[_pick_member(members, rng)])
    else:
        prefix = members[0][0].split("/")[0]
        members.append((f"{prefix}/extra/{rng.randrange(100)}", rng.randbytes(64)))
    return rezip(members)


def zip_huge_size(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """One member's declared size (in the central directory and its local header) made
    huge or wrong."""
    out = bytearray(data)
    eocd = out.rfind(b"PK\x05\x06")
    if eocd < 0:
        return flip(data, rng, donors)
    (count,) = struct.unpack_from("<H", out, eocd + 10)
    (cd,) = struct.unpack_from("<I", out, eocd + 16)
    entries = []
    pos = cd
    for _ in range(count):
        if out[pos : pos + 4] != b"PK\x01\x02":
            break
        n, m, k = struct.unpack_from("<HHH", out, pos + 28)
        (local,) = struct.unpack_from("<I", out, pos + 42)
        entries.append((pos, local))
        pos += 46 + n + m + k
    if not entries:
        return flip(data, rng, donors)
    central, local = rng.choice(entries)
    size = rng.choice([0xFFFFFFFE, 1 << 31, 1 << 30, 0, 1])
    fields = rng.choice([(20, 18), (24, 22), (20, 18, 24, 22)])
    for central_off, local_off in zip(fields[::2], fields[1::2]):
        struct.pack_into("<I", out, central + central_off, size)
        if out[local : local + 4] == b"PK\x03\x04":
            struct.pack_into("<I", out, local + local_off, size)
    return bytes(out)


ZIP_MUTATIONS: dict[str, Mutator] = {
    "zip_member": zip_member,
    "zip_missing_member": zip_missing_member,
    "zip_extra_member": zip_extra_member,
    "zip_huge_size": zip_huge_size,
}


def pickle_huge_number(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """In a torch zip file, one integer of data.pkl (a storage's element count, a size, a
    stride, an offset) made huge or negative."""
    members = _members(data)
    index = next(i for i, (name, _) in enumerate(members) if name.endswith("data.pkl"))
    name, pkl = members[index]
    ints = []
    ops = list(pickletools.genops(pkl))
    for (op, _, pos), (_, _, end) in itertools.pairwise(ops):
        if op.name in ("BININT", "BININT1", "BININT2", "LONG1"):
            ints.append((pos, end))
    if not ints:
        return flip(data, rng, donors)
    pos, end = rng.choice(ints)
    value = rng.choice([1 << 40, 1 << 62, (1 << 63) - 1, -1, -(1 << 40), 1 << 31])
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    members[index] = (name, pkl[:pos] + b"\x8a" + bytes([len(raw)]) + raw + pkl[end:])
    return rezip(members)


# ------------------------------------------------------------------ documents
_VALUES: tuple[Any, ...] = (
    None,
    True,
    "text",
    "",
    -1,
    0,
    1.5,
    10**30,
    1e308,
    float("nan"),
    float("inf"),
    [],
    {},
    [1, 2],
    {"a": 1},
)


def _nodes(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _nodes(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _nodes(value, (*path, i))


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def mutate_document(doc: Any, rng: random.Random) -> Any:
    """One structural change to a JSON-like document: a key or element removed or added, a
    value of the wrong type, a huge number, a long string or list, or another root."""
    doc = copy.deepcopy(doc)
    nodes = list(_nodes(doc))
    path = rng.choice(nodes)
    op = rng.choice(["delete", "retype", "huge", "extra", "grow", "root"])
    if op == "root" or not path:
        return rng.choice([[1, 2], "text", None, 0, [], {}, [doc]]) if op == "root" else doc
    parent, last = _get(doc, path[:-1]), path[-1]
    value = parent[last]
    if op == "delete":
        del parent[last]
    elif op == "retype":
        parent[last] = rng.choice(_VALUES)
    elif op == "huge":
        if isinstance(value, str):
            parent[last] = value * 10_000 or "x" * 100_000
        elif isinstance(value, list):
            parent[last] = (value or [0]) * 5_000
        else:
            parent[last] = rng.choice([10**18, 2**64, -(10**18), 1e308, -1e308, 1e-308])
    elif op == "extra":
        target = value if isinstance(value, dict) else parent
        if isinstance(target, dict):
            target[f"extra_{rng.randrange(100)}"] = rng.choice(_VALUES)
        else:
            target.append(rng.choice(_VALUES))
    else:  # grow: a list element or a dict value repeated
        if isinstance(value, list) and value:
            value.extend(copy.deepcopy(value) * rng.randint(1, 8))
        else:
            parent[last] = [value] * rng.randint(2, 8)
    return doc


def json_structure(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """A structural change to a JSON file (see ``mutate_document``)."""
    return json.dumps(mutate_document(json.loads(data), rng)).encode()


def yaml_structure(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """A structural change to a YAML file (see ``mutate_document``)."""
    import yaml

    return yaml.safe_dump(mutate_document(yaml.safe_load(data), rng)).encode()


def compressed_header(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """A structural change to the JSON header of a compressed (.secz) file, with the trailer
    rewritten to match, so the reader gets past the trailer and has to judge the header
    (wrong offsets, dtypes, shapes, kinds, missing tensors, huge sizes)."""
    offset, length = struct.unpack("<QQ", data[-24:-8])
    header = json.loads(data[offset : offset + length])
    body = json.dumps(mutate_document(header, rng)).encode()
    return data[:offset] + body + struct.pack("<QQ", offset, len(body)) + data[-8:]


def onnx_structure(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """A structural change to an ONNX graph that still parses as protobuf: an initializer
    removed, truncated or given another shape, a node removed or renamed to an unknown op,
    an input's shape changed, an impossible opset."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    op = rng.choice(
        ["drop_init", "cut_init", "reshape_init", "drop_node", "op_type", "input", "opset"]
    )
    inits = list(graph.initializer)
    if op in ("drop_init", "cut_init", "reshape_init") and inits:
        init = rng.choice(inits)
        if op == "drop_init":
            graph.initializer.remove(init)
        elif op == "cut_init":
            init.raw_data = init.raw_data[: len(init.raw_data) // 2]
        else:
            init.dims[0] = rng.choice([0, 1, init.dims[0] * 3, 2**40])
    elif op in ("drop_node", "op_type") and graph.node:
        node = rng.choice(list(graph.node))
        if op == "drop_node":
            graph.node.remove(node)
        else:
            node.op_type = rng.choice(["NoSuchOp", "Conv", ""])
    elif op == "input" and graph.input:
        dims = graph.input[0].type.tensor_type.shape.dim
        if dims:
            dims[-1].dim_value = rng.choice([0, 1, 7, 2**40])
    else:
        model.opset_import[0].version = rng.choice([0, 1, 999])
    return model.SerializeToString()


# -------------------------------------------------------------------- tensors
def _torch_load(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _torch_save(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _safetensors_load(data: bytes) -> dict[str, Any]:
    from safetensors.torch import load

    return dict(load(data))


def _safetensors_save(obj: dict[str, Any]) -> bytes:
    import torch
    from safetensors.torch import save

    clean = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            value = torch.tensor([1.0])
        if value.is_complex():
            value = torch.view_as_real(value)
        clean[key] = value.contiguous()
    return save(clean)


def _retensor(value: Any, rng: random.Random, how: str) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        return torch.zeros(3)
    if how == "dtype":
        dtypes = [torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int64]
        dtypes += [torch.uint8, torch.bool, torch.complex64, torch.int32]
        return value.to(rng.choice(dtypes))
    shapes = [
        lambda t: t.t() if t.dim() == 2 else t.unsqueeze(0),
        lambda t: t.reshape(-1),
        lambda t: t[:0],
        lambda t: t.reshape(-1)[:1].reshape(()),
        lambda t: torch.cat([t, t]),
        lambda t: t.unsqueeze(-1),
    ]
    return rng.choice(shapes)(value).contiguous()


def tensor_structure(load: Callable[[bytes], Any], save: Callable[[Any], bytes]) -> Mutator:
    """A structural change to a file that holds a dict of tensors: a tensor of the wrong
    dtype or shape, a key added or removed, a value of another type."""

    def mutate(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
        import torch

        obj = load(data)
        keys = list(obj)
        key = rng.choice(keys)
        op = rng.choice(["dtype", "shape", "shape", "extra", "missing", "retype"])
        if op in ("dtype", "shape"):
            obj[key] = _retensor(obj[key], rng, op)
        elif op == "extra":
            extra = rng.choice([torch.randn(3, 3), "text", 7, [torch.ones(2)], {"a": 1}])
            obj[f"{key}_extra"] = extra
        elif op == "missing":
            del obj[key]
        else:
            obj[key] = rng.choice(
                [
                    [obj[key], obj[key]],
                    {"a": obj[key]},
                    "text",
                    3,
                    None,
                    [],
                    torch.tensor(2.0),
                ]
            )
        try:
            return save(obj)
        except Exception:  # the format cannot hold that value: a wrong dtype instead
            obj = load(data)
            obj[key] = _retensor(obj[key], rng, "dtype")
            return save(obj)

    return mutate


def safetensors_header(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """The safetensors header changed: a huge shape or data offset, a wrong dtype, a huge
    declared header length, or a structural change to its JSON."""
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    op = rng.choice(["shape", "offsets", "dtype", "length", "document"])
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    if op == "length":
        return struct.pack("<Q", rng.choice([1 << 62, len(data) * 2, 0, 1])) + data[8:]
    if op == "document":
        header = mutate_document(header, rng)
    elif op == "shape":
        header[name]["shape"] = rng.choice([[1 << 40, 16], [1 << 62], [-1], [0], []])
    elif op == "offsets":
        end = header[name]["data_offsets"][1]
        header[name]["data_offsets"] = rng.choice([[0, 1 << 62], [end, 0], [0, end * 1000]])
    else:
        header[name]["dtype"] = rng.choice(["F64", "I8", "BOOL", "F8_E4M3", "X9", "C64"])
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


# ----------------------------------------------------------------------- numpy
def _npz_load(data: bytes) -> dict[str, Any]:
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _npz_save(obj: dict[str, Any]) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **obj)
    return buf.getvalue()


def npz_structure(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """A structural change to an .npz: x or y of the wrong dtype (strings, bytes, dates,
    objects, complex, bool...) or shape, a key added or removed."""
    import numpy as np

    obj = _npz_load(data)
    key = rng.choice(list(obj))
    value = obj[key]
    op = rng.choice(["dtype", "dtype", "shape", "extra", "missing"])
    if op == "dtype":
        kind = rng.choice(["U", "S", "M", "O", "c8", "?", "u2", "f2", "i1", "V"])
        if kind == "U":
            obj[key] = value.astype(str)
        elif kind == "S":
            obj[key] = value.astype("S8")
        elif kind == "M":
            obj[key] = np.zeros(value.shape, "datetime64[D]")
        elif kind == "O":
            obj[key] = np.array([object()] * len(value), dtype=object)
        elif kind == "V":
            obj[key] = np.zeros(len(value), dtype=[("a", "<f4"), ("b", "<i4")])
        else:
            obj[key] = value.astype(kind)
    elif op == "shape":
        obj[key] = rng.choice(
            [
                value.reshape(-1),
                value[:0],
                value[..., None],
                value.reshape(-1)[:1].reshape(()),
                value.T,
            ]
        )
    elif op == "extra":
        obj[f"{key}_extra"] = rng.choice([value, np.array("text")])
    else:
        del obj[key]
    try:
        return _npz_save(obj)
    except ValueError:  # object arrays need pickling: np.savez does it when asked
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v, dtype=object) for k, v in obj.items()})
        return buf.getvalue()


def npy_huge_shape(data: bytes, rng: random.Random, donors: Sequence[bytes]) -> bytes:
    """One array's .npy header declares a huge (or negative, or inconsistent) shape."""
    members = _members(data)
    i = _pick_member(members, rng)
    name, content = members[i]
    start = content.find(b"'shape': (")
    if start < 0:
        return flip(data, rng, donors)
    end = content.find(b")", start)
    shape = rng.choice(["1099511627776, 16", "4611686018427387904,", "-1, 16", "0, 0", "3, 3"])
    patched = content[: start + 10] + shape.encode() + content[end:]
    grow = len(content) - len(patched)
    newline = patched.find(b"\n")
    if grow > 0:  # keep the header length the .npy preamble declares
        patched = patched[:newline] + b" " * grow + patched[newline:]
    elif grow < 0:
        pad = patched.rfind(b" " * -grow, 0, newline)
        if pad > 0:
            patched = patched[:pad] + patched[pad - grow :]
    members[i] = (name, patched)
    return rezip(members, align=1)


# ----------------------------------------------------------------------- kinds
@dataclass
class Base:
    """The valid files every kind is made from or placed beside, built once per run."""

    folder: Path
    model: Path  # the toy MLP's state dict (TOY builds its architecture)
    data: Path
    train: Path
    recipe: Path  # prunes and quantizes
    quantize_recipe: Path  # quantizes only
    prune_recipe: Path  # prunes only (what ONNX can hold)
    quantized: Path  # a quantized state dict with its sidecar
    cache: Path  # a sensitivity cache entry for (model, data, SWEEP_FLAGS)
    report: Path


@dataclass(frozen=True)
class FileKind:
    """One kind of file Secateur reads: its valid form, its role and how it is mutated.

    ``role`` is where the mutated file goes: "model", "data" or "recipe" (it replaces the
    base file of that role in the commands), "sidecar" (beside a copy of the base quantized
    state dict), "cache" (the cache entry of the sweep the sensitivity command runs) or
    "report" (read as report JSON).
    """

    name: str
    role: str
    filename: str
    seed: Callable[[Base], bytes]
    commands: tuple[str, ...]
    structural: dict[str, Mutator] = field(default_factory=dict)
    check: Callable[[Outcome], str | None] | None = None  # more than exit 0 / exit 2
    uses: dict[str, str] = field(default_factory=dict)  # role -> another Base file to use


def _toy_seed(fmt: str) -> Callable[[Base], bytes]:
    def build(base: Base) -> bytes:
        import torch
        from toy_models import mlp

        model = mlp()
        x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
        buf = io.BytesIO()
        if fmt == "state_dict":
            return base.model.read_bytes()
        if fmt == "safetensors":
            from safetensors.torch import save

            return save(model.state_dict())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace's deprecation
            if fmt == "torchscript":
                torch.jit.save(torch.jit.trace(model, x), buf)
            elif fmt == "exported":
                torch.export.save(torch.export.export(model, (x,)), buf)
            else:
                torch.save(model, buf)
        return buf.getvalue()

    return build


def _saved_seed(fmt: str, suffix: str, recipe: str) -> Callable[[Base], bytes]:
    """A file Secateur itself saves in ``fmt`` from the base model (with ``recipe``)."""

    def build(base: Base) -> bytes:
        out = base.folder / f"seed-{fmt}{suffix}"
        argv = ["compress", str(base.model), "--arch", TOY, "--data", str(base.data)]
        argv += ["--recipe", str(getattr(base, recipe)), "--skip-metrics"]
        code, err = _quiet_main([*argv, "--format", fmt, "--output", str(out)], {})
        if code != 0:
            raise RuntimeError(f"building the fuzzer's {fmt} seed failed: {err}")
        return out.read_bytes()

    return build


def _data_pt(base: Base) -> bytes:
    import torch

    raw = _npz_load(base.data.read_bytes())
    return _torch_save({k: torch.from_numpy(v) for k, v in raw.items()})


def _recipe_json(base: Base) -> bytes:
    doc = {
        "version": 1,
        "prune": [{"types": ["Linear"], "method": "ln_structured", "amount": 0.25, "dim": 0}],
        "quantize": {"scheme": "int8_dynamic", "backend": "legacy", "layers": ["fc*"]},
    }
    return json.dumps(doc, indent=2).encode()


_RECIPE_YAML = b"""version: 1
prune:
  - types: [Linear]
    amount: 0.5
  - layers: [head]
    method: random_unstructured
    amount: 3
    permanent: false
finetune: {epochs: 2, lr: 0.01, batch_size: 16}
quantize: {scheme: int8_dynamic, layers: ["fc*"]}
"""


def _cache_check(outcome: Outcome) -> str | None:
    """A cache entry is Secateur's own file: whatever is in it, the sweep succeeds, using
    it ("[cached]") or saying in one line that it was ignored (and rewriting it)."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if outcome.code != 0:
        return f"a damaged cache entry failed the sweep (exit {outcome.code})"
    if "[cached]" in outcome.stdout:
        return None if not lines else f"a used cache entry printed: {lines[0][:200]}"
    if len(lines) != 1 or "it was ignored and the sweep recomputed" not in lines[0]:
        return f"an ignored cache entry was not said in one line: {' | '.join(lines)[:300]}"
    return None


_STATE_DICT = {
    "tensor_structure": tensor_structure(_torch_load, _torch_save),
    "pickle_huge_number": pickle_huge_number,
    **ZIP_MUTATIONS,
}

KINDS: tuple[FileKind, ...] = (
    FileKind(
        "state_dict",
        "model",
        "model.pt",
        _toy_seed("state_dict"),
        ("inspect", "compress", "sensitivity"),
        _STATE_DICT,
    ),
    FileKind(
        "safetensors",
        "model",
        "model.safetensors",
        _toy_seed("safetensors"),
        ("inspect", "compress", "sensitivity"),
        {
            "tensor_structure": tensor_structure(_safetensors_load, _safetensors_save),
            "safetensors_header": safetensors_header,
        },
    ),
    FileKind("exported", "model", "model.pt2", _toy_seed("exported"), ("inspect",), ZIP_MUTATIONS),
    FileKind(
        "torchscript",
        "model",
        "model.ts",
        _toy_seed("torchscript"),
        ("inspect", "compress"),
        ZIP_MUTATIONS,
    ),
    FileKind(
        "pickle",
        "model",
        "full.pt",
        _toy_seed("pickle"),
        ("inspect", "compress"),
        {"pickle_huge_number": pickle_huge_number, **ZIP_MUTATIONS},
    ),
    FileKind(
        "compressed",
        "model",
        "model.secz",
        _saved_seed("compressed", ".secz", "recipe"),  # sparse and int8: bitmask and dense
        ("inspect", "compress", "sensitivity"),
        {"compressed_header": compressed_header},
        uses={"recipe": "quantize_recipe"},  # its layers are quantized already
    ),
    FileKind(
        "onnx",
        "model",
        "model.onnx",
        _saved_seed("onnx", ".onnx", "prune_recipe"),
        ("inspect", "compress"),  # compress refuses an ONNX input in one line
        {"onnx_structure": onnx_structure},
    ),
    FileKind(
        "data_npz",
        "data",
        "data.npz",
        lambda base: base.data.read_bytes(),
        ("compress", "sensitivity"),
        {"npz_structure": npz_structure, "npy_huge_shape": npy_huge_shape},
    ),
    FileKind("data_pt", "data", "data.pt", _data_pt, ("compress", "sensitivity"), _STATE_DICT),
    FileKind(
        "recipe_yaml",
        "recipe",
        "recipe.yaml",
        lambda base: _RECIPE_YAML,
        ("compress",),
        {"yaml_structure": yaml_structure},
    ),
    FileKind(
        "recipe_json",
        "recipe",
        "recipe.json",
        _recipe_json,
        ("compress",),
        {"json_structure": json_structure},
    ),
    FileKind(
        "sidecar",
        "sidecar",
        "q.pt.secateur.json",
        lambda base: base.quantized.with_name(base.quantized.name + ".secateur.json").read_bytes(),
        ("inspect", "compress", "sensitivity"),
        {"json_structure": json_structure},
        # Its layers are quantized already: the recipe quantizes (pruning them is refused).
        uses={"recipe": "quantize_recipe"},
    ),
    FileKind(
        "sensitivity_cache",
        "cache",
        "",
        lambda base: base.cache.read_bytes(),
        ("sensitivity",),
        {"json_structure": json_structure},
        check=_cache_check,
    ),
    FileKind(
        "report",
        "report",
        "report.json",
        lambda base: base.report.read_bytes(),
        ("report",),
        {"json_structure": json_structure},
    ),
)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


def _quiet_main(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """core.cli.main in this process, its output captured (building the base files)."""
    from core.cli import main

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, err.getvalue()


def build_base(folder: Path) -> Base:
    """The valid base files, made with Secateur itself where Secateur writes them."""
    import numpy as np
    import torch
    from toy_models import mlp

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.pt"
    torch.save(mlp().state_dict(), model)
    rng = np.random.default_rng(0)
    data, train = folder / "data.npz", folder / "train.npz"
    for path in (data, train):
        np.savez(path, x=rng.standard_normal((32, 16), np.float32), y=rng.integers(0, 4, 32))
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        "version: 1\nprune: [{types: [Linear], amount: 0.5}]\nquantize: {scheme: int8_dynamic}\n"
    )
    quantize = folder / "quantize.yaml"
    quantize.write_text("version: 1\nquantize: {scheme: int8_dynamic}\n")
    prune = folder / "prune.yaml"
    prune.write_text("version: 1\nprune: [{types: [Linear], amount: 0.5}]\n")
    quantized, report = folder / "q.pt", folder / "report.json"
    common = ["--arch", TOY, "--data", str(data), "--skip-metrics"]
    env = {"SECATEUR_CACHE_DIR": str(folder / "cache")}
    argv = ["compress", str(model), *common, "--recipe", str(quantize), "--output", str(quantized)]
    sweep = ["sensitivity", str(model), "--arch", TOY, "--data", str(data), *SWEEP_FLAGS]
    for args in ([*argv, "--report", str(report)], [*sweep, "--output", str(folder / "s.json")]):
        code, err = _quiet_main(args, env)
        if code != 0:
            raise RuntimeError(f"building the fuzzer's base files failed: {err}")
    (cache,) = (folder / "cache").glob("*.json")
    return Base(folder, model, data, train, recipe, quantize, prune, quantized, cache, report)


@dataclass
class Seeds:
    """Every kind's valid file, as bytes."""

    base: Base
    files: dict[str, bytes]

    def donors(self, kind: str) -> list[bytes]:
        return [data for name, data in self.files.items() if name != kind]


def build_seeds(folder: Path, kinds: Sequence[FileKind] = KINDS) -> Seeds:
    base = build_base(folder / "base")
    return Seeds(base, {kind.name: kind.seed(base) for kind in kinds})


# ----------------------------------------------------------------------- cases
NO_MUTATION = "none"
"""The valid file itself: the fuzzer's control."""


@dataclass(frozen=True)
class Case:
    """One fuzz case: a kind, a mutation and a command, all fixed by (seed, index)."""

    seed: int
    index: int
    kind: str
    mutation: str
    command: str

    @property
    def id(self) -> str:
        return f"{self.index:04d}-{self.kind}-{self.mutation}-{self.command}"

    def rng(self) -> random.Random:
        return random.Random(f"{self.seed}:{self.index}:{self.kind}:{self.mutation}")

    def mutator(self) -> Mutator:
        if self.mutation == NO_MUTATION:
            return lambda data, rng, donors: data
        kind = KINDS_BY_NAME[self.kind]
        return BYTE_MUTATIONS.get(self.mutation) or kind.structural[self.mutation]


def make_cases(seed: int, count: int, kinds: Sequence[FileKind] = KINDS) -> list[Case]:
    """``count`` cases spread evenly over ``kinds``; half byte-level, half structural
    (for kinds with structural mutations); each kind's commands in turn."""
    cases = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        turn = index // len(kinds)
        rng = random.Random(f"{seed}:{index}")
        if kind.structural and rng.random() < 0.5:
            mutation = rng.choice(sorted(kind.structural))
        else:
            mutation = rng.choice(sorted(BYTE_MUTATIONS))
        command = kind.commands[turn % len(kind.commands)]
        cases.append(Case(seed, index, kind.name, mutation, command))
    return cases


@dataclass
class Request:
    """What the worker runs for one case, and what to check afterwards."""

    argv: list[str]
    env: dict[str, str]
    input: Path
    outputs: list[Path]


def materialise(case: Case, seeds: Seeds, folder: Path) -> Request:
    """Write the case's mutated file (and what must sit beside it) into ``folder``."""
    kind = KINDS_BY_NAME[case.kind]
    base = seeds.base
    folder.mkdir(parents=True, exist_ok=True)
    content = case.mutator()(seeds.files[case.kind], case.rng(), seeds.donors(case.kind))
    files = {"model": base.model, "data": base.data, "recipe": base.recipe}
    files.update({role: getattr(base, attr) for role, attr in kind.uses.items()})
    cache = folder / "cache"
    cache.mkdir()
    if kind.role == "sidecar":
        model = folder / base.quantized.name
        shutil.copyfile(base.quantized, model)
        path = folder / (model.name + ".secateur.json")
        files["model"] = model
    elif kind.role == "cache":
        path = cache / base.cache.name
    else:
        path = folder / kind.filename
        if kind.role in files:
            files[kind.role] = path
    path.write_bytes(content)
    out, sens = folder / "out.pt", folder / "sens.json"
    model_args = [str(files["model"]), "--arch", TOY]
    argv = {
        "inspect": ["inspect", *model_args],
        "compress": [
            "compress",
            *model_args,
            "--recipe",
            str(files["recipe"]),
            "--data",
            str(files["data"]),
            "--train-data",
            str(base.train),
            "--skip-metrics",
            "--output",
            str(out),
        ],
        "sensitivity": [
            "sensitivity",
            *model_args,
            "--data",
            str(files["data"]),
            *SWEEP_FLAGS,
            "--output",
            str(sens),
        ],
        "report": ["report", str(path)],
    }[case.command]
    return Request(argv, {"SECATEUR_CACHE_DIR": str(cache)}, path, [out, sens])


# ---------------------------------------------------------------------- worker
@dataclass
class Outcome:
    """How one case ended in the worker (``code`` None: it hung or the worker died)."""

    code: int | None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    peak_rss: int = 0
    died: str | None = None


def _read_report(path: str) -> int:
    from core.errors import UserError
    from core.report import Report

    try:
        Report.read(Path(path))
    except UserError as exc:
        print(f"secateur: error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print("secateur: internal error (a bug in Secateur; please report it)", file=sys.stderr)
        return 1
    return 0


def _ends(text: str, keep: int = 4000) -> str:
    """The first and last ``keep`` characters of a long output (its lines counted apart)."""
    if len(text) <= 2 * keep:
        return text
    return f"{text[:keep]}\n...\n{text[-keep:]}"


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _run_one(request: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from core.cli import main

    saved_env = {k: os.environ.get(k) for k in request["env"]}
    os.environ.update(request["env"])
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current
    out_path, err_path = scratch / "stdout", scratch / "stderr"
    saved_fds = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            argv = request["argv"]
            if argv[0] == "report":
                code = _read_report(argv[1])
            elif argv[0] == "python":  # the harness's own tests: a hang, a crash, ...
                code = eval(compile(argv[1], "<harness>", "eval"))
            else:
                code = main(argv)
        except BaseException:  # what main lets through (SystemExit, ...) is a failure
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
    seconds = time.perf_counter() - t0
    for k, v in saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    peak = _status_kb("VmHWM") * 1024
    gc.unfreeze()  # open_model freezes what a load created; a fuzz worker lives long
    gc.collect()
    return {
        "code": code,
        "stdout": _ends(out_path.read_text(errors="replace")),
        "stderr": _ends(err_path.read_text(errors="replace")),
        "seconds": seconds,
        "peak_rss": peak,
    }


def serve() -> None:
    """The worker: cases as JSON lines on stdin, outcomes as JSON lines on the original
    stdout; the case's own output goes to files."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    import torch

    torch.set_num_threads(1)
    from core import cli, compat, report  # noqa: F401  (imported once, before any case)

    compat.torchao()
    replies = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    scratch = Path(os.environ["SECATEUR_FUZZ_SCRATCH"])
    replies.write('{"ready": true}\n')
    replies.flush()
    for line in sys.stdin:
        replies.write(json.dumps(_run_one(json.loads(line), scratch)) + "\n")
        replies.flush()


class Worker:
    """A worker process; a case that overruns its time limit kills it (a new one starts)."""

    def __init__(self, scratch: Path, time_limit: float = TIME_LIMIT_S) -> None:
        self.scratch = scratch
        self.time_limit = time_limit
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def _start(self) -> subprocess.Popen:
        self.scratch.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
            "SECATEUR_FUZZ_SCRATCH": str(self.scratch),
            "OMP_NUM_THREADS": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        self.starts += 1
        line = self._reply(proc, 300.0)
        if not line or not json.loads(line).get("ready"):
            self._stop(proc, kill=True)
            raise RuntimeError("the fuzz worker did not start")
        return proc

    @staticmethod
    def _reply(proc: subprocess.Popen, timeout: float) -> str | None:
        """The worker's next line; "" when it died, None when it did not answer in time."""
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        return proc.stdout.readline()

    def run(self, request: Request) -> Outcome:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None
        message = {"argv": request.argv, "env": request.env}
        t0 = time.perf_counter()
        try:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._reply(proc, self.time_limit)
        if not line:
            seconds = time.perf_counter() - t0
            code = self._stop(proc, kill=line is None)
            self.proc = None
            if line is None:
                return Outcome(None, seconds=seconds, died=f"hung (over {self.time_limit:.0f} s)")
            how = f"signal {-code}" if code < 0 else f"exit {code}"
            return Outcome(None, seconds=seconds, died=f"the process died ({how})")
        return Outcome(**json.loads(line))

    @staticmethod
    def _stop(proc: subprocess.Popen, kill: bool) -> int:
        """End the worker (at once with ``kill``, else when its input closes); its code."""
        if kill:
            proc.kill()
        with contextlib.suppress(BrokenPipeError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return code

    def close(self) -> None:
        if self.proc is not None:
            self._stop(self.proc, kill=False)
            self.proc = None


# ----------------------------------------------------------------------- judge
def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def judge(
    kind: FileKind, request: Request, outcome: Outcome, before: str | None, folder: Path
) -> str | None:
    """Why the case failed, or None: exit 0, or exit 2 with one line; no hang, crash or
    memory beyond the bound; no partial output or temporary; the input unchanged (or what
    the kind's own check asks)."""
    if outcome.died:
        return outcome.died
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if any(text in outcome.stderr for text in ALLOCATION_FAILED):
        return f"an allocation failed (over {ADDRESS_SPACE >> 30} GiB of address space): {last}"
    if outcome.code not in (0, 2):
        return f"exit {outcome.code}: {last}"
    if "Traceback" in outcome.stderr:
        return f"a traceback with exit {outcome.code}: {last}"
    if outcome.code == 2 and len(lines) != 1:
        return f"exit 2 with {len(lines)} lines on stderr: {' | '.join(lines)[:300]}"
    if outcome.code == 2 and not lines[0].startswith("secateur: error: "):
        return f"exit 2 without the error line: {lines[0][:300]}"
    if outcome.peak_rss > MEMORY_BOUND:
        return f"peak RSS {outcome.peak_rss / 2**20:.0f} MiB > {MEMORY_BOUND / 2**20:.0f} MiB"
    if outcome.code != 0:
        partial = [p.name for p in request.outputs if p.exists()]
        if partial:
            return f"exit {outcome.code} left output behind: {', '.join(partial)}"
    temps = [p.name for p in folder.rglob("*.tmp")]
    if temps:
        return f"temporary files left behind: {', '.join(temps)}"
    if kind.check is not None:
        return kind.check(outcome)
    if _digest(request.input) != before:
        return "the input file was modified"
    return None


@dataclass
class Result:
    case: Case
    code: int | None
    seconds: float
    peak_rss: int
    failure: str | None
    stderr: str


def run_cases(
    cases: Sequence[Case],
    seeds: Seeds,
    folder: Path,
    time_limit: float = TIME_LIMIT_S,
    keep: bool = False,
    on_result: Callable[[Result], None] | None = None,
    worker: Worker | None = None,
) -> list[Result]:
    """Run every case in one worker (restarted after a hang or a crash); ``worker`` is
    used, and left running, when given."""
    own = worker is None
    worker = worker or Worker(folder / "worker", time_limit)
    results = []
    try:
        for case in cases:
            case_dir = folder / case.id
            request = materialise(case, seeds, case_dir)
            before = _digest(request.input)
            outcome = worker.run(request)
            failure = judge(KINDS_BY_NAME[case.kind], request, outcome, before, case_dir)
            result = Result(
                case, outcome.code, outcome.seconds, outcome.peak_rss, failure, outcome.stderr
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
            if not keep and failure is None:
                shutil.rmtree(case_dir, ignore_errors=True)
    finally:
        if own:
            worker.close()
    return results


def summary(results: Sequence[Result]) -> dict[str, dict[str, Any]]:
    """Per kind: cases, exit 0, exit 2, failures, slowest case and largest peak RSS."""
    table: dict[str, dict[str, Any]] = {}
    for r in results:
        row = table.setdefault(
            r.case.kind,
            {"cases": 0, "exit 0": 0, "exit 2": 0, "failed": 0, "max_s": 0.0, "max_rss": 0},
        )
        row["cases"] += 1
        row["exit 0"] += r.code == 0 and r.failure is None
        row["exit 2"] += r.code == 2 and r.failure is None
        row["failed"] += r.failure is not None
        row["max_s"] = max(row["max_s"], r.seconds)
        row["max_rss"] = max(row["max_rss"], r.peak_rss)
    return table


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    sys.path.insert(0, str(TESTS))
    serve()

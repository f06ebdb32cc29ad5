"""Core changes the benchmarks propose, as monkeypatches, so their effect can be measured
before the core adopts them. Nothing here is used by the product; ``memory.py`` applies
them only in rows labelled "proposal".

- ``partition`` (adopted: ``core.pruning._l1_keep`` now does this): find the L1 threshold
  with numpy's in-place ``partition`` on the one abs copy and build the mask in chunks.
- ``fused``: for an L1 layer whose mask is not held, do all of that inside the new weight's
  own memory (abs into it, partition, then copy and zero): peak = new weight + a bool mask.
- ``mallopt``: fix glibc's mmap threshold at 4 MiB, so freed large tensors go back to the
  OS instead of staying in the heap (glibc raises the threshold dynamically to the size of
  the last freed mmapped block, up to 32 MiB, after which layer-sized blocks are
  heap-allocated and retained).
- ``trim``: call glibc's ``malloc_trim(0)`` after every layer (at each progress event):
  the freed blocks go back to the OS at ~2 ms a call, with no slowdown elsewhere (mallopt's
  fixed threshold costs a page fault per fresh page of every large allocation: the engine
  ran ~40% slower with it on the 50M stack).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator
from typing import Any

import torch
from torch.nn.utils import prune

CHUNK = 1 << 18
M_MMAP_THRESHOLD = -3


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _keep_mask(src: torch.Tensor, threshold: float, count: int) -> torch.Tensor:
    """abs(src) >= threshold, then the first ties at the threshold dropped until exactly
    ``count`` elements go (as core.pruning does), computed in chunks of CHUNK elements."""
    n = src.numel()
    keep = torch.empty(n, dtype=torch.bool)
    for i in range(0, n, CHUNK):
        torch.ge(src[i : i + CHUNK].abs(), threshold, out=keep[i : i + CHUNK])
    missing = count - (n - int(torch.count_nonzero(keep)))
    for i in range(0, n, CHUNK):
        if missing <= 0:
            break
        ties = torch.nonzero(src[i : i + CHUNK].abs() == threshold).flatten()[:missing]
        keep[i + ties] = False
        missing -= ties.numel()
    return keep


def prune_l1_fused(module: Any, amount: int | float) -> None:
    """L1-prune one layer with no mask held, into a new weight, using that new weight's own
    memory as the scratch for the threshold search: peak = the new weight + a bool mask."""
    from torch import nn

    w = module.weight.detach()
    new = torch.empty_like(w, dtype=torch.float32)
    n = w.numel()
    count = prune._compute_nparams_toprune(amount, n)
    prune._validate_pruning_amount(count, n)
    if count:
        flat = new.view(-1)
        torch.abs(w.reshape(-1), out=flat)
        values = flat.numpy()
        values.partition(count - 1)
        threshold = float(values[count - 1])
        keep = _keep_mask(w.reshape(-1), threshold, count)
        torch.logical_not(keep, out=keep)
        new = new.to(w.dtype) if w.dtype != torch.float32 else new
        new.copy_(w)
        new.view(-1).masked_fill_(keep, 0)
    else:
        new.copy_(w)
    module.weight = nn.Parameter(new, requires_grad=module.weight.requires_grad)


def _fused_prune_layer(original: Any) -> Any:
    def prune_one(module: Any, rule: Any, hold: bool = True) -> None:
        if rule.method == "l1_unstructured" and not hold:
            prune_l1_fused(module, rule.amount)
        else:
            original(module, rule, hold)

    return prune_one


def apply(names: list[str]) -> list[str]:
    """Apply the named proposals to this process; returns those applied."""
    done = []
    for name in names:
        if name == "fused":
            import core.pruning

            core.pruning.prune_layer = _fused_prune_layer(core.pruning.prune_layer)
            done.append(name)
        elif name == "mallopt":
            if _libc().mallopt(M_MMAP_THRESHOLD, 4 << 20):
                done.append(name)
        elif name == "trim":
            done.append(name)
        else:
            raise ValueError(f"unknown proposal {name!r}")
    return done


@contextlib.contextmanager
def patched(names: list[str]) -> Iterator[list[str]]:
    """Apply proposals that can be undone (``fused``) inside the block."""
    import core.pruning

    saved = core.pruning.prune_layer
    try:
        yield apply(names)
    finally:
        core.pruning.prune_layer = saved


def trim() -> None:
    from core.compat import release_memory  # adopted by the engine after each layer

    release_memory()

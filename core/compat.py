"""Quiet, lazy access to torchao and torch.ao.quantization.

Both libraries talk a lot at import and call time (optional CUDA kernels that fail to load
on a CPU machine, pytree deprecations, torch.ao's own deprecation). Users get one clear
notice from Secateur instead: see ``LEGACY_NOTICE``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from functools import cache
from types import ModuleType

LEGACY_NOTICE = (
    "backend 'legacy' uses torch.ao.quantization, which PyTorch has deprecated in favour of "
    "torchao; Secateur keeps it because its fbgemm/x86 kernels are often the fastest int8 "
    "path on a CPU"
)

_QUIET_LOGGERS = ("torchao", "torch.utils._pytree")
_QUIET_WARNINGS = (
    r".*torch\.ao\.quantization is deprecated.*",
    r".*quantized tensor creation functions.*deprecated.*",
    r".*TypedStorage is deprecated.*",
    r".*register_constant.*",
    r".*torch\.jit\.\w+.* is deprecated.*",
    r".*Detected pickle protocol.*",
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the known third-party deprecation chatter inside the block (and only that)."""
    with warnings.catch_warnings():
        for pattern in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


@contextlib.contextmanager
def captured_log(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records logger ``name`` emits inside the block, kept instead of printed (torch
    logs a traceback to stderr before raising a vaguer error; the caller reports it in one
    line instead)."""
    logger = logging.getLogger(name)
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    saved = logger.handlers[:], logger.propagate
    logger.handlers = [_Keep()]
    logger.propagate = False
    try:
        yield records
    finally:
        logger.handlers, logger.propagate = saved


def logged_error(records: list[logging.LogRecord]) -> BaseException | None:
    """The last exception among captured log records, if any."""
    for record in reversed(records):
        if record.exc_info and record.exc_info[1] is not None:
            return record.exc_info[1]
    return None


@cache
def torchao() -> ModuleType:
    """Import torchao.quantization without its CPU-machine noise."""
    saved = {}
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.ERROR)
    try:
        with quiet():
            import torchao.quantization as quantization
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    return quantization


@cache
def legacy() -> tuple[ModuleType, ModuleType]:
    """Import torch.ao.quantization and its dynamic quantized modules quietly."""
    with quiet():
        import torch.ao.nn.quantized.dynamic as nnqd
        import torch.ao.quantization as tq
    return tq, nnqd


@cache
def _malloc_trim():  # type: ignore[no-untyped-def]
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim; ~2 ms).

    glibc keeps freed layer-sized blocks in the heap once its mmap threshold has grown, so
    without this the peak resident memory of a job depends on the order of frees. A no-op
    where there is no glibc.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

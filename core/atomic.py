"""Atomic writes: a temporary file in the target folder, fsync, then a rename over the target.

A failure at any point leaves either the old file or nothing, never half a file. Every file
Secateur writes (models, reports, recipes, caches, images) goes through here.

A process that dies mid-write (``kill -9``, a power loss) cannot remove its temporary file, so
the temporary's name says who wrote it, as databases do with their lock and journal files:
``.out.pt.secateur-<host>-<pid>-<start>.<random>.tmp`` (the host, the writer's process id and
the process's start time). The next write into that folder, or opening a model from it,
removes the temporaries whose writer no longer exists (``remove_stale_temporaries``): only
Secateur's, only this user's, only ones written on this host, never a live writer's (a reused
process id is told apart by its start time). Listeners (``on_stale_removed``) say so: the
command line prints a line, the window logs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import IO

import psutil

try:
    import fcntl
except ImportError:  # not on Windows: saves there are not serialised
    fcntl = None  # type: ignore[assignment]

from core.errors import SaveError, first_line

TEMP_SUFFIX = ".tmp"
_TARGET_CHARS = 120  # of the target's name kept in the temporary's (names are <= 255 bytes)
_TEMP_NAME = re.compile(
    r"^\..*\.secateur-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-(?P<start>[0-9]+)\.[A-Za-z0-9_]+"
    + re.escape(TEMP_SUFFIX)
    + "$",
    re.DOTALL,
)
_START_TOLERANCE_CS = 200  # start times are compared within 2 s (boot-time rounding, NTP)

StaleListener = Callable[[list[Path]], None]
_listeners: list[StaleListener] = []
_listeners_lock = threading.Lock()


# ------------------------------------------------------------------ who writes
@cache
def _host() -> str:
    """This machine, as 8 hex digits (a folder may be shared over the network)."""
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"


def _start_cs(pid: int) -> int | None:
    """When process ``pid`` started, in centiseconds since the epoch; None if it is gone."""
    try:
        return round(psutil.Process(pid).create_time() * 100)
    except psutil.Error:
        return None


@cache
def _writer_tag(pid: int) -> str:
    """host-pid-start of this process (cached per pid: a forked child gets its own)."""
    return f"{_host()}-{pid}-{_start_cs(pid) or 0}"


def temp_prefix(target: Path) -> str:
    """The start of a temporary's name beside ``target``: hidden, naming the target and
    its writer."""
    return f".{target.name[:_TARGET_CHARS]}.secateur-{_writer_tag(os.getpid())}."


def _writer_gone(pid: int, start_cs: int) -> bool:
    """True only when no process that could have written the file exists any more."""
    try:
        created = round(psutil.Process(pid).create_time() * 100)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # cannot tell (access denied, ...): keep the file
    if start_cs == 0:
        return False  # the writer could not read its own start time: the pid alone decides
    return abs(created - start_cs) > _START_TOLERANCE_CS  # the pid was reused


# -------------------------------------------------------- stale temporaries
def stale_temporaries(folder: Path) -> list[Path]:
    """Secateur's temporaries in ``folder`` whose writer no longer exists.

    A file counts only if its name has Secateur's temporary form, it is a regular file or a
    folder (an ONNX export builds one; never a link) owned by this user, it was written on
    this host, and its writer process is gone.
    """
    folder = Path(folder) if str(folder) else Path(".")
    uid = os.getuid() if hasattr(os, "getuid") else None
    host = _host()
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.endswith(TEMP_SUFFIX):
            continue
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["host"] != host:
            continue
        try:
            if not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)):
                continue
            if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        if _writer_gone(int(match["pid"]), int(match["start"])):
            found.append(folder / entry.name)
    return sorted(found)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove what ``stale_temporaries(folder)`` finds; return the paths removed.

    Called before every atomic write into a folder and when a model is opened from it;
    listeners hear of every removal (the command line prints a line, the window logs it).
    A file that cannot be removed (read-only folder, removed meanwhile) is skipped.
    """
    removed = []
    for path in stale_temporaries(folder):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    if removed:
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            try:
                listener(removed)
            except Exception:  # a listener's own failure never fails the save or the load
                logging.getLogger(__name__).exception("a stale-temporaries listener failed")
    return removed


def on_stale_removed(listener: StaleListener) -> Callable[[], None]:
    """Call ``listener(removed_paths)`` after each cleanup that removed something (from any
    thread); returns the function that stops it."""
    with _listeners_lock:
        _listeners.append(listener)

    def stop() -> None:
        with _listeners_lock, contextlib.suppress(ValueError):
            _listeners.remove(listener)

    return stop


def describe_removed(removed: Sequence[Path]) -> str:
    """One line that says what a cleanup removed, for the command line and the window."""
    names = [p.name for p in removed]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    folder = removed[0].parent if removed else Path(".")
    files = "file" if len(names) == 1 else "files"
    return (
        f"removed {len(names)} stale temporary {files} in {folder} left by an interrupted "
        f"write (a killed process or a power loss): {shown}"
    )


# ------------------------------------------------------------------- locking
@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for the block (flock on the folder itself: no
    lock file to leave behind), so that files that belong together (a model and its
    sidecar) are published, and checked, without another process's save in between.

    Best effort: where the folder cannot be opened or locked (no flock on this system or
    file system) the block runs unlocked, as every save did before."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        fd = None
    try:
        if fd is not None and fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


# ------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """Yield a temporary file beside ``path``; on success fsync it and replace ``path``."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SaveError(f"{path}: the folder {folder} does not exist")
    remove_stale_temporaries(folder)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=folder)
    except PermissionError:
        raise SaveError(f"{path}: permission denied (cannot write in {folder})") from None
    except OSError as exc:
        raise SaveError(f"{path}: cannot write in {folder} ({exc.strerror})") from None
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file owner-only; a saved model gets the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w+b") as fh:  # readable too: a caller may digest what it wrote
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is racy)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_file``)."""
    try:
        with atomic_file(Path(path)) as fh:
            fh.write(data)
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError(f"{path}: write failed ({exc.strerror or first_line(exc)})") from None

"""Real process faults: ``kill -9`` of ``secateur compress`` / ``sensitivity`` inside each phase
of its work, and two processes saving to one path at once (``tests/test_kills.py``,
``benchmarks/fuzz.py --kills``).

Every run is a real ``python -m gui.launcher`` process; nothing in it is patched. Its stderr is
a pseudo-terminal, so it draws its progress bar as a user sees it, and the phase is found by
watching that output and the files: the model file mapped (load), a "pruned ..." /
"quantized ..." / "fine-tune epoch ..." / sweep line (prune, quantize, fine-tune, sweep), a
temporary beside the output (save). On the trigger the process is stopped (SIGSTOP, so it
cannot move on while it is checked), its phase is confirmed from what it printed, and it is
killed with SIGKILL. The only phase too short to catch this way, the write of a sensitivity
cache entry (a few kilobytes), is caught by ``tests/pause_hook`` (a test-only audit hook that
makes the process wait once the entry's temporary is complete, just before it is renamed).

After each kill: the input is byte-identical, no output (or the old output, untouched)
exists, and the next run of the same command succeeds, removes the stale temporary with one
line saying so, and leaves no temporary behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core import compat
from core.loading import load_model

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ARCH = f"{TESTS / 'toy_models.py'}:stack"
PAUSE_HOOK = TESTS / "pause_hook"
START_TIMEOUT_S = 180.0  # a phase not reached in this time fails the scenario


@dataclass
class Inputs:
    """The files every scenario reads: a 64 MB state dict, evaluation and training data."""

    folder: Path
    model: Path
    data: Path
    train: Path


def build_inputs(folder: Path) -> Inputs:
    import numpy as np
    import torch
    from toy_models import STACK_WIDTH, stack

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "stack.pt"
    torch.save(stack().state_dict(), model)
    rng = np.random.default_rng(0)
    paths = []
    for name, count in (("data.npz", 64), ("train.npz", 256)):
        path = folder / name
        x = rng.standard_normal((count, STACK_WIDTH), np.float32)
        labels = {"y": rng.integers(0, STACK_WIDTH, count)} if name == "train.npz" else {}
        np.savez(path, x=x, **labels)  # evaluation without labels: cosine similarity
        paths.append(path)
    return Inputs(folder, model, *paths)


# ----------------------------------------------------------------- watching a run
@dataclass
class Run:
    """A running ``secateur`` process, its progress lines and its folder."""

    proc: subprocess.Popen
    master: int
    folder: Path
    model: Path
    raw: str = ""

    @property
    def messages(self) -> list[str]:
        """The progress bar's messages, oldest first (``[###...] 3/40 pruned fc1`` -> the
        text after the step count), and any plain lines."""
        out = []
        for chunk in self.raw.replace("\n", "\r").split("\r"):
            text = chunk.strip()
            if text.startswith("[") and "] " in text:
                text = text.split("] ", 1)[1].split(" ", 1)[-1].strip()
            if text:
                out.append(text)
        return out

    def last(self) -> str:
        return self.messages[-1] if self.messages else ""

    def read(self, timeout: float) -> bool | None:
        """Read what the process printed: True when something came, None when nothing came
        within ``timeout``, False once it has closed its terminal."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return None
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        self.raw += data.decode(errors="replace")
        return bool(data)

    def drain(self) -> None:
        """Read everything printed so far (the process is stopped or done)."""
        while self.read(0.05):
            pass

    def maps(self, path: Path) -> bool:
        """True when the process has ``path`` mapped or open (it is reading the model)."""
        try:
            if str(path) in Path(f"/proc/{self.proc.pid}/maps").read_text():
                return True
            fds = Path(f"/proc/{self.proc.pid}/fd")
            return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
        except OSError:
            return False

    def temporaries(self, folder: Path | None = None) -> list[Path]:
        return sorted((folder or self.folder).glob(".*.secateur-*.tmp"))


def start(
    argv: list[str], folder: Path, model: Path, pause: dict | None = None
) -> tuple[Run, Path]:
    """Start ``python -m gui.launcher ARGV`` with its stderr on a pseudo-terminal."""
    paths = [str(ROOT)] + ([str(PAUSE_HOOK)] if pause else [])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "SECATEUR_CACHE_DIR": str(folder / "cache"),
        "TERM": "xterm",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("SECATEUR_TEST_PAUSE", None)
    if pause:
        env["SECATEUR_TEST_PAUSE"] = json.dumps(pause)
    master, slave = pty.openpty()
    stdout = folder / f"stdout-{time.monotonic_ns()}.txt"
    with stdout.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gui.launcher", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=slave,
            env=env,
            cwd=folder,
        )
    os.close(slave)
    return Run(proc, master, folder, model), stdout


def finish(run: Run) -> int:
    """Wait for the run to end, reading its output; its exit code."""
    while run.read(0.05) is not False:
        pass
    code = run.proc.wait()
    os.close(run.master)
    return code


# ------------------------------------------------------------------ the phases
@dataclass(frozen=True)
class Phase:
    """Where to kill: the command, a recipe, when to stop the process (``trigger``) and how
    to confirm, once it is stopped, that it is inside the phase (``inside``)."""

    name: str
    command: str
    recipe: str | None
    trigger: Callable[[Run], bool]
    inside: Callable[[Run], bool]
    # (audit event, path prefix in the run's folder) where tests/pause_hook makes it wait
    pause: tuple[str, str] | None = None
    existing_output: bool = False  # an older output file is in place before the run


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _seen(prefix: str, count: int = 1) -> Callable[[Run], bool]:
    return lambda run: sum(m.startswith(prefix) for m in run.messages) >= count


def _last_is(prefix: str) -> Callable[[Run], bool]:
    return lambda run: run.last().startswith(prefix)


PRUNE = "version: 1\nprune: [{types: [Linear], amount: 0.5}]\n"
QUANTIZE = "version: 1\nquantize: {scheme: int8_dynamic}\n"
FINETUNE = PRUNE + "finetune: {epochs: 4, batch_size: 64, lr: 0.0001}\n"
BOTH = PRUNE + "quantize: {scheme: int8_dynamic}\n"

PHASES: tuple[Phase, ...] = (
    Phase(
        "load",
        "compress",
        BOTH,
        lambda run: run.maps(run.model),
        lambda run: not run.messages,  # nothing drawn yet: still opening the model and data
    ),
    Phase("prune", "compress", PRUNE, _seen("pruned ", 2), _last_is("pruned ")),
    Phase("quantize", "compress", QUANTIZE, _seen("quantized ", 2), _last_is("quantized ")),
    Phase(
        "fine-tune",
        "compress",
        FINETUNE,
        _seen("fine-tune epoch 1/"),
        lambda run: run.last().startswith("fine-tune epoch") and "4/4" not in run.last(),
    ),
    Phase(
        "save",
        "compress",
        BOTH,
        lambda run: any(_size(p) for p in run.temporaries() if p.name.startswith(".out.pt.sec")),
        lambda run: any(p.name.startswith(".out.pt.secateur-") for p in run.temporaries()),
        existing_output=True,
    ),
    Phase(
        "sweep",
        "sensitivity",
        None,
        _seen("layers.2: l1_unstructured"),  # a layer's measurement (a sweep line)
        lambda run: run.last().startswith("layers.") and not (run.folder / "cache").exists(),
    ),
    Phase(
        "sweep (cache write)",
        "sensitivity",
        None,
        _seen("paused "),
        lambda run: bool(run.temporaries(run.folder / "cache")),
        pause=("os.rename", "cache/."),  # the entry written in full, not yet renamed
    ),
)
PHASES_BY_NAME = {phase.name: phase for phase in PHASES}


def _save_temp(run: Run) -> bool:
    return any(p.name.startswith(".out.pt.secateur-") for p in run.temporaries())


# More kill points per phase, for benchmarks/fuzz.py --kills (the tests use PHASES).
VARIANTS: tuple[Phase, ...] = (
    Phase("load (sensitivity)", "sensitivity", None, PHASES[0].trigger, PHASES[0].inside),
    *(
        Phase(f"prune, after layer {k}", "compress", PRUNE, _seen("pruned ", k), PHASES[1].inside)
        for k in (1, 8, 15)
    ),
    *(
        Phase(
            f"quantize, after layer {k}",
            "compress",
            QUANTIZE,
            _seen("quantized ", k),
            PHASES[2].inside,
        )
        for k in (1, 8, 15)
    ),
    Phase(
        "fine-tune, epoch 3",
        "compress",
        FINETUNE,
        _seen("fine-tune epoch 2/"),
        PHASES[3].inside,
    ),
    Phase("save, no older output", "compress", BOTH, PHASES[4].trigger, _save_temp),
    Phase(
        "save, written in full, not yet renamed",
        "compress",
        BOTH,
        _seen("paused "),
        _save_temp,
        pause=("os.rename", ".out.pt.secateur-"),
        existing_output=True,
    ),
    Phase(
        "save, writing the sidecar (published before the model)",
        "compress",
        BOTH,
        _seen("paused "),
        lambda run: _save_temp(run) and not (run.folder / "out.pt").exists(),
        pause=("os.rename", ".out.pt.secateur.json.secateur-"),
    ),
    Phase(
        "sweep, next to last layer",
        "sensitivity",
        None,
        _seen("layers.28: l1_unstructured"),
        PHASES[5].inside,
    ),
    Phase(
        "sweep (cache write), empty temporary",
        "sensitivity",
        None,
        _seen("paused "),
        PHASES[6].inside,
        pause=("os.chmod", "cache/."),
    ),
)


def command(phase: Phase, inputs: Inputs, folder: Path) -> list[str]:
    model = [str(inputs.model), "--arch", ARCH]
    if phase.command == "sensitivity":
        return [
            "sensitivity",
            *model,
            "--data",
            str(inputs.data),
            "--types",
            "Linear",
            "--amounts",
            "0.5",
            "--subset",
            "32",
            "--output",
            str(folder / "sens.json"),
        ]
    recipe = folder / "recipe.yaml"
    recipe.write_text(phase.recipe or "")
    return [
        "compress",
        *model,
        "--recipe",
        str(recipe),
        "--data",
        str(inputs.data),
        "--train-data",
        str(inputs.train),
        "--skip-metrics",
        "--output",
        str(folder / "out.pt"),
        "--report",
        str(folder / "report.json"),
    ]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _listing(folder: Path) -> dict[str, int]:
    """Files under ``folder`` (relative name -> size), the runs' own logs left out."""
    return {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("stdout-") and p.name != "recipe.yaml"
    }


@dataclass
class KillResult:
    """One scenario: where it was killed, what it left, what the next run did."""

    phase: str
    killed_at: str  # the last thing the process printed before the kill
    inside: bool  # the stopped process was confirmed to be inside the phase
    left: dict[str, int]  # files in the run's folder after the kill (name -> bytes)
    input_unchanged: bool
    old_output_unchanged: bool | None  # None: there was no older output
    next_code: int
    next_notes: list[str]  # the next run's "secateur: note: ..." lines
    next_left: dict[str, int]  # files after the next run
    next_seconds: float
    problems: list[str] = field(default_factory=list)
    held_at: str | None = None  # the audit event tests/pause_hook held the process at


def kill_in(phase: Phase, inputs: Inputs, folder: Path) -> KillResult:
    """Run the phase's command, SIGKILL it inside the phase, check what is left, run the
    same command again and check that it succeeds and cleans up."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = command(phase, inputs, folder)
    before = _digest(inputs.model)
    old = folder / "out.pt"
    if phase.existing_output:
        old.write_bytes(b"an older result the interrupted save must leave alone\n")
    old_bytes = old.read_bytes() if old.exists() else None
    pause = None
    if phase.pause:
        event, prefix = phase.pause
        pause = {"event": event, "match": str(folder / prefix)}
    run, _ = start(argv, folder, inputs.model, pause)
    problems: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not phase.trigger(run):
            if run.read(0.002) is False and run.proc.poll() is not None:
                break  # it has ended
            if time.monotonic() > deadline:
                break
        reached = phase.trigger(run)
        os.kill(run.proc.pid, signal.SIGSTOP)
        run.drain()  # what it printed before it stopped
        inside = reached and phase.inside(run)
        killed_at = run.last() or "(nothing printed yet)"
    finally:
        os.kill(run.proc.pid, signal.SIGKILL)
        finish(run)
    if not reached:
        problems.append(f"never reached the phase (last printed: {run.last()!r})")
    left = _listing(folder)
    unchanged = _digest(inputs.model) == before
    old_unchanged = None if old_bytes is None else old.exists() and old.read_bytes() == old_bytes
    partial = [name for name in left if name in ("out.pt", "report.json", "sens.json")]
    if old_bytes is not None:
        partial = [name for name in partial if name != "out.pt"]
    if partial:
        problems.append(f"partial output after the kill: {partial}")
    if not unchanged:
        problems.append("the input model changed")
    if old_unchanged is False:
        problems.append("the older output was changed")
    stale = [n for n in left if n.endswith(".tmp")]

    t0 = time.monotonic()
    rerun, stdout = start(argv, folder, inputs.model)
    code = finish(rerun)
    seconds = time.monotonic() - t0
    notes = [m for m in rerun.messages if m.startswith("secateur: note:")]
    after = _listing(folder)
    if code != 0:
        problems.append(f"the next run failed (exit {code}): {rerun.last()}")
    leftovers = [name for name in after if name.endswith(".tmp")]
    if leftovers:
        problems.append(f"temporaries survived the next run: {leftovers}")
    said = sum(int(m[1]) for n in notes if (m := re.search(r"removed (\d+) stale temporar", n)))
    if said != len(stale):
        problems.append(f"the next run said it removed {said} temporaries, not {stale}")
    if len(notes) > len(stale):
        problems.append(f"unexpected notes: {notes}")
    output = "sens.json" if phase.command == "sensitivity" else "out.pt"
    if output not in after:
        problems.append(f"the next run wrote no {output}")
    if phase.command == "compress" and "round trip: ok" not in stdout.read_text():
        problems.append("the next run's round trip was not ok")
    if _digest(inputs.model) != before:
        problems.append("the input model changed in the next run")
    return KillResult(
        phase.name,
        killed_at,
        inside,
        left,
        unchanged,
        old_unchanged,
        code,
        notes,
        after,
        seconds,
        problems,
        phase.pause[0] if phase.pause else None,
    )


# ---------------------------------------------------------- two savers at once
@dataclass
class RaceResult:
    codes: list[int]
    winner: str | None  # which run's file the output is ("quantized" or "pruned")
    sidecar: bool  # a sidecar is beside the output
    consistent: bool  # the output and its sidecar belong together and load
    round_trips: list[str]
    left: dict[str, int]
    problems: list[str] = field(default_factory=list)


RACE_RECIPES = {
    "quantized": BOTH,
    "pruned": "version: 1\nprune: [{types: [Linear], amount: 0.3}]\n",
}


def race(inputs: Inputs, folder: Path) -> RaceResult:
    """Two processes compress to the same output path, one quantizing (a file and its
    sidecar), one not (a file alone); they wait for each other where their saves start
    (tests/pause_hook's barrier) and save at the same moment. The output must be one whole
    file from one of them with the sidecar that belongs to it (or none), each run's round
    trip must check its own file, and neither may crash."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "out.pt"
    pause = {  # both wait for each other where a save starts (it opens the folder to lock it)
        "event": "open",
        "match": str(folder),
        "exact": True,
        "barrier": str(folder / "barrier"),
        "count": 2,
    }
    runs = []
    for name, recipe in RACE_RECIPES.items():
        sub = folder / name
        sub.mkdir(exist_ok=True)
        path = sub / "recipe.yaml"
        path.write_text(recipe)
        argv = [
            "compress",
            str(inputs.model),
            "--arch",
            ARCH,
            "--recipe",
            str(path),
            "--data",
            str(inputs.data),
            "--skip-metrics",
            "--output",
            str(out),
        ]
        runs.append(start(argv, sub, inputs.model, pause))
    codes = [finish(run) for run, _ in runs]
    round_trips = [
        next((line for line in stdout.read_text().splitlines() if "round trip" in line), "")
        for _, stdout in runs
    ]
    problems = []
    for (run, _), code, trip in zip(runs, codes, round_trips):
        if code != 0:
            problems.append(f"a run failed (exit {code}): {run.last()}")
        if not trip.startswith("round trip: ok"):
            problems.append(f"a run's round trip checked another file: {trip}")
    sidecar = out.with_name(out.name + ".secateur.json").exists()
    winner = None
    consistent = False
    try:
        compat.torchao()  # torch.load of torchao's int8 tensors needs them registered
        state = torch.load(out, weights_only=True, map_location="cpu")
        quantized = any(type(v).__name__ == "Int8Tensor" for v in state.values())
        winner = "quantized" if quantized else "pruned"
        consistent = quantized == sidecar
        load_model(out, arch=ARCH)
    except Exception as exc:
        consistent = False
        problems.append(f"the output does not load: {exc}")
    if not consistent:
        problems.append(f"the output ({winner}) and the sidecar (present: {sidecar}) are a mix")
    left = {p.name: p.stat().st_size for p in folder.glob(".*.tmp")}
    if left:
        problems.append(f"temporaries left: {sorted(left)}")
    return RaceResult(codes, winner, sidecar, consistent, round_trips, left, problems)

"""Faults and hostile files: the mutation fuzzer at any size, and the process kills in full.

    python benchmarks/fuzz.py [--cases 2000] [--seed 0] [--kinds state_dict,data_npz]
                              [--time-limit 30] [--out out/fuzz]
    python benchmarks/fuzz.py --kills [--repeat 2]     # every kill point, repeated, and races
    python benchmarks/fuzz.py --cases 2000 --kills --doc   # and write docs/benchmarks.md's section
    python benchmarks/fuzz.py --render                     # the section again, from OUT's JSON

The fuzzer (``tests/fuzzing.py``) writes ``OUT/fuzz.json``: the seed, the count, a row per file
kind and every failing case (its id, reason and stderr); each failing case's files stay in
``OUT/<case id>/`` to reproduce it. The kills (``tests/faults.py``) run every phase of
``PHASES`` and ``VARIANTS`` ``--repeat`` times, and two processes saving to one path
``--repeat`` times, into ``OUT/kills.json``. ``--doc`` replaces (or appends) the "Faults and
hostile files" section of docs/benchmarks.md, between its markers (the rest is kept), from
this run and, for what it did not run, OUT's JSON of the last one.
Exit code 1 when a case or a kill failed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import faults  # noqa: E402  (tests/ is put on the path above)
import fuzzing  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- faults:begin (benchmarks/fuzz.py --doc) -->"
END = "<!-- faults:end -->"

# What the fuzzer and the kill tests found when they were written (issue 14), and the fix.
FOUND = (
    (
        "a data file whose x holds strings (the issue)",
        "exit 1",
        "core/data.py: one line naming the key and the dtype",
    ),
    (
        "a sensitivity cache entry of the wrong shape, e.g. [1, 2] (the issue)",
        "exit 1",
        "core/sensitivity.py: validated against a schema and the sweep it stands for; ignored and "
        "recomputed with one note",
    ),
    (
        "a temporary left by kill -9 or a power loss (the issue)",
        "stays forever",
        "core/atomic.py: named by host, pid and start time; removed by the next write or open, "
        "with one note",
    ),
    (
        "a zip whose member name is not UTF-8",
        "exit 1",
        "core/loading.py: any failure of the zip probe is a damaged archive",
    ),
    (
        "a state dict with a list where a tensor belongs",
        "exit 1",
        "core/loading.py: the mismatch names the key and what it holds",
    ),
    (
        "an .npy header declaring a terabyte array",
        "MemoryError, exit 1",
        "core/data.py: declared sizes checked against the archive before numpy allocates",
    ),
    (
        "a damaged .pt2",
        "torch's traceback on stderr before the error",
        "core/loading.py: torch's log captured; its first error becomes the one line",
    ),
    (
        "a TorchScript archive with an empty tensor record",
        "segmentation fault",
        "core/loading.py: every tensor's data checked against its shape after torch.jit.load",
    ),
    ("uint16 labels", "exit 1", "core/data.py: labels converted to int64 before comparing"),
    (
        "a 100 KB bad value (e.g. in a sidecar)",
        "a 100 KB error line",
        "core/errors.py: one-line errors cut to 1,000 characters in the middle",
    ),
    (
        "a sweep of an already quantized layer (a sidecar case)",
        "exit 1",
        "core/sensitivity.py: refused in one line",
    ),
    (
        "kill -9 between publishing a quantized model and its sidecar",
        "a model beside no sidecar, or beside the previous save's",
        "core/saving.py: the sidecar (with the model's SHA-256) is published first; "
        "core/loading.py refuses a sidecar that does not belong to the file",
    ),
    (
        "two processes saving one path",
        "the model of one beside the sidecar of the other; a false round-trip FAILED",
        "core/saving.py: the model, its sidecar and the round trip under one lock on the folder",
    ),
)
PENDING = (
    (
        "compress of a TorchScript or .pt2 model",
        "exit 2, but `prune[0].layers: '*' matches no prunable layer`",
        "core/engine.py (not changed here): call loaded.require_eager() before planning, so "
        "the reason given is that the format cannot be pruned",
    ),
    (
        "compress with a prune rule on an already quantized layer",
        "exit 1",
        "core/pruning.py (not changed here): plan_pruning should refuse it in one line, as the "
        "quantization plan does",
    ),
)


# ----------------------------------------------------------------------------- fuzz
def run_fuzz(args: argparse.Namespace) -> dict[str, Any]:
    kinds = [fuzzing.KINDS_BY_NAME[k] for k in args.kinds.split(",")] if args.kinds else None
    kinds = kinds or list(fuzzing.KINDS)
    folder = args.out / "cases"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    seeds = fuzzing.build_seeds(folder, kinds)
    cases = fuzzing.make_cases(args.seed, args.cases, kinds)
    done = Counter[str]()

    def show(result: fuzzing.Result) -> None:
        done["cases"] += 1
        done["failed"] += result.failure is not None
        if result.failure or done["cases"] % 100 == 0:
            note = f" {result.case.id}: {result.failure}" if result.failure else ""
            print(
                f"[fuzz] {done['cases']}/{len(cases)}, {done['failed']} failed{note}",
                file=sys.stderr,
                flush=True,
            )

    results = fuzzing.run_cases(cases, seeds, folder, args.time_limit, on_result=show)
    seconds = time.perf_counter() - t0
    report = {
        "seed": args.seed,
        "cases": len(results),
        "seconds": seconds,
        "time_limit_s": args.time_limit,
        "memory_bound": fuzzing.MEMORY_BOUND,
        "address_space": fuzzing.ADDRESS_SPACE,
        "per_kind": fuzzing.summary(results),
        "mutations": dict(Counter(r.case.mutation for r in results)),
        "failures": [
            {
                "id": r.case.id,
                "kind": r.case.kind,
                "mutation": r.case.mutation,
                "command": r.case.command,
                "reason": r.failure,
                "stderr": r.stderr[-2000:],
            }
            for r in results
            if r.failure
        ],
    }
    (args.out / "fuzz.json").write_text(json.dumps(report, indent=1))
    print(
        f"[fuzz] {len(results)} cases in {seconds:.0f} s, {len(report['failures'])} failed; "
        f"wrote {args.out / 'fuzz.json'}",
        file=sys.stderr,
    )
    return report


# ---------------------------------------------------------------------------- kills
def run_kills(args: argparse.Namespace) -> dict[str, Any]:
    folder = args.out / "kills"
    shutil.rmtree(folder, ignore_errors=True)
    inputs = faults.build_inputs(folder / "inputs")
    rows = []
    for phase in (*faults.PHASES, *faults.VARIANTS):
        for i in range(args.repeat):
            result = faults.kill_in(phase, inputs, folder / f"{phase.name}-{i}".replace(" ", "_"))
            rows.append({"test": phase in faults.PHASES, **asdict(result)})
            state = "ok" if not result.problems and result.inside else result.problems
            print(f"[kills] {phase.name} #{i + 1}: {state}", file=sys.stderr, flush=True)
    races = []
    for i in range(args.repeat):
        race = faults.race(inputs, folder / f"race-{i}")
        races.append(asdict(race))
        print(f"[kills] race #{i + 1}: {race.problems or 'ok'}", file=sys.stderr, flush=True)
    report = {"repeat": args.repeat, "kills": rows, "races": races}
    (args.out / "kills.json").write_text(json.dumps(report, indent=1))
    return report


# ------------------------------------------------------------------------------ doc
def _left(files: dict[str, int]) -> str:
    if not files:
        return "nothing"
    return ", ".join(
        f"`{name.split('.secateur-')[0]}.secateur-….tmp` ({size:,} B)"
        if name.endswith(".tmp")
        else f"`{name}` ({size:,} B)"
        for name, size in files.items()
    )


def _next(row: dict[str, Any]) -> str:
    if row["next_code"] != 0:
        return f"**exit {row['next_code']}**"
    count = sum(int(m[1]) for n in row["next_notes"] if (m := re.search(r"removed (\d+) stale", n)))
    removed = f"removed {count} stale temporar{'y' if count == 1 else 'ies'} (one note line); "
    removed = removed if count else ""
    made = [n for n in row["next_left"] if not n.startswith("cache/")] or ["its output"]
    wrote = ", ".join(made)
    return f"exit 0 in {row['next_seconds']:.1f} s: {removed}wrote {wrote}; no temporary left"


def section(fuzz: dict[str, Any] | None, kills: dict[str, Any] | None) -> str:
    out = [BEGIN, "## 10. Faults and hostile files (issue 14)", ""]
    out += [
        "Generated by `python benchmarks/fuzz.py --cases N --kills --doc`; tests: "
        "`tests/test_fuzz.py` (seed 14, 200 cases) and `tests/test_kills.py`.",
        "",
    ]
    if fuzz is not None:
        out += [
            f"### Mutation fuzzer: {fuzz['cases']:,} cases, seed {fuzz['seed']}, "
            f"{len(fuzz['failures'])} failures",
            "",
            "Each case: one valid file of a kind, one seeded mutation (byte-level: flip, "
            "truncate, splice, repeat, zero a range; structural: wrong dtypes, wrong shapes, "
            "extra or missing keys and members, huge declared sizes in zip, pickle, .npy and "
            "safetensors headers, JSON/YAML documents rebuilt wrong), one command "
            "(`inspect`, `compress`, `sensitivity`, or the report reader). Pass: exit 0, or "
            "exit 2 with one line; no partial output, no temporary, input unchanged (a cache "
            "entry may be rewritten, and must then be reported in one line); within "
            f"{fuzz['time_limit_s']:.0f} s; peak RSS of the process within "
            f"{fuzz['memory_bound'] / 2**30:.0f} GiB (measured per case, VmHWM) and address "
            f"space capped at {fuzz['address_space'] / 2**30:.0f} GiB (RLIMIT_AS), an "
            f"allocation failure counting as a failure. Run time {fuzz['seconds']:.0f} s.",
            "",
            "| kind | cases | exit 0 | exit 2 | failed | slowest case (s) | peak RSS (MiB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, row in fuzz["per_kind"].items():
            out.append(
                f"| {kind} | {row['cases']} | {row['exit 0']} | {row['exit 2']} | "
                f"{row['failed']} | {row['max_s']:.2f} | {row['max_rss'] / 2**20:.0f} |"
            )
        out.append("")
        if fuzz["failures"]:
            out += ["Failures:", ""]
            out += [f"- `{f['id']}`: {f['reason']}" for f in fuzz["failures"]]
        else:
            out.append("No case failed.")
        out.append("")
    out += [
        "### What they found, and the fixes",
        "",
        "| input | before | fix |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in FOUND),
        *(f"| {a} | {b} | **pending**: {c} |" for a, b, c in PENDING),
        "",
    ]
    if kills is not None:
        out += [
            f"### kill -9 inside each phase ({kills['repeat']} run(s) each)",
            "",
            "A real `python -m gui.launcher` process (64 MB model: 16 Linear 1024x1024), "
            "stopped on a trigger seen in its progress output or its files, checked to be "
            "inside the phase, then SIGKILLed; then the same command again. Rows marked * "
            'run in `make test`. "ok" counts the runs in which the stopped process was '
            "confirmed inside the phase, the input stayed byte-identical, no partial output "
            "(or the older output, untouched) was left, and the next run succeeded, said in "
            "one line that it removed each stale temporary, and left none. A save draws no "
            'progress ("done" is the compression\'s last line); its trigger is its '
            "temporary appearing beside the output.",
            "",
            "| phase | killed at (last printed) | left on disk | the next run | ok |",
            "|---|---|---|---|---|",
        ]
        phases: dict[str, list[dict[str, Any]]] = {}
        for row in kills["kills"]:
            phases.setdefault(row["phase"], []).append(row)
        for name, rows in phases.items():
            row = rows[0]
            failed = [r for r in rows if not r["inside"] or r["problems"]]
            ok = f"{len(rows) - len(failed)}/{len(rows)}"
            if failed:
                ok += f" **{failed[0]['problems'] or ['not inside the phase']}**"
            at = row["killed_at"][:70]
            if row.get("held_at"):
                at = f"(held by tests/pause_hook at `{row['held_at']}`)"
            mark = "*" if row["test"] else ""
            out.append(f"| {name}{mark} | {at} | {_left(row['left'])} | {_next(row)} | {ok} |")
        out += [
            "",
            "A quantized model's sidecar (with the model's SHA-256) is published before the "
            "model: a kill between the two leaves the older `out.pt` beside the new sidecar, "
            "and loading that pair is refused with the reason (the digests differ) instead of "
            "rebuilding the wrong modules.",
            "",
            "### Two processes saving to one path",
            "",
            "Both wait for each other where their saves start (tests/pause_hook's barrier), "
            "then save at once: one quantizing (a model and its sidecar), one only pruning.",
            "",
        ]
        for race in kills["races"]:
            trips = "; ".join(race["round_trips"])
            ok = "ok" if not race["problems"] else f"**{race['problems']}**"
            out.append(
                f"- exits {race['codes']}; the output is the {race['winner']} run's, sidecar "
                f"{'present' if race['sidecar'] else 'absent'} (consistent: "
                f"{race['consistent']}); {trips}; {ok}"
            )
        out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        doc = head + text + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=0, help="fuzz cases to run (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="", help=f"subset of {sorted(fuzzing.KINDS_BY_NAME)}")
    parser.add_argument("--time-limit", type=float, default=fuzzing.TIME_LIMIT_S)
    parser.add_argument("--kills", action="store_true", help="run every kill point and races")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each kill point")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "fuzz")
    parser.add_argument("--doc", action="store_true", help="write docs/benchmarks.md's section")
    parser.add_argument(
        "--render", action="store_true", help="run nothing: --doc from OUT/fuzz.json, kills.json"
    )
    args = parser.parse_args()
    if not args.cases and not args.kills and not args.render:
        parser.error("give --cases N and/or --kills (or --render)")
    args.out.mkdir(parents=True, exist_ok=True)
    fuzz = run_fuzz(args) if args.cases and not args.render else None
    kills = run_kills(args) if args.kills and not args.render else None
    if args.doc or args.render:  # what this run did not measure comes from OUT's last run
        saved = [args.out / "fuzz.json", args.out / "kills.json"]
        fuzz, kills = (
            measured or (json.loads(path.read_text()) if path.exists() else None)
            for measured, path in zip((fuzz, kills), saved)
        )
        write_doc(section(fuzz, kills))
        print(f"[fuzz] wrote the section of {DOC}", file=sys.stderr)
    failed = bool(fuzz and fuzz["failures"]) or bool(
        kills
        and (
            any(r["problems"] or not r["inside"] for r in kills["kills"])
            or any(r["problems"] for r in kills["races"])
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

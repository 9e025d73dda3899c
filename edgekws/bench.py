"""`edgekws bench`: run every benchmark in tools/ and regenerate BENCHMARKS.md.

Each benchmark is its own script in tools/ that measures engines side by side in one run (medians
of alternating rounds, ratios against the reference measured in the same run) and prints a table.
This command runs them one after another, captures what they print, and writes one markdown file
with the machine it ran on and the command behind every table. Benchmarks whose optional parts are
missing (PyTorch, the ARM toolchain, QEMU) say "skipped" for those rows themselves.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekws.errors import EdgekwsError

TITLE = "# edgekws benchmarks"   # the first line of every page bench writes

# (title, script and arguments for the full run, arguments for --quick)
BENCHMARKS = [
    ("Training step: numpy engine vs PyTorch (reference DS-CNN, batch 100)",
     ["bench_train.py"], ["bench_train.py", "--quick"]),
    ("Training epoch of the default recipe: batches made in the training process vs by worker processes",
     ["bench_epoch.py"], ["bench_epoch.py", "--quick"]),
    ("Audio augmentation per batch: each operation, the whole chain and the integer features",
     ["bench_augment.py"], ["bench_augment.py", "--quick"]),
    ("Inference per 1 s window: numpy float / numpy int8 / onnxruntime float / onnxruntime int8 / C int8",
     ["bench_infer.py"], ["bench_infer.py", "--repeats", "20"]),
    ("Frontend throughput: integer numpy vs float reference, C per hop, Cortex-M4 instructions per hop",
     ["bench_frontend.py"], ["bench_frontend.py", "--clips", "50", "--repeats", "3"]),
    ("Streaming firmware on Cortex-M under QEMU: sizes and instructions per inference",
     ["qemu_run.py"], ["qemu_run.py", "--boards", "an386"]),
    ("Last-layer retraining: time and memory (10 words x 10 examples)",
     ["bench_retrain.py", "--qemu"], ["bench_retrain.py"]),
]


def tools_dir() -> Path:
    # resolved: the scripts run from the folder's parent, where a relative path means something else
    d = Path(os.environ.get("EDGEKWS_TOOLS_DIR", Path(__file__).resolve().parents[1] / "tools")).resolve()
    if not (d / "bench_infer.py").is_file():
        raise EdgekwsError(f"{d}: the benchmark scripts (tools/) are not there; run edgekws bench from a "
                           "clone of the repository (pip install -e .) or set EDGEKWS_TOOLS_DIR")
    return d


def machine() -> str:
    import numpy as np

    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, numpy {np.__version__}; load average {load:.1f} at start")


def run_one(script: list[str], folder: Path) -> tuple[str, float, int]:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(folder / script[0]), *script[1:]], capture_output=True,
                          text=True, cwd=folder.parent)
    text = proc.stdout.strip()
    if proc.returncode != 0:
        text += f"\n\n(exit status {proc.returncode})\n" + proc.stderr.strip()[-2000:]
    return text, time.perf_counter() - t, proc.returncode


# the script's own time after its command, " (12 s)" or " (12 s; a note)": replaced on regeneration
_OWN_SECONDS = re.compile(r"^ \(\d+ s(\)|; )")


@dataclass
class Notes:
    """What was written by hand into one `## ` section of an earlier BENCHMARKS.md."""

    command: str | None = None   # the Command line's text after the command (less the tool's own "(N s)")
    head: list[str] = field(default_factory=list)   # the lines between the Command line and the output
    after: str = ""          # everything after the script's output (its first ``` block)


def kept_notes(text: str) -> dict[str, Notes]:
    """The hand-written parts of an earlier BENCHMARKS.md, by section title: a regeneration replaces
    each script's output (and its "(N s)") and keeps every word written around it."""
    notes: dict[str, Notes] = {}
    section, fences = None, 0
    for line in text.splitlines():
        if line.startswith("## "):
            section, fences = line[3:].strip(), 0
            notes[section] = Notes()
        elif section is None:
            continue
        elif fences >= 2:
            notes[section].after = (notes[section].after + "\n" + line) if notes[section].after else line
        elif line.startswith("```"):
            fences += 1
        elif fences == 0 and line.startswith("Command: `") and "`" in line[10:] and notes[section].command is None:
            rest = line[10:].split("`", 1)[1]
            notes[section].command = (_OWN_SECONDS.sub(lambda m: "" if m[1] == ")" else " (", rest)
                                      if _OWN_SECONDS.match(rest) else " " + rest.strip())
        elif fences == 0 and notes[section].command is not None:
            notes[section].head.append(line)
    for n in notes.values():
        n.command = (n.command or "").rstrip()
        n.after = n.after.strip()
    return notes


def run_bench(out: str | Path | None = "BENCHMARKS.md", quick: bool = False, log=print) -> str:
    """Run every benchmark; write the markdown to `out` (None: only return it). Notes written by hand
    under a script's output are kept when `out` is regenerated (kept_notes)."""
    notes = {}
    if out:
        from edgekws.fileio import check_output_file

        check_output_file(out, "--out")   # before an hour of benchmarks, not after
        if Path(out).is_file() and Path(out).stat().st_size:
            text = Path(out).read_text(encoding="utf-8", errors="replace")
            if not text.startswith(TITLE):
                raise EdgekwsError(f"--out {out}: exists and is not a benchmarks page (its first line is not "
                                   f"{TITLE!r}); choose another file or remove it")
            notes = kept_notes(text)
    folder = tools_dir()
    parts = [TITLE, "",
             "Generated by `edgekws bench" + (" --quick" if quick else "") + "`; every table below is "
             "printed by the script named above it, which measures its engines side by side in one run.",
             "", f"Machine: {machine()}.", ""]
    failed = []
    for title, full, short in BENCHMARKS:
        script = short if quick else full
        log(f"bench: {title} ...")
        text, seconds, rc = run_one(script, folder)
        if rc != 0:
            failed.append(script[0])
        kept = notes.get(title, Notes())
        head = kept.head if any(line.strip() for line in kept.head) else [""]
        parts += [f"## {title}", "", f"Command: `python tools/{' '.join(script)}` ({seconds:.0f} s){kept.command}",
                  *head, "```", text, "```", ""]
        if kept.after:
            parts += [kept.after, ""]
    md = "\n".join(parts)
    if out:
        from edgekws.fileio import atomic_write_text

        atomic_write_text(out, md)
        log(f"bench: wrote {out}")
    if failed:
        raise BenchFailed(f"benchmark script(s) failed: {', '.join(failed)} (their output is in "
                          f"{out or 'the markdown above'})", md)
    return md


class BenchFailed(EdgekwsError):
    """Some benchmark scripts failed; `markdown` holds every table, theirs with their errors."""

    def __init__(self, message: str, markdown: str):
        super().__init__(message)
        self.markdown = markdown


def register(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmarks in tools/ and regenerate BENCHMARKS.md",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="short runs of every benchmark (a smoke test; prints the markdown unless --out is given)")
    p.add_argument("--out", help="markdown file to write (default: BENCHMARKS.md; with --quick: none); "
                                 "notes written by hand around its tables are kept")
    p.set_defaults(func=run)


def run(args) -> int:
    out = args.out or (None if args.quick else "BENCHMARKS.md")
    try:
        md = run_bench(out, args.quick, log=lambda msg: print(msg, file=sys.stderr))
    except BenchFailed as exc:   # the tables that ran, and the failures' output, are not lost
        if out is None:
            print(exc.markdown)
        raise
    if out is None:
        print(md)
    return 0

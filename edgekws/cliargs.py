"""argparse value types shared by the subcommands.

A bad value becomes argparse's own clean error ("argument --seed: must be 0 or more, got -1",
exit status 2) instead of a traceback from deep inside numpy.
"""

from __future__ import annotations

import argparse
import math


def integer(text: str) -> int:
    """Any whole number."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


seed = _at_least(0)  # numpy's generators take non-negative seeds only
non_negative_int = _at_least(0)
positive_int = _at_least(1)


def positive_float(text: str) -> float:
    """A finite number above zero (nan and inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _count_at_most(text: str, top: int, unit: str) -> int:
    value = non_negative_int(text)
    if value > top:
        raise argparse.ArgumentTypeError(f"must be at most {top} {unit}, got {value}")
    return value


def voice_search(text: str) -> int:
    """Bands of voice search (edgekws.evaluate.VoiceSearch): 0 (off) to MAX_VOICE_SEARCH."""
    from edgekws.evaluate import MAX_VOICE_SEARCH

    return _count_at_most(text, MAX_VOICE_SEARCH, "bands")


def voice_shift(text: str) -> int:
    """A fixed band shift (edgekws.evaluate.VoiceShift, `edgekws calibrate`): -MAX_VOICE_SEARCH..MAX_VOICE_SEARCH."""
    from edgekws.evaluate import MAX_VOICE_SEARCH

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of bands, got {text!r}") from None
    if abs(value) > MAX_VOICE_SEARCH:
        raise argparse.ArgumentTypeError(f"must be in [-{MAX_VOICE_SEARCH}, {MAX_VOICE_SEARCH}] bands, got {value}")
    return value


def rate_search(text: str) -> int:
    """Levels of rate search (edgekws.evaluate.VoiceSearch): 0 (off) to MAX_RATE_SEARCH."""
    from edgekws.evaluate import MAX_RATE_SEARCH

    return _count_at_most(text, MAX_RATE_SEARCH, "levels")


def run_tool(main, name: str) -> int:
    """A tools/*.py entry point: an EdgekwsError (a missing folder, a bundle that is not quantized, a
    file that cannot be written) is one line on stderr and exit status 2, as in `edgekws` itself,
    not a traceback."""
    import sys

    from edgekws.errors import EdgekwsError

    try:
        return main()
    except EdgekwsError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # a file the user named that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def seed_list(text: str) -> tuple[int, ...]:
    """Comma-separated seeds, e.g. "0,1,2"."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 0,1,2, got {text!r}")
    return tuple(seed(p) for p in parts)


def folder(text: str) -> str:
    """A folder, existing or to be made: an existing file is refused (a cache "in" a file would be
    switched off without a word)."""
    from pathlib import Path

    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text

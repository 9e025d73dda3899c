"""A guided recording session, and background-noise recording, over an injected audio source.

`run_session` walks the words: for each, it records takes (count-in, live meter), judges them
(`takes.check_take`), and lets the user keep, replay, redo, skip the word or quit. A kept take is
written at once, atomically and never over an existing file, so whatever stops the session —
quit, Ctrl-C, an unplugged microphone — every accepted take is already on disk and no partial file
is left. Running it again resumes: takes already on disk count towards `takes`, numbering continues.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgekws.audio import SAMPLE_RATE, resample, write_wav
from edgekws.errors import AudioError, EdgekwsError
from edgekws.recording.console import Console
from edgekws.recording.devices import AudioSource, DeviceError
from edgekws.recording.layout import (background_path, check_words, next_free, prompt_for,
                                      take_numbers, take_path)
from edgekws.recording.takes import TakeCriteria, check_take

Player = Callable[[np.ndarray, int], None]


@dataclass
class WordTally:
    """What happened to one word: takes on disk before, takes saved now, rejected takes by reason."""

    word: str
    target: int
    before: int = 0
    saved: list[Path] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    skipped: bool = False

    @property
    def total(self) -> int:
        return self.before + len(self.saved)


@dataclass
class SessionSummary:
    out: Path
    speaker: str
    words: list[WordTally]
    stopped: str | None = None  # None: finished; else "quit", "interrupted", "device failed" or "error"

    @property
    def saved(self) -> list[Path]:
        return [p for t in self.words for p in t.saved]

    def format(self) -> str:
        lines = [f"Summary: speaker '{self.speaker}', folder {self.out}",
                 f"  {'word':<14}{'new':>4}{'on disk':>10}  rejected"]
        rejected: Counter = Counter()
        for t in self.words:
            rejected.update(t.rejected)
            why = ", ".join(f"{k} {v}" for k, v in sorted(t.rejected.items()))
            note = f"{sum(t.rejected.values())}" + (f" ({why})" if why else "")
            if t.skipped:
                note += "; skipped"
            lines.append(f"  {t.word:<14}{len(t.saved):>4}{f'{t.total}/{t.target}':>10}  {note}")
        why = ", ".join(f"{k} {v}" for k, v in sorted(rejected.items()))
        lines.append(f"  {len(self.saved)} new take(s) saved, {sum(rejected.values())} rejected"
                     + (f" ({why})" if why else "") + ".")
        missing = [t.word for t in self.words if t.total < t.target]
        if self.stopped:
            lines.append(f"  Stopped early ({self.stopped}); every kept take is on disk.")
        if missing:
            lines.append(f"  Still to record: {', '.join(missing)}. Run the same command again to continue.")
        return "\n".join(lines)


def record_take(source: AudioSource, console: Console, seconds: float) -> np.ndarray:
    """Count in, then record `seconds` with a live meter. Returns (n,) float32 at source.samplerate."""
    sr = source.samplerate
    need = int(round(seconds * sr))
    console.count_in()
    chunks, got = [], 0
    with contextlib.closing(source.blocks(seconds)) as blocks:
        for block in blocks:
            block = np.asarray(block, np.float32).reshape(-1)
            chunks.append(block)
            got += len(block)
            console.meter(block, max(0.0, (need - got) / sr))
            if got >= need:
                break
    if got < need:
        raise DeviceError(f"the input stream ended after {got / sr:.2f} s of a {seconds:g} s take")
    x = np.concatenate(chunks)[:need]
    console.meter_done(float(np.abs(x).max()))
    return x


def _save_take(out: Path, word: str, speaker: str, n: int, clip: np.ndarray) -> tuple[Path, int]:
    """Write a take under the first free number ≥ n; never overwrites. Returns (path, next number)."""
    while True:
        n, path = next_free(lambda k: take_path(out, word, speaker, k), n)
        try:
            write_wav(path, clip, SAMPLE_RATE, overwrite=False)
            return path, n + 1
        except AudioError:
            if not path.exists():
                raise
            n += 1  # another process took this number meanwhile


def _replay(play: Player | None, console: Console, x: np.ndarray, sr: int) -> None:
    if play is None:
        console.say("  (no playback device)")
        return
    try:
        play(x, sr)
    except DeviceError as exc:  # playback is a convenience: report it and carry on recording
        console.say(f"  {exc}")


def _record_word(i: int, tally: WordTally, *, n_words: int, prompt: str, out: Path, speaker: str,
                 source: AudioSource, console: Console, play: Player | None,
                 crit: TakeCriteria) -> str:
    """Record one word until its target is reached. Returns 'done', 'skip' or 'quit'."""
    numbers = take_numbers(out / tally.word, speaker)
    next_n = numbers[-1] + 1 if numbers else 0
    shown = prompt if prompt == tally.word else f"{prompt}  (folder '{tally.word}')"
    console.say(f"\nWord {i}/{n_words}: say \"{shown}\" — {tally.target - tally.total} take(s) to go"
                + (f" ({tally.before} already on disk)" if tally.before else ""))
    key = console.choose("  Ready?", {"": "record", "s": "skip word", "q": "quit"})
    if key == "s":
        tally.skipped = True
        return "skip"
    if key == "q":
        return "quit"
    while tally.total < tally.target:
        console.say(f"  \"{prompt}\" take {tally.total + 1} of {tally.target}")
        raw = record_take(source, console, crit.record_seconds)
        verdict = check_take(raw, source.samplerate, crit)
        if verdict.ok:
            console.say(f"  ok: {verdict.message}")
            keys = {"": "keep", "p": "replay", "r": "redo", "s": "skip word", "q": "quit (drop this take)"}
            key = console.choose("  Keep it?", keys)
            while key == "p":
                _replay(play, console, verdict.clip, SAMPLE_RATE)
                key = console.choose("  Keep it?", keys)
            if key == "":
                path, next_n = _save_take(out, tally.word, speaker, next_n, verdict.clip)
                tally.saved.append(path)
                console.say(f"  saved {path}")
                continue
            if key == "r":
                tally.rejected["redone"] += 1
        else:
            tally.rejected[verdict.reason] += 1
            console.say(f"  rejected: {verdict.message}")
            keys = {"": "record again", "p": "replay", "s": "skip word", "q": "quit"}
            key = console.choose("  Again?", keys)
            while key == "p":
                _replay(play, console, raw, source.samplerate)
                key = console.choose("  Again?", keys)
        if key == "s":
            tally.skipped = True
            return "skip"
        if key == "q":
            return "quit"
    return "done"


def run_session(out: str | Path, words: list[str], *, source: AudioSource, speaker: str,
                takes: int = 5, lang: str = "en", console: Console | None = None,
                play: Player | None = None, criteria: TakeCriteria = TakeCriteria()) -> SessionSummary:
    """Record `takes` clips of each word into OUT/<word>/<speaker>_nohash_<n>.wav (16 kHz int16).

    Resumes: clips of this speaker already on disk count towards `takes`. Prints a summary at the
    end — also when the session stops on Ctrl-C (KeyboardInterrupt is re-raised) or a failing
    device (DeviceError is re-raised).
    """
    out = Path(out)
    words = check_words(words)
    if takes < 1:
        raise AudioError(f"--takes: need at least 1 take per word, got {takes}")
    console = console or Console()
    tallies = [WordTally(w, takes, len(take_numbers(out / w, speaker))) for w in words]
    summary = SessionSummary(out, speaker, tallies)
    rate = source.samplerate
    console.say(f"Recording {len(words)} word(s), {takes} take(s) each, as speaker '{speaker}' into {out}"
                + (f" ({rate} Hz, resampled to {SAMPLE_RATE} Hz)" if rate != SAMPLE_RATE else ""))
    try:
        for i, tally in enumerate(tallies, 1):
            if tally.total >= takes:
                console.say(f"Word {i}/{len(words)}: '{tally.word}' already has {tally.total} take(s)")
                continue
            result = _record_word(i, tally, n_words=len(words), prompt=prompt_for(tally.word, lang),
                                  out=out, speaker=speaker, source=source, console=console,
                                  play=play, crit=criteria)
            if result == "quit":
                summary.stopped = "quit"
                break
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
        console.say("\n" + summary.format())
        raise
    except DeviceError:
        summary.stopped = "device failed"
        console.say("\n" + summary.format())
        raise
    except EdgekwsError:  # e.g. a take that cannot be written: say what is on disk, then the error
        summary.stopped = "error"
        console.say("\n" + summary.format())
        raise
    console.say("\n" + summary.format())
    return summary


def record_background(out: str | Path, seconds: float, *, source: AudioSource, speaker: str,
                      console: Console | None = None, segment_seconds: float = 60.0) -> list[Path]:
    """Record `seconds` of background noise into OUT/_background_noise_/, one file per segment.

    Each finished segment is written at once; on Ctrl-C or a failing device the part recorded so far
    is written too (if at least 1 s) before the exception propagates. Returns the files written.
    """
    if not seconds > 0:
        raise AudioError(f"--seconds: need a positive duration, got {seconds}")
    out = Path(out)
    console = console or Console()
    sr = source.samplerate
    per_file = max(1, int(round(segment_seconds * sr)))
    need = int(round(seconds * sr))
    written: list[Path] = []
    chunks: list[np.ndarray] = []
    pending = got = 0

    def flush(min_samples: int) -> None:
        nonlocal chunks, pending
        if pending >= min_samples and pending > 0:
            x = np.clip(resample(np.concatenate(chunks), sr, SAMPLE_RATE), -1.0, 1.0)
            n, path = next_free(lambda k: background_path(out, speaker, k), 0)
            write_wav(path, x, SAMPLE_RATE, overwrite=False)
            written.append(path)
            console.say(f"\n  saved {path} ({pending / sr:.1f} s)")
        chunks, pending = [], 0

    console.say(f"Recording {seconds:g} s of background noise into {out}: keep quiet, "
                "let the room make its usual sounds.")
    try:
        with contextlib.closing(source.blocks(seconds)) as blocks:
            for block in blocks:
                block = np.asarray(block, np.float32).reshape(-1)[: need - got]
                got += len(block)
                console.meter(block, (need - got) / sr)
                while len(block):  # cut exactly at segment boundaries
                    part, block = block[: per_file - pending], block[per_file - pending:]
                    chunks.append(part)
                    pending += len(part)
                    if pending == per_file:
                        flush(1)
                if got >= need:
                    break
        if got < need:
            raise DeviceError(f"the input stream ended after {got / sr:.1f} s of {seconds:g} s")
        flush(1)
    except (KeyboardInterrupt, DeviceError):
        flush(sr)  # keep what was recorded, if it is at least a second
        raise
    console.say(f"  {len(written)} background file(s), {got / sr:.1f} s in total")
    return written

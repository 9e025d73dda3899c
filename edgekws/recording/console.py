"""The terminal side of a recording session: prompts, a count-in, a live level meter, key choices.

Input, output and the clock are injected (`ask`, `out`, `sleep`) so a session runs in tests with
scripted answers and no waiting. The meter redraws one line with '\r' on a terminal and prints a
single final line otherwise (logs and tests stay readable).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

import numpy as np

from edgekws.recording.takes import dbfs

METER_WIDTH = 30
METER_FLOOR_DB = -60.0


def meter_bar(peak: float, width: int = METER_WIDTH) -> str:
    """'[#######.......] -18 dBFS' for a block's peak amplitude; 'CLIP' at full scale."""
    db = dbfs(peak)
    filled = int(round(width * min(1.0, max(0.0, (db - METER_FLOOR_DB) / -METER_FLOOR_DB))))
    tag = " CLIP" if peak >= 0.99 else ""
    return f"[{'#' * filled}{'.' * (width - filled)}] {max(db, -99):4.0f} dBFS{tag}"


class Console:
    """Prompts and answers. `ask(prompt) -> str` is `input` by default; EOF counts as 'quit'."""

    def __init__(self, ask: Callable[[str], str] | None = None, out: TextIO | None = None,
                 sleep: Callable[[float], None] | None = None):
        self._ask = ask or (lambda prompt: input(prompt))
        self.out = out if out is not None else sys.stdout
        self.sleep = sleep or (lambda seconds: time.sleep(seconds))
        self.live = bool(getattr(self.out, "isatty", lambda: False)())

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def choose(self, prompt: str, keys: dict[str, str]) -> str:
        """Ask until the answer is one of `keys` (Enter is ''); returns the key. EOF → 'q'."""
        help_text = "  ".join(f"[{k or 'Enter'}] {v}" for k, v in keys.items())
        while True:
            self.out.flush()
            try:
                answer = self._ask(f"{prompt}  {help_text}: ").strip().lower()
            except EOFError:
                self.say()
                return "q" if "q" in keys else next(iter(keys))
            if answer in keys:
                return answer
            if answer[:1] in keys and answer[:1]:
                return answer[:1]
            self.say(f"  '{answer}'? choose one of: {help_text}")

    def count_in(self, beats: int = 3, beat_seconds: float = 0.4) -> None:
        parts = []
        for i in range(beats, 0, -1):
            parts.append(f"{i}..")
            if self.live:
                print(f"\r  {' '.join(parts)}", end="", file=self.out, flush=True)
            self.sleep(beat_seconds)
        line = f"  {' '.join(parts)} speak!"
        print(f"\r{line}" if self.live else line, file=self.out, flush=True)

    def meter(self, block: np.ndarray, seconds_left: float | None = None) -> None:
        """Redraw the level meter for one block (terminal only)."""
        if self.live:
            left = f"  {seconds_left:5.1f} s left" if seconds_left is not None else ""
            peak = float(np.abs(block).max()) if len(block) else 0.0
            print(f"\r  {meter_bar(peak)}{left}   ", end="", file=self.out, flush=True)

    def meter_done(self, peak: float) -> None:
        """End the meter line, showing the take's overall peak."""
        print(f"\r  {meter_bar(peak)}" + " " * 16, file=self.out, flush=True)

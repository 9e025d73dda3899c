"""Judging one recorded take: clipping, loudness, energy-based voice activity, and the best 1 s.

A take is ~1.5 s of microphone audio at the device rate. `check_take` measures clipping on the raw
samples (resampling would hide it), resamples to 16 kHz, finds speech frames whose energy stands
out from the take's own background level, and keeps the 1 s window holding the most speech energy,
centred on the speech. It returns a verdict with a short explanation the user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekws.audio import SAMPLE_RATE, resample, to_int16

FRAME = SAMPLE_RATE // 100  # 10 ms analysis frames


@dataclass(frozen=True)
class TakeCriteria:
    """Thresholds for accepting a take (levels in dB relative to full scale)."""

    record_seconds: float = 1.5       # length of one take
    keep_seconds: float = 1.0         # length of the clip that is kept
    clip_level: float = 0.99          # |sample| at or above this counts as clipped
    max_clipped_fraction: float = 0.001
    min_peak_dbfs: float = -30.0      # quieter speech than this is rejected as too quiet
    vad_margin_db: float = 12.0       # speech frames are this much above the background level
    vad_floor_dbfs: float = -60.0     # ... and above this absolute level
    min_speech_seconds: float = 0.08  # shorter bursts are clicks, not words
    edge_seconds: float = 0.03        # speech touching the take's ends was cut off


@dataclass(frozen=True)
class TakeVerdict:
    """The outcome for one take. `clip` is the kept second, (16000,) int16, when `ok`."""

    ok: bool
    reason: str            # "ok", "clipped", "no speech", "too quiet", "cut off", "too long"
    message: str           # one line for the user
    clip: np.ndarray | None
    speech_seconds: float = 0.0
    peak_dbfs: float = -120.0


def dbfs(x: float) -> float:
    """Amplitude (linear, full scale 1.0) → dBFS, floored at -120."""
    return float(20.0 * np.log10(max(float(x), 1e-6)))


def frame_levels(x: np.ndarray) -> np.ndarray:
    """x : (n,) float32 at 16 kHz → (n // FRAME,) float64 frame power in dBFS (RMS)."""
    nf = len(x) // FRAME
    frames = np.asarray(x[: nf * FRAME], np.float64).reshape(nf, FRAME)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def speech_mask(levels: np.ndarray, crit: TakeCriteria) -> tuple[np.ndarray, float]:
    """Frames whose level stands out from the background. Returns (mask (nf,) bool, background dBFS).

    The background level is the 10th percentile of frame levels: a take is mostly not speech.
    """
    background = float(np.percentile(levels, 10))
    threshold = max(background + crit.vad_margin_db, crit.vad_floor_dbfs)
    mask = levels > threshold
    # drop isolated frames (clicks) shorter than 3 frames
    out = mask.copy()
    i = 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            if j - i < 3:
                out[i:j] = False
            i = j
        else:
            i += 1
    return out, background


def best_window(levels: np.ndarray, mask: np.ndarray, width: int) -> int:
    """Start frame of the `width`-frame window holding the most speech energy, centred on the speech."""
    nf = len(levels)
    if nf <= width:
        return 0
    power = np.where(mask, 10.0 ** (levels / 10.0), 0.0)
    c = np.concatenate([[0.0], np.cumsum(power)])
    scores = c[width:] - c[: nf - width + 1]  # scores[s] = energy in frames [s, s + width)
    frames = np.arange(nf) + 0.5
    centre = float(np.sum(frames * power) / np.sum(power))
    near_best = np.flatnonzero(scores >= 0.99 * scores.max())
    return int(near_best[np.argmin(np.abs(near_best + width / 2 - centre))])


def check_take(raw: np.ndarray, samplerate: int, crit: TakeCriteria = TakeCriteria()) -> TakeVerdict:
    """Judge a take. raw : (n,) float32 in [-1, 1] at `samplerate` (the device rate)."""
    raw = np.asarray(raw, np.float32)
    clipped = int(np.count_nonzero(np.abs(raw) >= crit.clip_level))
    if clipped > max(2, crit.max_clipped_fraction * len(raw)):
        return TakeVerdict(False, "clipped",
                           f"clipped ({clipped} samples at full scale): speak softer or "
                           "move back from the microphone", None, peak_dbfs=0.0)

    x = np.clip(resample(raw, samplerate, SAMPLE_RATE), -1.0, 1.0)
    keep = int(round(crit.keep_seconds * SAMPLE_RATE))
    if len(x) < keep:
        x = np.pad(x, (0, keep - len(x)))
    levels = frame_levels(x)
    mask, background = speech_mask(levels, crit)
    speech_s = mask.sum() * FRAME / SAMPLE_RATE
    if speech_s < crit.min_speech_seconds:
        return TakeVerdict(False, "no speech",
                           f"no speech found (loudest {levels.max():.0f} dBFS over a background of "
                           f"{background:.0f} dBFS): say the word right after 'speak!'",
                           None, float(speech_s), dbfs(np.abs(x).max()))

    idx = np.flatnonzero(mask)
    speech = x[idx[0] * FRAME:(idx[-1] + 1) * FRAME]
    peak = dbfs(np.abs(speech).max())
    if peak < crit.min_peak_dbfs:
        return TakeVerdict(False, "too quiet",
                           f"too quiet (peak {peak:.0f} dBFS, need {crit.min_peak_dbfs:.0f}): "
                           "speak louder or closer, or raise the microphone gain",
                           None, float(speech_s), peak)
    edge = max(1, int(round(crit.edge_seconds * 100)))
    if mask[:edge].any() or mask[-edge:].any():
        where = "started before the recording" if mask[:edge].any() else "was still going at the end"
        return TakeVerdict(False, "cut off", f"cut off: the speech {where}; wait for 'speak!' "
                           "and say the word once", None, float(speech_s), peak)
    width = keep // FRAME
    if (idx[-1] + 1 - idx[0]) > width:
        return TakeVerdict(False, "too long", f"too long ({(idx[-1] + 1 - idx[0]) / 100:.2f} s of "
                           f"sound): say just the word, within {crit.keep_seconds:g} s",
                           None, float(speech_s), peak)

    start = best_window(levels, mask, width) * FRAME
    clip = to_int16(x[start:start + keep])
    return TakeVerdict(True, "ok", f"good take: {speech_s:.2f} s of speech, peak {peak:.0f} dBFS",
                       clip, float(speech_s), peak)

"""Deterministic test signals for the frontend: speech-like clips, tones, square waves, noise.

Used by tests, tools/gen_golden.py and tools/bench_frontend.py; every random choice takes a
np.random.Generator.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

# (F1, F2, F3) formant frequencies in Hz of a few vowels
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]])


def _resonator(x: np.ndarray, f: float, bw: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bw / sr)
    a = [1.0, -2.0 * r * np.cos(2 * np.pi * f / sr), r * r]
    return lfilter([1.0 - r], a, x)


def speech_like(rng: np.random.Generator, seconds: float = 1.0, peak_dbfs: float = -6.0, sr: int = 16000) -> np.ndarray:
    """A crude source-filter "utterance": voiced syllables (glottal pulses through three formant
    resonators, gliding pitch), fricative bursts (high-passed noise) and pauses.

    returns (round(seconds * sr),) int16 with peak at `peak_dbfs` dB below full scale
    """
    n = int(round(seconds * sr))
    out = np.zeros(n)
    pos = int(rng.integers(0, sr // 20))
    while pos < n:
        seg = int(rng.integers(sr // 12, sr // 4))
        end = min(n, pos + seg)
        m = end - pos
        t = np.arange(m) / sr
        kind = rng.random()
        if kind < 0.65:  # voiced
            f0 = rng.uniform(90, 230) * (1 + rng.uniform(-0.2, 0.2) * t / max(t[-1], 1e-3))
            phase = np.cumsum(f0 / sr)
            src = np.diff(np.floor(phase), prepend=0.0) * 1.0  # one impulse per period
            src = lfilter([1.0], [1.0, -0.97], src)  # glottal roll-off
            y = np.zeros(m)
            for f, gain in zip(_VOWELS[rng.integers(len(_VOWELS))], (1.0, 0.6, 0.3)):
                y += gain * _resonator(src, f * rng.uniform(0.9, 1.1), 80 + 0.05 * f, sr)
        elif kind < 0.85:  # fricative
            y = lfilter([1.0, -1.0], [1.0], rng.standard_normal(m)) * 0.3
        else:  # pause with faint noise
            y = rng.standard_normal(m) * 1e-3
        env = np.sin(np.pi * np.arange(m) / m) ** 0.5
        out[pos:end] = y * env * rng.uniform(0.3, 1.0)
        pos = end + int(rng.integers(0, sr // 10))
    out += rng.standard_normal(n) * 1e-4  # room noise floor
    peak = np.max(np.abs(out)) or 1.0
    scaled = out / peak * 32767.0 * 10 ** (peak_dbfs / 20.0)
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


def tone(freq: float, seconds: float, amplitude: float = 32767.0, sr: int = 16000) -> np.ndarray:
    """Sine at `freq` Hz: (n,) int16."""
    t = np.arange(int(round(seconds * sr))) / sr
    return np.clip(np.round(amplitude * np.sin(2 * np.pi * freq * t)), -32768, 32767).astype(np.int16)


def square(freq: float, seconds: float, sr: int = 16000) -> np.ndarray:
    """Full-scale square wave (+32767 / -32768): (n,) int16."""
    t = np.arange(int(round(seconds * sr))) / sr
    return np.where(np.sin(2 * np.pi * freq * t) >= 0, 32767, -32768).astype(np.int16)


def extreme_noise(rng: np.random.Generator, seconds: float, sr: int = 16000) -> np.ndarray:
    """White noise of only the int16 extremes -32768 and 32767: (n,) int16."""
    return np.where(rng.random(int(round(seconds * sr))) < 0.5, -32768, 32767).astype(np.int16)


def clipped(x: np.ndarray, gain: float) -> np.ndarray:
    """x * gain saturated to int16 (hard clipping): (n,) int16 -> (n,) int16."""
    return np.clip(np.round(x.astype(np.float64) * gain), -32768, 32767).astype(np.int16)

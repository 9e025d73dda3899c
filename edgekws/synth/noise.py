"""Background noise for `_background_noise_/`: white, pink, brown, mains hum, and speech babble.

Pure numpy; every function takes its np.random.Generator. Outputs are float32 at 16 kHz with a
peak of `peak` (default 0.5), ready for `edgekws.audio.write_wav`. Also usable by augmentation
(more noise colours for evaluation with noise unseen in training).
"""

from __future__ import annotations

import numpy as np

from edgekws.audio import SAMPLE_RATE


def _normalize(x: np.ndarray, peak: float) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / m) if m > 0 else x).astype(np.float32)


def colored(n: int, rng: np.random.Generator, exponent: float, peak: float = 0.5) -> np.ndarray:
    """Noise with power spectral density ∝ 1/f**exponent (0 white, 1 pink, 2 brown).

    returns: (n,) float32. Shaped in the frequency domain; the DC bin is zeroed.
    """
    if n <= 0:
        return np.zeros(0, np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = 1.0
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return _normalize(np.fft.irfft(spec, n), peak)


def white(n, rng, peak=0.5):
    return colored(n, rng, 0.0, peak)


def pink(n, rng, peak=0.5):
    return colored(n, rng, 1.0, peak)


def brown(n, rng, peak=0.5):
    # 1/f² below ~20 Hz is inaudible rumble that would dominate the level: floor the shaping there
    if n <= 0:
        return np.zeros(0, np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec /= np.maximum(f, 20.0)
    spec[0] = 0.0
    return _normalize(np.fft.irfft(spec, n), peak)


def hum(n: int, rng: np.random.Generator, mains_hz: float = 50.0, sr: int = SAMPLE_RATE,
        peak: float = 0.5) -> np.ndarray:
    """Mains hum: the fundamental and ~10 harmonics with random levels and phases, a slow drift in
    frequency, plus a faint broadband floor (a transformer or a ground loop). returns (n,) float32."""
    t = np.arange(n) / sr
    drift = 1.0 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * mains_hz * np.cumsum(drift) / sr
    x = np.zeros(n)
    for h in range(1, 12):
        level = rng.uniform(0.3, 1.0) / h ** (0.6 if h % 2 else 1.2)   # odd harmonics stronger
        x += level * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    x += 0.02 * rng.standard_normal(n)
    return _normalize(x, peak)


def babble(clips, n: int, rng: np.random.Generator, talkers: int = 6, peak: float = 0.5) -> np.ndarray:
    """Many voices at once: clips placed at random times until ~`talkers` overlap on average.

    clips : list of (m,) float arrays (synthesized words at 16 kHz; no command words)
    returns (n,) float32
    """
    out = np.zeros(n)
    clips = [np.asarray(c, np.float64) for c in clips if len(c)]
    if n <= 0 or not clips:
        return out.astype(np.float32)
    rms = [np.sqrt(np.mean(c ** 2)) + 1e-12 for c in clips]
    mean_len = float(np.mean([len(c) for c in clips]))
    for _ in range(int(np.ceil(talkers * n / mean_len))):
        i = int(rng.integers(len(clips)))
        c = clips[i] * (rng.uniform(0.3, 1.0) / rms[i])
        start = int(rng.integers(-len(c) + 1, n))
        a, b = max(start, 0), min(start + len(c), n)
        out[a:b] += c[a - start:b - start]
    return _normalize(out, peak)

"""Audio augmentation on the fly, in batches: make clean synthetic voices sound like real rooms,
microphones and people.

Each operation is a function over a batch `x : (N, S) float32` (samples in [-1, 1]) with explicit
per-row parameters, so it can be used and tested alone. `Augmenter` draws those parameters from an
`AugmentConfig` with a passed `np.random.Generator` and chains the operations in the order sound
takes in the world:

    time shift → formant shift (vocal-tract length, pitch kept) → speed (resampling: tempo, pitch
    and formants together) → room reverb → background noise
    → microphone / phone-line EQ and band limit → gain → clipping / 8-bit mu-law → saturate to [-1, 1]

Every operation keeps the length S and the float32 dtype, returns a new array, and leaves silent
rows free of NaN. The defaults are deliberately strong: synthetic voices are far cleaner and more
alike than people (see issue 11).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy import fft as sfft
from scipy import signal

from edgekws.errors import EdgekwsError, is_int, is_real

SAMPLE_RATE = 16000
_EPS = 1e-12
_SPEED_STEPS = 40          # speed factors are multiples of 1/40
MAX_DB = 120.0             # dB settings beyond this overflowed into NaN clips (then silence)
_EQ_GRID = 8               # equalize evaluates its response every 8th FFT bin (~7 Hz) and interpolates


# ---------------------------------------------------------------- configuration

@dataclass
class AugmentConfig:
    """Probabilities and ranges of every augmentation. Ranges are (low, high), drawn uniformly."""

    shift_prob: float = 1.0
    shift_max_s: float = 0.1                       # ± seconds, zero-filled
    formant_prob: float = 0.3
    formant_range: tuple = (0.88, 1.12)            # envelope scale: >1 a shorter vocal tract
    speed_prob: float = 0.6
    speed_range: tuple = (0.85, 1.15)              # >1 faster and higher
    reverb_prob: float = 0.4
    rt60_range: tuple = (0.1, 0.9)                 # seconds to decay by 60 dB
    drr_db_range: tuple = (-3.0, 15.0)             # direct-to-reverberant energy ratio
    noise_prob: float = 0.8
    snr_db_range: tuple = (0.0, 30.0)              # over the whole clip
    eq_prob: float = 0.6
    highpass_hz_range: tuple = (50.0, 400.0)
    lowpass_hz_range: tuple = (2800.0, 7800.0)
    tilt_db_range: tuple = (-8.0, 8.0)             # gain at 8 kHz relative to 1 kHz
    resonances: int = 2                            # random mic/body peaks or dips per clip
    resonance_db_range: tuple = (-8.0, 8.0)
    phone_prob: float = 0.1                        # of EQ'd clips: a 300-3400 Hz phone line
    gain_prob: float = 1.0
    gain_db_range: tuple = (-15.0, 6.0)
    clip_prob: float = 0.05
    clip_level_range: tuple = (0.2, 0.7)           # fraction of the clip's peak
    mulaw_prob: float = 0.05                       # 8-bit mu-law codec quantization
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_range"):
                try:
                    lo, hi = (float(t) for t in v)
                except (TypeError, ValueError):
                    raise EdgekwsError(f"AugmentConfig.{f.name} must be (low, high), got {v!r}") from None
                if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                    raise EdgekwsError(f"AugmentConfig.{f.name} must be finite with low <= high, got {v!r}")
                setattr(self, f.name, (lo, hi))
            elif f.name.endswith("_prob") and not (is_real(v, numpy=False) and 0 <= v <= 1):
                raise EdgekwsError(f"AugmentConfig.{f.name} must be a probability in [0, 1], got {v!r}")
        checks = [   # in order, each one only once those before it hold (the EQ check divides the rate)
            (lambda: self.speed_range[0] > 0, "speed_range must be > 0"),
            (lambda: self.formant_range[0] > 0, "formant_range must be > 0"),
            (lambda: self.rt60_range[0] > 0, "rt60_range must be > 0"),
            (lambda: is_real(self.shift_max_s, numpy=False) and 0 <= self.shift_max_s <= 1, "shift_max_s must be in [0, 1] s"),
            (lambda: self.clip_level_range[0] > 0 and self.clip_level_range[1] <= 1,
             "clip_level_range must lie in (0, 1]"),
            (lambda: is_int(self.resonances, numpy=False) and 0 <= self.resonances <= 8,
             "resonances must be an integer in 0..8"),
            (lambda: all(abs(d) <= MAX_DB for f in dataclasses.fields(self) if f.name.endswith("_db_range")
                         for d in getattr(self, f.name)), f"the *_db_range settings must lie within ±{MAX_DB:g} dB"),
            (lambda: is_int(self.sample_rate, numpy=False) and self.sample_rate > 0, "sample_rate must be a positive integer"),
            (lambda: 0 < self.highpass_hz_range[0] and self.lowpass_hz_range[1] <= self.sample_rate / 2,
             "EQ corners must lie between 0 and the Nyquist frequency"),
        ]
        for ok, msg in checks:
            if not ok():
                raise EdgekwsError(f"AugmentConfig: {msg}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EdgekwsError(f"AugmentConfig: unknown setting(s) {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def off(cls) -> "AugmentConfig":
        """Every operation disabled (a baseline)."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.endswith("_prob")})


# ---------------------------------------------------------------- operations

def _batch(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise EdgekwsError(f"augmentation expects a batch (N, S), got shape {x.shape}")
    return x


def _shifted(row: np.ndarray, d: int, s: int) -> np.ndarray:
    """out[t] = row[t + d] for 0 <= t < s where 0 <= t + d < len(row), else 0."""
    out = np.zeros(s, np.float32)
    a, b = max(0, -d), min(s, row.size - d)
    if b > a:
        out[a:b] = row[a + d:b + d]
    return out


def time_shift(x: np.ndarray, shifts) -> np.ndarray:
    """Delay row i by shifts[i] samples (negative: advance), zero-filled.

    x : (N, S) float32; shifts : (N,) int  ->  (N, S) float32
    """
    x = _batch(x)
    n, s = x.shape
    shifts = np.asarray(shifts, dtype=np.int64).reshape(n)
    out = np.empty_like(x)
    for i in range(n):                      # slicing beats a fancy-index gather on long rows
        out[i] = _shifted(x[i], -int(shifts[i]), s)
    return out


def _fit_length(y: np.ndarray, s: int, anchor: np.ndarray, factor: float) -> np.ndarray:
    """Crop or zero-pad rows of y (n, m) to s samples so that sample `anchor` (n,) of the original
    row, now at anchor / factor in y, stays where it was — as far as the whole of y fits."""
    n, m = y.shape
    d = np.rint(anchor / factor - anchor).astype(np.int64)
    d = np.clip(d, min(0, m - s), max(0, m - s))
    return np.stack([_shifted(y[i], int(d[i]), s) for i in range(n)])


@functools.lru_cache(maxsize=128)
def _resample_filter(up: int, down: int, dtype) -> np.ndarray:
    """The low-pass filter resample_poly designs for up/down by default (Kaiser-windowed sinc,
    10 x max(up, down) taps a side, cutoff at the lower Nyquist), in x's dtype as resample_poly
    casts it: designed once per ratio instead of at every call (a batch has ~10 ratios)."""
    rate = max(up, down)
    h = signal.firwin(20 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(dtype)
    h.flags.writeable = False  # shared by the calls (resample_poly works on its own copy)
    return h


def speed_perturb(x: np.ndarray, factors) -> np.ndarray:
    """Play row i factors[i] times faster (resample_poly; tempo and pitch change together).

    The energy centroid of each row stays in place; the result is cropped or zero-padded to S.
    Factors are rounded to 1/40 (rows with the same factor are resampled together).
    x : (N, S) float32; factors : (N,) float > 0  ->  (N, S) float32
    """
    x = _batch(x)
    n, s = x.shape
    factors = np.asarray(factors, dtype=np.float64).reshape(n)
    if np.any(~np.isfinite(factors)) or np.any(factors <= 0):
        raise EdgekwsError("speed_perturb: factors must be finite and > 0")
    out = x.copy()
    if s == 0:
        return out
    q = np.maximum(np.rint(factors * _SPEED_STEPS).astype(np.int64), 1)
    energy = x.astype(np.float64) ** 2
    tot = energy.sum(1)
    centroid = np.where(tot > 0, energy @ np.arange(s, dtype=np.float64) / np.maximum(tot, _EPS), s / 2)
    for k in np.unique(q):
        if k == _SPEED_STEPS:
            continue
        rows = np.flatnonzero(q == k)
        g = gcd(_SPEED_STEPS, int(k))
        up, down = _SPEED_STEPS // g, int(k) // g
        y = signal.resample_poly(x[rows], up, down, axis=1, window=_resample_filter(up, down, x.dtype))
        y = y.astype(np.float32)
        out[rows] = _fit_length(y, s, centroid[rows], k / _SPEED_STEPS)
    return out


def _overlap_add(y: np.ndarray, win: np.ndarray, hop: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames y (k, T, frame), frame t starting at sample t * hop, summed into (k, size) float32,
    and the sum of win^2 under them (size,). Half-overlapping frames (frame = 2 hop, formant_shift's
    default) take two vector adds: each hop-long piece is the sum of two frame halves."""
    k, t, frame = y.shape
    ola = np.zeros((k, size), np.float32)
    norm = np.zeros(size, np.float32)
    if frame == 2 * hop:
        pieces = ola[:, :(t + 1) * hop].reshape(k, t + 1, hop)
        pieces[:, :t] = y[:, :, :hop]
        pieces[:, 1:] += y[:, :, hop:]
        w2 = (win * win).reshape(2, hop)
        npieces = norm[:(t + 1) * hop].reshape(t + 1, hop)
        npieces[:t] = w2[0]
        npieces[1:] += w2[1]
        return ola, norm
    for i in range(t):
        ola[:, i * hop:i * hop + frame] += y[:, i]
        norm[i * hop:i * hop + frame] += win * win
    return ola, norm


@functools.lru_cache(maxsize=8)
def _cepstral_bases(frame: int, lifter: int) -> tuple[np.ndarray, np.ndarray]:
    """The low-quefrency cepstrum and back, as matrices over the frame's frame//2 + 1 real bins.

    For a real, even log spectrum L (the bins 0..frame/2 of |rfft|), irfft(L)[q] = L @ to_cep[:, q];
    the liftered envelope rfft(cep with quefrencies lifter..frame-lifter zeroed).real = cep[:lifter]
    @ to_env. So the smoothed envelope is two small matmuls (rank `lifter`) instead of an irfft and
    an rfft of the whole frame. to_cep is float32, as the log spectra it multiplies; to_env float64,
    as formant_shift builds each clip's warp matrix from it before storing that in float32."""
    nbin = frame // 2 + 1
    q = np.arange(lifter)
    m = np.arange(nbin)
    cos = np.cos(2.0 * np.pi * np.outer(m, q) / frame)                 # (nbin, lifter)
    w = np.full(nbin, 2.0)
    w[0] = 1.0
    if frame % 2 == 0:
        w[-1] = 1.0                                                    # the Nyquist bin counts once
    to_cep = (w[:, None] * cos / frame).astype(np.float32)
    c = np.full(lifter, 2.0)
    c[0] = 1.0
    to_env = (c[:, None] * cos.T).astype(np.float64)                   # (lifter, nbin)
    to_cep.flags.writeable = False
    to_env.flags.writeable = False
    return to_cep, to_env


def formant_shift(x: np.ndarray, alpha, frame: int = 512, hop: int = 256,
                  lifter: int = 24) -> np.ndarray:
    """Scale the spectral envelope of row i along frequency by alpha[i], keeping pitch and timing:
    vocal-tract-length perturbation (>1: formants up, a shorter tract; <1: a longer one).

    Per Hann-windowed frame (frame/hop samples): the envelope is the cepstrally smoothed log
    magnitude (quefrencies below `lifter` samples, 1.5 ms at 16 kHz, so harmonics up to ~650 Hz
    stay in the excitation); the frame is multiplied by warped/original envelope (capped at
    ±30 dB) and overlap-added. Row RMS is kept; rows with alpha == 1 are returned unchanged.
    The envelope is linear in the `lifter` low cepstral coefficients, and so is its warp (linear
    interpolation at bin/alpha), so the log gain warped - original is those coefficients times one
    (lifter, bins) matrix per row: one rfft and one irfft per frame.
    x : (N, S) float32; alpha : (N,) float > 0  ->  (N, S) float32
    """
    x = _batch(x)
    n, s = x.shape
    alpha = np.asarray(alpha, np.float64).reshape(n)
    if np.any(~np.isfinite(alpha)) or np.any(alpha <= 0):
        raise EdgekwsError("formant_shift: alpha must be finite and > 0")
    out = x.copy()
    rows = np.flatnonzero(alpha != 1.0)
    if s == 0 or rows.size == 0:
        return out
    k, half = rows.size, frame // 2
    xp = np.pad(x[rows], ((0, 0), (half, half + frame)))
    win = np.hanning(frame + 1)[:frame].astype(np.float32)
    starts = np.arange(0, s + half, hop)
    frames = np.lib.stride_tricks.sliding_window_view(xp, frame, axis=1)[:, starts] * win
    spec = sfft.rfft(frames, axis=-1)                                       # (k, T, F)
    to_cep, to_env = _cepstral_bases(frame, lifter)
    cep = np.log(np.abs(spec) + np.float32(1e-7)) @ to_cep                 # (k, T, lifter)
    nbin = to_env.shape[1]
    delta = np.empty((k, lifter, nbin), np.float32)
    for j, a in enumerate(alpha[rows]):      # warped minus original envelope, per cepstral coefficient
        pos = np.minimum(np.arange(nbin) / a, nbin - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, nbin - 1)
        frac = pos - i0
        delta[j] = to_env[:, i0] * (1 - frac) + to_env[:, i1] * frac - to_env
    spec *= np.exp(np.clip(cep @ delta, -3.45, 3.45))                      # ±30 dB
    y = sfft.irfft(spec, frame, axis=-1).astype(np.float32) * win
    ola, norm = _overlap_add(y, win, hop, xp.shape[1])
    res = ola[:, half:half + s] / np.maximum(norm[half:half + s], 1e-3)
    rin = np.sqrt(np.mean(x[rows].astype(np.float64) ** 2, axis=1))
    rout = np.sqrt(np.mean(res.astype(np.float64) ** 2, axis=1))
    out[rows] = res * (rin / np.maximum(rout, _EPS)).astype(np.float32)[:, None]
    return out


def room_impulse_responses(rt60, drr_db, rng: np.random.Generator, sr: int = SAMPLE_RATE,
                           damping=None) -> np.ndarray:
    """Synthetic room impulse responses: a direct impulse, then exponentially decaying Gaussian
    noise (-60 dB at rt60) after a 1-10 ms pre-delay, low-passed by `damping` (air and walls
    absorb highs), scaled to the direct-to-reverberant energy ratio drr_db.

    rt60, drr_db : (K,) float; damping : (K,) in [0, 0.95) or None (random)
    returns (K, L) float32 with L = ceil(max(rt60) * sr) + pre-delay
    """
    rt60 = np.atleast_1d(np.asarray(rt60, np.float64))
    drr_db = np.broadcast_to(np.asarray(drr_db, np.float64), rt60.shape)
    k = rt60.size
    if damping is None:
        damping = rng.uniform(0.0, 0.7, k)
    damping = np.asarray(damping, np.float64).reshape(k)
    predelay = rng.integers(int(0.001 * sr), int(0.010 * sr) + 1, k)
    decay_len = np.ceil(rt60 * sr).astype(np.int64)   # samples until the tail is 60 dB down
    length = int(decay_len.max()) + int(predelay.max()) + 1
    decay = (-3.0 * np.log(10.0) / (rt60 * sr)).astype(np.float32)
    # each row's own tail only (rows of short rooms are mostly zeros): one draw for all rows
    noise = rng.standard_normal(int(decay_len.sum()), dtype=np.float32)
    levels = np.rint(damping * 20) / 20   # damping in steps of 0.05 (once grouped rows per lfilter call)
    tail = np.zeros((k, length), np.float32)
    ends = np.cumsum(decay_len)
    for i in range(k):
        seg = noise[ends[i] - decay_len[i]:ends[i]]
        if levels[i] > 0:
            seg = signal.lfilter([1.0 - levels[i]], [1.0, -levels[i]], seg).astype(np.float32)
        env = np.exp(np.arange(1, decay_len[i] + 1, dtype=np.float32) * decay[i])
        start = predelay[i] + 1
        np.multiply(seg, env, out=tail[i, start:start + decay_len[i]])
    e_tail = np.einsum("ij,ij->i", tail, tail).astype(np.float64)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.maximum(e_tail, _EPS)).astype(np.float32)[:, None]
    tail[:, 0] = 1.0                       # the direct sound
    return tail


def convolve_same(x: np.ndarray, irs: np.ndarray, keep_level: bool = True) -> np.ndarray:
    """Convolve row i with irs[i] (FFT), keep the first S samples and, if keep_level, the row's RMS.

    x : (N, S) float32; irs : (N, L) float  ->  (N, S) float32
    """
    x = _batch(x)
    n, s = x.shape
    if s == 0 or n == 0:
        return x.copy()
    nfft = sfft.next_fast_len(s + irs.shape[1] - 1, real=True)
    y = sfft.irfft(sfft.rfft(x, nfft, axis=1) * sfft.rfft(irs.astype(np.float32), nfft, axis=1),
                   nfft, axis=1)[:, :s]
    if keep_level:
        rin = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1))
        rout = np.sqrt(np.mean(y.astype(np.float64) ** 2, axis=1))
        y = y * (rin / np.maximum(rout, _EPS))[:, None]
    return y.astype(np.float32)


def reverberate(x, rt60, drr_db, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Room reverb with synthetic impulse responses (see room_impulse_responses); level kept.

    x : (N, S) float32; rt60, drr_db : (N,) float  ->  (N, S) float32
    """
    x = _batch(x)
    if x.shape[0] == 0:
        return x.copy()
    return convolve_same(x, room_impulse_responses(rt60, drr_db, rng, sr))


def sample_noise(noises, n: int, s: int, rng: np.random.Generator) -> np.ndarray:
    """n random excerpts of s samples from the noise arrays (each (m,) float; tiled when m < s).

    returns (n, s) float32
    """
    noises = [np.asarray(a, np.float32) for a in noises]
    out = np.zeros((n, s), np.float32)
    if not noises or s == 0:
        return out
    which = rng.integers(len(noises), size=n)
    starts = rng.random(n)
    for i in range(n):
        src = noises[which[i]]
        if src.size == 0:
            continue
        if src.size < s:
            src = np.tile(src, -(-s // src.size) + 1)
        a = int(starts[i] * (src.size - s + 1))
        out[i] = src[a:a + s]
    return out


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db, silent_ref_rms: float = 0.05) -> np.ndarray:
    """Mix noise[i] into x[i] at snr_db[i] dB, measured as mean power over the whole row.

    A silent row (power 0) gets noise at RMS silent_ref_rms · 10^(-snr/20), i.e. SNR relative to
    a -26 dBFS reference; an all-zero noise row adds nothing.
    x, noise : (N, S) float32; snr_db : (N,)  ->  (N, S) float32
    """
    x = _batch(x)
    noise = _batch(noise)
    if noise.shape != x.shape:
        raise EdgekwsError(f"add_noise: noise shape {noise.shape} differs from audio {x.shape}")
    if x.shape[1] == 0:
        return x.copy()
    snr_db = np.asarray(snr_db, np.float64).reshape(x.shape[0])
    px = np.mean(x.astype(np.float64) ** 2, axis=1)
    px = np.where(px > 0, px, silent_ref_rms ** 2)
    pn = np.mean(noise.astype(np.float64) ** 2, axis=1)
    scale = np.where(pn > 0, np.sqrt(px / np.maximum(pn, _EPS) * 10.0 ** (-snr_db / 10.0)), 0.0)
    return (x + noise * scale[:, None].astype(np.float32)).astype(np.float32)


def eq_response(freqs: np.ndarray, highpass_hz, lowpass_hz, tilt_db=0.0, res_hz=None,
                res_db=None, res_octaves=0.35, order: int = 4) -> np.ndarray:
    """Magnitude response |H(f)| per row: Butterworth-shaped high- and low-pass corners of `order`,
    a log-frequency tilt (tilt_db at 8 kHz relative to 1 kHz) and Gaussian peaks/dips.

    freqs : (F,) Hz; highpass_hz, lowpass_hz, tilt_db : (N,); res_hz, res_db : (N, R)
    returns (N, F) float32
    """
    f = np.maximum(np.asarray(freqs, np.float32), 1.0)[None, :]
    hp = np.asarray(highpass_hz, np.float32).reshape(-1, 1)
    lp = np.asarray(lowpass_hz, np.float32).reshape(-1, 1)
    mag = 1.0 / np.sqrt((1.0 + (hp / f) ** (2 * order)) * (1.0 + (f / lp) ** (2 * order)))
    octaves = np.log2(f / np.float32(1000.0))
    db = np.asarray(tilt_db, np.float32).reshape(-1, 1) * (octaves / np.float32(3.0))
    if res_hz is not None and np.size(res_hz):
        rh = np.log2(np.asarray(res_hz, np.float32) / np.float32(1000.0))
        rd = np.asarray(res_db, np.float32)
        for r in range(rh.shape[1]):
            z = (octaves - rh[:, r:r + 1]) * np.float32(1.0 / res_octaves)
            db += rd[:, r:r + 1] * np.exp(np.float32(-0.5) * z * z)
    return (mag * np.exp(db * np.float32(np.log(10.0) / 20.0))).astype(np.float32)


def _bin_response(nfft: int, sr: int, highpass_hz, lowpass_hz, tilt_db, res_hz, res_db,
                  order: int) -> np.ndarray:
    """eq_response at the nfft // 2 + 1 bins of an rfft of length nfft, (N, bins) float32. The
    response is smooth next to the bin spacing (~1 Hz for a 1 s clip): it is evaluated every
    _EQ_GRID bins and interpolated linearly, within 0.1 dB of exact above 100 Hz (tested) for a
    fifth of equalize's time."""
    nbin = nfft // 2 + 1
    grid = np.arange(-(-nbin // _EQ_GRID) + 1) * (_EQ_GRID * sr / nfft)
    hg = eq_response(grid, highpass_hz, lowpass_hz, tilt_db, res_hz, res_db, order=order)
    w = np.arange(_EQ_GRID, dtype=np.float32) / np.float32(_EQ_GRID)
    return (hg[:, :-1, None] * (1 - w) + hg[:, 1:, None] * w).reshape(len(hg), -1)[:, :nbin]


def equalize(x: np.ndarray, highpass_hz, lowpass_hz, tilt_db=0.0, res_hz=None, res_db=None,
             sr: int = SAMPLE_RATE, order: int = 4) -> np.ndarray:
    """Filter row i through eq_response(...) (zero-phase, in the frequency domain, with padding
    against wrap-around) — a cheap microphone, a laptop, or a phone line (300-3400 Hz).

    x : (N, S) float32; corner/tilt arrays (N,), resonances (N, R)  ->  (N, S) float32
    """
    x = _batch(x)
    n, s = x.shape
    if n == 0 or s == 0:
        return x.copy()
    nfft = sfft.next_fast_len(s + 1024, real=True)
    h = _bin_response(nfft, sr, highpass_hz, lowpass_hz, tilt_db, res_hz, res_db, order)
    y = sfft.irfft(sfft.rfft(x, nfft, axis=1) * h, nfft, axis=1)[:, :s]
    return y.astype(np.float32)


def apply_gain(x: np.ndarray, gain_db) -> np.ndarray:
    """x : (N, S) float32; gain_db : (N,)  ->  (N, S) float32 (no saturation)"""
    x = _batch(x)
    g = 10.0 ** (np.asarray(gain_db, np.float64).reshape(x.shape[0]) / 20.0)
    return x * g.astype(np.float32)[:, None]


def hard_clip(x: np.ndarray, level) -> np.ndarray:
    """Clip row i at level[i] × its own peak (an overdriven preamp).

    x : (N, S) float32; level : (N,) in (0, 1]  ->  (N, S) float32
    """
    x = _batch(x)
    if x.shape[1] == 0:
        return x.copy()
    lim = np.abs(x).max(axis=1) * np.asarray(level, np.float32).reshape(x.shape[0])
    return np.clip(x, -lim[:, None], lim[:, None])


def mu_law(x: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """Round-trip through mu-law companding quantized to `bits` (a telephone codec).

    x : (N, S) float32 in [-1, 1]  ->  (N, S) float32
    """
    x = np.clip(_batch(x), -1.0, 1.0)
    c = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    levels = 2 ** (bits - 1)
    c = np.round(c * levels) / levels
    return (np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu).astype(np.float32)


# ---------------------------------------------------------------- the chain

def default_noises(seconds: float = 8.0, sr: int = SAMPLE_RATE) -> list[np.ndarray]:
    """White, pink and brown noise (fixed seed), used when no noise recordings are given."""
    from edgekws.synth import noise as colours
    rng = np.random.default_rng(0x401CE)
    n = int(seconds * sr)
    return [colours.white(n, rng), colours.pink(n, rng), colours.brown(n, rng)]


class Augmenter:
    """Apply an AugmentConfig to batches.

    noises : background noise arrays, each (m,) float in [-1, 1] or int16 (e.g. the files of
             `_background_noise_`); None → white, pink and brown noise.
    """

    def __init__(self, config: AugmentConfig | None = None, noises=None):
        self.config = config if config is not None else AugmentConfig()
        if noises is None:
            noises = default_noises(sr=self.config.sample_rate)
        self.noises = []
        for i, a in enumerate(noises):
            a = np.asarray(a)
            if a.ndim != 1 or a.size == 0:
                raise EdgekwsError(f"Augmenter: noise {i} must be a non-empty 1-D array, got shape {a.shape}")
            a = a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)
            if not np.all(np.isfinite(a)):
                raise EdgekwsError(f"Augmenter: noise {i} contains NaN or infinite samples")
            self.noises.append(a)

    def __call__(self, x, rng):
        return self.apply(x, rng)

    def apply(self, x, rng: np.random.Generator) -> np.ndarray:
        """x : (N, S) float32 (or (S,) for one clip) -> same shape, float32 in [-1, 1]."""
        if not isinstance(rng, np.random.Generator):
            raise EdgekwsError("Augmenter.apply needs a np.random.Generator (np.random.default_rng(seed))")
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 1
        x = _batch(x[None, :] if single else x).copy()
        c = self.config
        n, s = x.shape
        if n and s:
            if not np.all(np.isfinite(x)):
                x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
            x = self._chain(x, rng, c, n, s)
        return x[0] if single else x

    def _chain(self, x, rng, c, n, s):
        def pick(p):
            return np.flatnonzero(rng.random(n) < p)

        def draw(rng_range, k):
            return rng.uniform(rng_range[0], rng_range[1], k)

        sr = c.sample_rate
        rows = pick(c.shift_prob)
        if rows.size:
            lim = int(c.shift_max_s * sr)
            x[rows] = time_shift(x[rows], rng.integers(-lim, lim + 1, rows.size))
        rows = pick(c.formant_prob)
        if rows.size:
            x[rows] = formant_shift(x[rows], draw(c.formant_range, rows.size))
        rows = pick(c.speed_prob)
        if rows.size:
            x[rows] = speed_perturb(x[rows], draw(c.speed_range, rows.size))
        rows = pick(c.reverb_prob)
        if rows.size:
            x[rows] = reverberate(x[rows], draw(c.rt60_range, rows.size),
                                  draw(c.drr_db_range, rows.size), rng, sr)
        rows = pick(c.noise_prob)
        if rows.size and self.noises:
            x[rows] = add_noise(x[rows], sample_noise(self.noises, rows.size, s, rng),
                                draw(c.snr_db_range, rows.size))
        rows = pick(c.eq_prob)
        if rows.size:
            k = rows.size
            hp, lp = draw(c.highpass_hz_range, k), draw(c.lowpass_hz_range, k)
            phone = rng.random(k) < c.phone_prob
            hp[phone], lp[phone] = 300.0, min(3400.0, sr / 2)
            res_hz = np.exp(rng.uniform(np.log(200.0), np.log(min(6000.0, sr * 0.45)), (k, c.resonances)))
            x[rows] = equalize(x[rows], hp, lp, draw(c.tilt_db_range, k), res_hz,
                               rng.uniform(*c.resonance_db_range, (k, c.resonances)), sr)
        rows = pick(c.gain_prob)
        if rows.size:
            x[rows] = apply_gain(x[rows], draw(c.gain_db_range, rows.size))
        rows = pick(c.clip_prob)
        if rows.size:
            x[rows] = hard_clip(x[rows], draw(c.clip_level_range, rows.size))
        rows = pick(c.mulaw_prob)
        if rows.size:
            x[rows] = mu_law(x[rows])
        return np.clip(x, -1.0, 1.0, out=x)


def benchmark(batch: int = 100, repeats: int = 5, config: AugmentConfig | None = None,
              seed: int = 0) -> float:
    """Clips per second of Augmenter(config).apply on (batch, 16000) noise-like clips (median)."""
    import time
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((batch, SAMPLE_RATE))).astype(np.float32)
    aug = Augmenter(config)
    aug.apply(x, rng)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        aug.apply(x, rng)
        times.append(time.perf_counter() - t)
    return batch / float(np.median(times))


if __name__ == "__main__":
    print(f"Augmenter, default config, batch 100 x 1 s: {benchmark():.0f} clips/s")

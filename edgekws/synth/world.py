"""New voices from old: resynthesize a clip with the WORLD vocoder (pyworld) under a `WorldVoice`.

    from edgekws.synth.world import WorldVoice, resynthesize
    voice = WorldVoice.random(np.random.default_rng(0))
    y = resynthesize(x, voice)            # x: (16000,) float in [-1, 1] -> (16000,) float32

WORLD splits speech into F0 (pitch), a smooth spectral envelope (vocal tract) and aperiodicity
(noise vs harmonics) on 5 ms frames; each part is changed independently, then synthesized again:

* f0_scale     : multiplies F0 (pitch level);
* f0_range     : scales the log-F0 deviation around the utterance's mean log-F0 (intonation);
* f0_wobble_st : adds a smooth random contour (a few sinusoids of 0.5-3 Hz, peak ±f0_wobble_st
                 semitones, drawn from `seed`) to log-F0;
* warp         : all-pass frequency warping of the envelope, alpha in (-1, 1). Convention: the new
                 envelope at frequency w is the old one at phi(w) = w + 2 atan(a sin w / (1 - a cos w)),
                 so warp > 0 LOWERS the formants (longer vocal tract, "bigger" speaker), warp < 0
                 raises them (shorter tract, child-like). Near 0 Hz formants scale by (1-a)/(1+a):
                 0.79 at +0.12, 1.27 at -0.12;
* rate         : speaking rate (> 1 faster), by resampling the frame sequence in time about the
                 centre of the speech, so the word stays where it was and pitch is untouched;
* breath       : moves aperiodicity linearly toward 1, ap + b (1 - ap) (0 unchanged, 1 whisper). WORLD
                 mixes noise power ap² with harmonic power 1 - ap², so the harmonics-to-noise ratio
                 is at most 10 log10((1 - b²) / b²): 20 dB at b = 0.1, 10 dB at 0.3, 7 dB at 0.4.

Unvoiced frames stay unvoiced, the output keeps the input's length and RMS. pyworld is optional and
imported only when used. Every random choice comes from a passed Generator or seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgekws.errors import require

INSTALL_HINT = "pip install pyworld"
FRAME_MS = 5.0
F0_FLOOR, F0_CEIL = 71.0, 800.0         # dio search range (Hz)
F0_MIN, F0_MAX = 50.0, 800.0            # modified F0 is clipped to this range (Hz)
# The ranges WorldVoice.random draws from (f0_scale and rate log-uniformly, the others uniformly).
F0_SCALE_RANGE = (0.6, 1.7)
F0_RANGE_RANGE = (0.3, 1.8)
F0_WOBBLE_RANGE = (0.0, 3.0)            # semitones
WARP_RANGE = (-0.12, 0.12)
RATE_RANGE = (0.8, 1.25)
BREATH_RANGE = (0.0, 0.4)               # HNR >= ~7 dB (see the module docstring); 1 = whisper
_WOBBLE_HZ = (0.5, 3.0)
_WOBBLE_PARTS = 3


def _pyworld():
    return require("pyworld", INSTALL_HINT, "WORLD vocoder voice variants")


def require_pyworld() -> None:
    """Raise MissingDependencyError (saying what to install) unless pyworld imports."""
    _pyworld()


@dataclass(frozen=True)
class WorldVoice:
    """One voice transform; the defaults are the identity (see the module docstring)."""

    f0_scale: float = 1.0
    f0_range: float = 1.0
    f0_wobble_st: float = 0.0
    warp: float = 0.0
    rate: float = 1.0
    breath: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.f0_scale > 0 and self.f0_range >= 0 and self.f0_wobble_st >= 0 and self.rate > 0
                and -1 < self.warp < 1 and 0 <= self.breath <= 1):
            raise ValueError(f"WorldVoice: parameter out of range: {self}")

    @classmethod
    def random(cls, rng: np.random.Generator) -> WorldVoice:
        """A voice drawn from the *_RANGE constants of this module."""
        def logu(lo_hi):
            return float(np.exp(rng.uniform(*np.log(lo_hi))))

        return cls(f0_scale=logu(F0_SCALE_RANGE), f0_range=float(rng.uniform(*F0_RANGE_RANGE)),
                   f0_wobble_st=float(rng.uniform(*F0_WOBBLE_RANGE)), warp=float(rng.uniform(*WARP_RANGE)),
                   rate=logu(RATE_RANGE), breath=float(rng.uniform(*BREATH_RANGE)),
                   seed=int(rng.integers(2**31)))

    def as_dict(self) -> dict:
        return asdict(self)


def analyze(x: np.ndarray, sr: int = 16000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WORLD analysis: dio + stonemask F0, cheaptrick envelope, d4c aperiodicity, 5 ms frames.

    x : (n,) float in [-1, 1] (or int16)  ->  f0 (T,), sp (T, K), ap (T, K) float64,
    T = n // (sr * 0.005) + 1; K = fft_size/2 + 1 = 513 at 16 kHz (fft size 1024, fixed per rate).
    f0 is 0 on unvoiced frames.
    """
    pw = _pyworld()
    x = _float64(x)
    fft = pw.get_cheaptrick_fft_size(sr, F0_FLOOR)
    f0, t = pw.dio(x, sr, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr, f0_floor=F0_FLOOR, fft_size=fft)
    ap = pw.d4c(x, f0, t, sr, fft_size=fft)
    return f0, sp, ap


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """All-pass frequency warping of spectral envelopes, interpolated in log power along frequency.

    sp : (T, K) power envelopes over 0..Nyquist  ->  (T, K); new[:, w] = sp[:, phi(w)], so
    alpha > 0 moves peaks down, alpha < 0 moves them up.
    """
    if alpha == 0:
        return sp.copy()
    k = sp.shape[1]
    w = np.linspace(0.0, np.pi, k)
    src = (w + 2.0 * np.arctan2(alpha * np.sin(w), 1.0 - alpha * np.cos(w))) / np.pi * (k - 1)
    i0 = np.clip(np.floor(src).astype(int), 0, k - 2)
    frac = np.clip(src - i0, 0.0, 1.0)
    logsp = np.log(sp)
    return np.exp(logsp[:, i0] * (1.0 - frac) + logsp[:, i0 + 1] * frac)


def _time_warp(f0, sp, ap, rate: float):
    """Resample the frame sequence about the speech centre c: output frame j reads source frame
    c + (j - c) * rate (same frame count T). Frames that fall outside the clip become silence."""
    t = len(f0)
    if rate == 1.0 or t < 2:
        return f0.copy(), sp.copy(), ap.copy()
    power = sp.sum(axis=1)
    active = np.flatnonzero(power > power.max() * 1e-4)          # within 40 dB of the loudest frame
    c = 0.5 * (active[0] + active[-1]) if active.size else 0.5 * (t - 1)
    s = c + (np.arange(t) - c) * rate
    inside = (s >= 0) & (s <= t - 1)
    s = np.clip(s, 0, t - 1)
    i0 = np.minimum(np.floor(s).astype(int), t - 2)
    i1, fr = i0 + 1, (s - i0)
    lerp = lambda a: a[i0] * (1 - fr[:, None]) + a[i1] * fr[:, None]  # noqa: E731
    sp2 = np.exp(lerp(np.log(sp)))
    ap2 = lerp(ap)
    v0, v1 = f0[i0] > 0, f0[i1] > 0
    both = np.exp(np.log(np.where(v0, f0[i0], 1.0)) * (1 - fr) + np.log(np.where(v1, f0[i1], 1.0)) * fr)
    f02 = np.where(v0 & v1, both, np.where(fr < 0.5, f0[i0], f0[i1]))
    f02[~inside], ap2[~inside], sp2[~inside] = 0.0, 1.0, sp.min()
    return f02, sp2, ap2


def wobble(n_frames: int, semitones: float, seed: int) -> np.ndarray:
    """(n_frames,) smooth random contour in semitones, peak |value| = semitones."""
    if semitones == 0 or n_frames == 0:
        return np.zeros(n_frames)
    rng = np.random.default_rng(seed)
    hz = rng.uniform(*_WOBBLE_HZ, _WOBBLE_PARTS)
    phase = rng.uniform(0, 2 * np.pi, _WOBBLE_PARTS)
    amp = rng.uniform(0.5, 1.0, _WOBBLE_PARTS)
    t = np.arange(n_frames) * FRAME_MS / 1000.0
    c = (amp * np.sin(2 * np.pi * hz * t[:, None] + phase)).sum(axis=1)
    return semitones * c / max(np.abs(c).max(), 1e-9)


def apply_voice(f0, sp, ap, voice: WorldVoice):
    """WORLD parameters (f0 (T,), sp (T, K), ap (T, K)) -> new ones of the same shapes."""
    f0, sp, ap = _time_warp(np.asarray(f0, float), np.asarray(sp, float), np.asarray(ap, float), voice.rate)
    v = f0 > 0
    if v.any():
        lf = np.log(f0[v])
        mean = lf.mean()
        lf = mean + voice.f0_range * (lf - mean) + np.log(voice.f0_scale)
        lf += wobble(len(f0), voice.f0_wobble_st, voice.seed)[v] * (np.log(2.0) / 12.0)
        f0[v] = np.clip(np.exp(lf), F0_MIN, F0_MAX)
    sp = warp_envelope(sp, voice.warp)
    if voice.breath:
        ap = ap + voice.breath * (1.0 - ap)
    return f0, sp, ap


def resynthesize(x: np.ndarray, voice: WorldVoice, sr: int = 16000, analysis=None) -> np.ndarray:
    """A clip spoken by `voice`: x (n,) float in [-1, 1] -> (n,) float32 in [-1, 1], same RMS.

    analysis : `analyze(x, sr)` if already computed (to make several voices from one analysis).
    """
    pw = _pyworld()
    x = _float64(x)
    f0, sp, ap = analyze(x, sr) if analysis is None else analysis
    f0, sp, ap = apply_voice(f0, sp, ap, voice)
    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap),
                      sr, FRAME_MS)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[:len(x)]
    rms_in, rms_out = np.sqrt(np.mean(x**2)), np.sqrt(np.mean(y**2))
    y = y * (rms_in / rms_out) if rms_out > 0 else np.zeros_like(y)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def write_variants(src: str, outputs) -> int:
    """Read the WAV `src` once, write one resynthesized WAV per (dst path, WorldVoice) in `outputs`
    (atomically, 16 kHz int16). Returns the number written. (The worker of tools/world_variants.py.)"""
    from edgekws.audio import SAMPLE_RATE, read_wav, write_wav

    x = read_wav(src, dtype="float32")
    analysis = analyze(x, SAMPLE_RATE)
    for dst, voice in outputs:
        write_wav(dst, resynthesize(x, voice, SAMPLE_RATE, analysis))
    return len(outputs)


def _float64(x) -> np.ndarray:
    x = np.asarray(x)
    x = x / 32768.0 if x.dtype == np.int16 else x
    return np.ascontiguousarray(x, dtype=np.float64)

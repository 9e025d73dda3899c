"""FeatureConfig (human units) and the integer tables derived from it.

The config is what a model bundle stores; `FrontendTables` is what the numpy pipeline, the C
frontend (through `tools/gen_golden.py` or ctypes) and the tests all compute with. Every constant
shared by training and device is derived here, once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edgekws.errors import EdgekwsError, is_int, is_real

FORMAT = "ekws-frontend-2"  # bump when the integer definition changes (2: radix-4 real FFT)

# Fixed-point formats of the pipeline (documented in edgekws/features/integer.py).
WINDOW_Q = 15  # Hann window, Q15 int16
TWIDDLE_Q = 15  # FFT twiddles, value * 2**15 as int32 (cos 0 = 32768 exactly)
MEL_Q = 15  # triangular mel weights, Q15 uint16 (<= 32767)
LOG_INDEX_BITS = 8  # log2 mantissa lookup: 256 entries
LOG_Q = 10  # log2 results in Q10 (1/1024 octave of energy)
OUT_SHIFT = 20  # int8 mapping multiplier precision
C_MAX_FFT = 512  # EKWS_FRONTEND_MAX_FFT of the default C build


class FeatureConfigError(EdgekwsError):
    """A feature configuration with a missing, unknown or out-of-range field."""


@dataclass(frozen=True)
class FeatureConfig:
    """What the frontend computes, in human units. All fields have the tested defaults.

    sample_rate : Hz of the int16 input
    window_ms   : analysis window length (30 ms -> 480 samples at 16 kHz)
    hop_ms      : frame step (20 ms -> 320 samples; 49 frames per second of audio)
    fft_size    : FFT length (power of two, >= window length; the window is zero-padded)
    num_bands   : triangular mel bands (HTK mel scale) between low_hz and high_hz
    low_hz, high_hz : band edges (Hz)
    preemphasis : 0 = off, else y[n] = (x[n] - a*x[n-1]) / 2 with a in Q15
    db_min, db_max  : int8 output range. The feature is the band energy in dB,
        10*log10(sum_k w_k |X_k / fft_size|^2) with X the DFT of the windowed int16 samples and
        w_k the mel weights in [0, 1]. int8 -128 means db_min (and digital silence), +127 means
        db_max; values outside saturate. Model input quantization: real = scale * (q - zero_point)
        with scale = (db_max - db_min) / 255 dB and zero_point = -128 (real = dB above db_min).
    """

    sample_rate: int = 16000
    window_ms: float = 30.0
    hop_ms: float = 20.0
    fft_size: int = 512
    num_bands: int = 40
    low_hz: float = 125.0
    high_hz: float = 7500.0
    preemphasis: float = 0.0
    db_min: float = -10.0
    db_max: float = 92.0

    def __post_init__(self):
        _validate(self)
        self.tables  # noqa: B018 - derive now so an impossible config fails at construction

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def window_len(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000.0))

    @property
    def hop_len(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def num_bins(self) -> int:
        return self.fft_size // 2 + 1

    @property
    def input_scale(self) -> float:
        """dB per int8 step of the output (the model's input scale)."""
        return (self.db_max - self.db_min) / 255.0

    @property
    def input_zero_point(self) -> int:
        """int8 value meaning db_min (the model's input zero point)."""
        return -128

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of `num_samples` samples (49 for 16000 by default)."""
        if num_samples < self.window_len:
            return 0
        return 1 + (num_samples - self.window_len) // self.hop_len

    # ---- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT}
        d.update(dataclasses.asdict(self))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        if not isinstance(d, dict):
            raise FeatureConfigError(f"feature config: expected a mapping, got {type(d).__name__}")
        d = dict(d)
        fmt = d.pop("format", FORMAT)
        if fmt != FORMAT:
            raise FeatureConfigError(f"feature config: format {fmt!r} is not supported (expected {FORMAT!r})")
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise FeatureConfigError(f"feature config: unknown field(s) {', '.join(unknown)}")
        kwargs = {}
        for key, value in d.items():
            want = int if names[key].type in ("int", int) else float
            if not is_real(value, numpy=False):
                raise FeatureConfigError(f"feature config: {key} must be a number, got {value!r}")
            if want is int and float(value) != int(value):
                raise FeatureConfigError(f"feature config: {key} must be an integer, got {value!r}")
            kwargs[key] = want(value)
        return cls(**kwargs)

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of the canonical JSON of to_dict()."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    @cached_property
    def tables(self) -> "FrontendTables":
        return FrontendTables.build(self)


def _validate(c: FeatureConfig) -> None:
    def bad(field, why):
        raise FeatureConfigError(f"feature config: {field}={getattr(c, field)!r} {why}")

    for name in ("window_ms", "hop_ms", "low_hz", "high_hz", "preemphasis", "db_min", "db_max"):
        v = getattr(c, name)
        if not is_real(v, numpy=False) or not math.isfinite(v):
            bad(name, "must be a finite number")
    for name in ("sample_rate", "fft_size", "num_bands"):
        if not is_int(getattr(c, name), numpy=False):
            bad(name, "must be an integer")
    if not 4000 <= c.sample_rate <= 48000:
        bad("sample_rate", "must be in [4000, 48000]")
    if c.fft_size < 64 or c.fft_size > 4096 or c.fft_size & (c.fft_size - 1):
        bad("fft_size", "must be a power of two in [64, 4096]")
    if not 16 <= c.window_len <= c.fft_size:
        bad("window_ms", f"gives {c.window_len} samples; need 16 <= window <= fft_size ({c.fft_size})")
    if not 1 <= c.hop_len <= c.window_len:
        bad("hop_ms", f"gives {c.hop_len} samples; need 1 <= hop <= window ({c.window_len})")
    if not 1 <= c.num_bands <= 128:
        bad("num_bands", "must be in [1, 128]")
    if not 0 <= c.low_hz < c.high_hz:
        bad("low_hz", f"must be >= 0 and below high_hz ({c.high_hz})")
    if c.high_hz > c.sample_rate / 2:
        bad("high_hz", f"must not exceed the Nyquist frequency ({c.sample_rate / 2:g} Hz)")
    if not 0 <= c.preemphasis < 1:
        bad("preemphasis", "must be in [0, 1)")
    if not c.db_max - c.db_min >= 10:
        bad("db_max", f"must exceed db_min ({c.db_min}) by at least 10 dB")


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_weights_float(cfg: FeatureConfig) -> np.ndarray:
    """Triangular HTK-mel weights in [0, 1]: (num_bins, num_bands) float64."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(cfg.low_hz), _hz_to_mel(cfg.high_hz), cfg.num_bands + 2))
    freqs = np.arange(cfg.num_bins, dtype=np.float64) * cfg.sample_rate / cfg.fft_size
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs[None, :] - lo) / (mid - lo)
    fall = (hi - freqs[None, :]) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, None).T


def hann_float(n: int) -> np.ndarray:
    """Symmetric half-sample-offset Hann window sin^2(pi (i + 0.5) / n): (n,) float64."""
    return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2


def fft_stage_radices(nc: int) -> list[int]:
    """Radices of the complex FFT of size nc (power of two >= 32), first stage first:
    one radix-2 stage when log2(nc) is odd, then radix-4 stages (the last one is always radix 4)."""
    log2 = nc.bit_length() - 1
    return [2] * (log2 % 2) + [4] * (log2 // 2)


def fft_input_order(nc: int) -> list[int]:
    """Mixed-radix digit reversal: slot p of the in-place DIT FFT holds input sample order[p].

    The last stage (radix r, span q = nc / r) combines r sub-FFTs, sub-FFT m over x[m + r n]
    stored in slots m q .. m q + q - 1; recursively for the earlier stages."""

    def order(size: int, radices: list[int]) -> list[int]:
        if not radices:
            return [0]
        r = radices[-1]
        sub = order(size // r, radices[:-1])
        return [m + r * s for m in range(r) for s in sub]

    return order(nc, fft_stage_radices(nc))


@dataclass(frozen=True, eq=False)
class FrontendTables:
    """Integer constants of the pipeline, derived from a FeatureConfig (arrays are read-only)."""

    window: np.ndarray  # (window_len,) int16, Q15
    twiddle_cos: np.ndarray  # (fft_size/2,) int32, round(cos(2 pi k/N) * 2^15); entry k+N/2 := -entry k
    twiddle_sin: np.ndarray  # (fft_size/2,) int32, round(sin(2 pi k/N) * 2^15); entry k+N/2 := -entry k
    bitrev: np.ndarray  # (fft_size,) uint16: FFT input slot i (packed complex, re/im interleaved) <- sample bitrev[i]
    band_start: np.ndarray  # (num_bands,) uint16, first FFT bin with a nonzero weight
    band_len: np.ndarray  # (num_bands,) uint16
    band_offset: np.ndarray  # (num_bands,) uint16, index of the band's first weight
    band_weights: np.ndarray  # (sum(band_len),) uint16, Q15
    mel_dense: np.ndarray  # (num_bins, num_bands) float64: the same Q15 weights, dense
    log2_frac: np.ndarray  # (2^LOG_INDEX_BITS,) uint16, round(2^LOG_Q log2(1 + (i + .5)/256))
    preemph_q15: int
    out_mult: int
    out_offset: int
    out_shift: int

    @classmethod
    def build(cls, cfg: FeatureConfig) -> "FrontendTables":
        n, L = cfg.fft_size, cfg.window_len
        window = np.round(hann_float(L) * 32767.0).astype(np.int16)
        k = np.arange(n // 2)
        tw_cos = np.round(np.cos(2 * np.pi * k / n) * (1 << TWIDDLE_Q)).astype(np.int32)
        tw_sin = np.round(np.sin(2 * np.pi * k / n) * (1 << TWIDDLE_Q)).astype(np.int32)
        order = np.array(fft_input_order(n // 2), dtype=np.int64)
        rev = np.stack([2 * order, 2 * order + 1], axis=1).reshape(-1)  # packed complex gather map
        wq = np.round(mel_weights_float(cfg) * 32767.0).astype(np.int64)  # (bins, bands)
        starts, lens, offsets, flat = [], [], [], []
        for b in range(cfg.num_bands):
            nz = np.flatnonzero(wq[:, b])
            if nz.size == 0:
                raise FeatureConfigError(
                    f"feature config: mel band {b} has no FFT bin (num_bands={cfg.num_bands} too many "
                    f"for fft_size={n} between {cfg.low_hz:g} and {cfg.high_hz:g} Hz)"
                )
            lo, hi = int(nz[0]), int(nz[-1]) + 1
            starts.append(lo)
            lens.append(hi - lo)
            offsets.append(len(flat))
            flat.extend(wq[lo:hi, b].tolist())
        dense = np.zeros_like(wq)
        for b in range(cfg.num_bands):
            dense[starts[b] : starts[b] + lens[b], b] = flat[offsets[b] : offsets[b] + lens[b]]
        # Band energies are computed in float64 by numpy: exact while every sum stays < 2^53.
        # Power per bin < 2^31 (see integer.py), so bound the weight sums.
        if int(dense.sum(axis=0).max()) << 31 >= 1 << 53:
            raise FeatureConfigError("feature config: mel bands too wide for exact 64-bit band energies")
        if len(flat) >= 1 << 16:
            raise FeatureConfigError("feature config: too many mel weights for the C tables")
        i = np.arange(1 << LOG_INDEX_BITS)
        log2_frac = np.round(np.log2(1.0 + (i + 0.5) / (1 << LOG_INDEX_BITS)) * (1 << LOG_Q)).astype(np.uint16)
        # int8 = round(L * k - c) - 128 with L = log2(band energy) in Q10 (before removing the
        # Q15 weight scale): dB = 10 log10(2) (L / 2^10 - 15); q + 128 = (dB - db_min) / step.
        step = cfg.input_scale
        db_per_octave = 10.0 * math.log10(2.0)
        out_mult = int(round(db_per_octave / ((1 << LOG_Q) * step) * (1 << OUT_SHIFT)))
        out_offset = int(round((db_per_octave * MEL_Q + cfg.db_min) / step * (1 << OUT_SHIFT)))
        if not (0 < out_mult < 1 << 31 and abs(out_offset) < 1 << 31):
            raise FeatureConfigError("feature config: db_min/db_max give an int8 mapping out of range")
        arrays = dict(
            window=window,
            twiddle_cos=tw_cos,
            twiddle_sin=tw_sin,
            bitrev=rev.astype(np.uint16),
            band_start=np.array(starts, dtype=np.uint16),
            band_len=np.array(lens, dtype=np.uint16),
            band_offset=np.array(offsets, dtype=np.uint16),
            band_weights=np.array(flat, dtype=np.uint16),
            mel_dense=dense.astype(np.float64),
            log2_frac=log2_frac,
        )
        for a in arrays.values():
            a.setflags(write=False)
        return cls(
            **arrays,
            preemph_q15=min(32767, int(round(cfg.preemphasis * 32768.0))),
            out_mult=out_mult,
            out_offset=out_offset,
            out_shift=OUT_SHIFT,
        )

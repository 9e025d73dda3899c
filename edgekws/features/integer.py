"""The integer frontend in numpy: int16 PCM -> int8 mel log-energies, bit-identical to firmware/src/frontend.c.

Definition (C widths in brackets; `>>` is an arithmetic shift, i.e. floor division by 2^k;
N = fft_size, Nc = N/2, W_N^k = the Q15 twiddle table entry k: (cos, sin)(2 pi k / N) * 2^15
rounded, stored for k < N/2 and extended by W_N^(k + N/2) := -W_N^k):

1. pre-emphasis (optional, a = preemph_q15):  y[n] = (32768 x[n] - a x[n-1]) >> 16   [int32 -> int16]
   x[-1] = 0 at the start of a clip / after reset. The halving means no int16 input can overflow.
2. window: w[i] = (y[i] h[i] + 2^14) >> 15 with h the Q15 Hann window            [int32 -> int16]
3. block normalization: m = max|w|; s = 14 - floor(log2 m) if 0 < m < 2^14 else 0; w <<= s.
   Every frame uses the full 16-bit range of the FFT (|w| < 2^15); s comes back as -2s octaves
   in step 7. w is zero-padded to N samples.
4. packed complex FFT of size Nc: z[n] = w[2n] + i w[2n+1], stored in mixed-radix digit-reversed
   order (table `bitrev`: FFT slot i, re/im interleaved, takes sample bitrev[i]), then in-place
   decimation-in-time stages of span q = 1, r1, r1 r2, ... (`fft_stage_radices`: one radix-2
   stage first when log2 Nc is odd, radix 4 otherwise). In a group, a_m = slot m q + j:
   radix 2 (only as the first stage, twiddle 1): y_0,1 = (a_0 +- a_1 + 1) >> 1.
   radix 4: t_0 = a_0, t_m = (a_m W^(m j N / 4q) + 2^14) >> 15 per component (m = 1..3), i.e.
   t_re = (a_re c + a_im s + 2^14) >> 15, t_im = (a_im c - a_re s + 2^14) >> 15, then
   y_k = sum_m t_m (-i)^(m k) (k = 0..3), stored as (y_k + 2) >> 2, except after the last stage,
   which stores the sums unshifted: Y = DFT_Nc(z) / (Nc / 4), rounded per stage.          [int32]
   Overflow bound: |w| < 2^15 so |z| < 2^15.5 (complex modulus). A stage's output modulus is at
   most its input modulus plus < 1.5 of rounding, so every twiddle input has modulus
   < 2^15.5 + 8 and (Cauchy-Schwarz) |a_re c + a_im s| <= |a| |W| < 2^30.6; |Y| < 2^17.6.
5. real spectrum (split step), for k = 0..Nc/2 with k' = (Nc - k) mod Nc and (c, s) = W_N^k:
   A = Y[k] + conj Y[k'], B = Y[k] - conj Y[k'], B' = (B + 4) >> 3       [|A| < 2^18.6, |B'| < 2^15.7]
   U = (-i (c - i s) B' + 2^11) >> 12, i.e. U_re = (c B'_im - s B'_re + 2^11) >> 12,
       U_im = (-(c B'_re + s B'_im) + 2^11) >> 12          [|c B'_im - s B'_re| <= |W||B'| < 2^30.7]
   X[k] = (A + U + 8) >> 4, X[Nc - k] = ((A_re - U_re + 8) >> 4, (U_im - A_im + 8) >> 4)     [int32]
   so X = DFT_N(w) / N: X[k] = (A - i W B) / 16 is the textbook even/odd split of the packed FFT.
   (Measured: every bin within 1.5 LSB of the exact DFT(w) / N; tested <= 2.)
6. power P[k] = re^2 + im^2 < 2^31 for k = 0..Nc (|X| <= sum|w| / N < 2^15); band energy
   E_b = sum_k P[k] m_bk with Q15 mel weights m_bk                                     [uint64]
7. log: e = floor(log2 E), f = the 8 bits after the leading one, L = (e - 2s) 2^10 + T[f] with
   T[i] = round(2^10 log2(1 + (i + 0.5)/256))                                          [int32, Q10]
8. int8: q = clamp(((L mult - offset + 2^19) >> 20) - 128, -128, 127); E = 0 gives -128.
   mult and offset map L to (dB - db_min) / scale, see FeatureConfig.

numpy evaluation: frames are processed in blocks with the frame axis last, (values, frames), so
every pass is a contiguous pass over whole rows, in int32 buffers reused across calls. Band
energies use float64 dot products per band: every product (< 2^46) and partial sum (< 2^53, checked
when the tables are built) is an integer float64 represents exactly, so any summation order gives
the C uint64 result. Steps 7-8 likewise use float64 on integers below 2^53 (exact).
"""

from __future__ import annotations

import threading

import numpy as np

from edgekws.errors import AudioError, EdgekwsError
from edgekws.features.config import LOG_INDEX_BITS, LOG_Q, FeatureConfig, FrontendTables, fft_stage_radices

_BLOCK_VALUES = 512 * 512  # frames x fft_size per vectorized block: 512 frames at N = 512 measured
# best of 256..2048 frames (an FFT buffer is then 1 MB; the whole workspace ~9 MB per thread)


def _block_frames(cfg: FeatureConfig) -> int:
    """Frames per vectorized block for cfg (fewer for larger FFTs: bounded memory)."""
    return max(16, _BLOCK_VALUES // cfg.fft_size)


def preemphasize(x: np.ndarray, a_q15: int, prev: np.ndarray | int = 0) -> np.ndarray:
    """Step 1 on whole clips.

    x    : (N, S) int16 samples
    prev : (N,) or scalar, the sample before x[:, 0] (0 at a clip start)
    returns (N, S) int16; x unchanged (as int16) when a_q15 == 0.
    """
    if a_q15 == 0:
        return x.astype(np.int16, copy=False)
    x32 = x.astype(np.int32)
    before = np.empty_like(x32)
    before[:, 0] = prev
    before[:, 1:] = x32[:, :-1]
    return ((x32 * 32768 - before * a_q15) >> 16).astype(np.int16)


def twiddle(t: FrontendTables, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W_N^k for 0 <= k < N (the table extended by W^(k + N/2) = -W^k): two int32 arrays like k."""
    half = t.twiddle_cos.size
    neg = k >= half
    kk = np.where(neg, k - half, k)
    sign = np.where(neg, -1, 1).astype(np.int32)
    return sign * t.twiddle_cos[kk], sign * t.twiddle_sin[kk]


class _Plan:
    """numpy constants of one FeatureConfig: stage twiddles, input order, split twiddles, mel weights, log."""

    def __init__(self, cfg: FeatureConfig):
        t = cfg.tables
        n = cfg.fft_size
        self.nc = nc = n // 2
        self.half = nc // 2
        self.stages = []  # (radix, q, cos (3, q, 1), +-sin (2, 1, 3, q, 1)) int32
        q = 1
        for r in fft_stage_radices(nc):
            c = s = None
            if r == 4 and q > 1:
                k = np.arange(1, 4)[:, None] * np.arange(q)[None, :] * (n // (4 * q))
                cw, sw = twiddle(t, k)
                c = np.ascontiguousarray(cw[:, :, None])
                s = np.ascontiguousarray(np.stack([sw, -sw])[:, None, :, :, None])
            self.stages.append((r, q, c, s))
            q *= r
        g = t.bitrev.astype(np.intp)
        g = np.concatenate([g[0::2], g[1::2]])  # plane-major: all re slots, then all im slots
        pad = g >= cfg.window_len
        self.gather_clipped = np.where(pad, 0, g)
        self.window_gathered = np.where(pad, 0, t.window.astype(np.int32)[np.where(pad, 0, g)])[:, None]
        k = np.arange(self.half + 1)
        cw, sw = twiddle(t, k)
        self.split_cos = cw[:, None]
        self.split_sin = sw[:, None]
        self.kmirror = (nc - k) % nc
        self.bands = []  # (first bin, Q15 weights as float64) per band
        for b in range(cfg.num_bands):
            lo, ln, off = int(t.band_start[b]), int(t.band_len[b]), int(t.band_offset[b])
            self.bands.append((lo, t.band_weights[off : off + ln].astype(np.float64)))
        # Steps 7-8 as one float64 expression: acc = e1 oct + frac_mult[idx] + const - s shift_mult.
        self.octave_mult = float((1 << LOG_Q) * t.out_mult)
        # Entries 256.. are reached only by index -256 (energy 0): -1e30 saturates the result to -128.
        self.frac_mult = np.concatenate([t.log2_frac.astype(np.float64) * t.out_mult, np.full(256, -1e30)])
        self.acc_const = float(-(1 << LOG_Q) * t.out_mult - t.out_offset + (1 << (t.out_shift - 1)))
        self.shift_mult = float(2 * (1 << LOG_Q) * t.out_mult)
        self.acc_scale = 2.0 ** -t.out_shift


class _Workspace:
    """Buffers for blocks of m frames, carved from flat arrays that only grow (reused across
    calls: no page faults, fewer temporaries). Attributes are views shaped for the current m."""

    def __init__(self, plan: _Plan, cfg: FeatureConfig):
        self.plan, self.cfg, self.capacity, self.m = plan, cfg, 0, -1

    def resize(self, m: int) -> "_Workspace":
        if m == self.m:
            return self
        nc, h, nb = self.plan.nc, self.plan.half, self.cfg.num_bins
        int_sizes = {"x16": 2 * nc, "z0": 2 * nc, "z1": 2 * nc, "t": 6 * (nc // 4), "t2": 6 * (nc // 4),
                     "u": 2 * (nc // 4), "v": 2 * (nc // 4), "ym": 2 * (h + 1), "ab": 6 * (h + 1),
                     "spec": 2 * nb}
        float_sizes = {"power": nb}
        if m > self.capacity:
            self.capacity = max(m, min(2 * self.capacity, _block_frames(self.cfg)))
            self._int = np.empty(sum(int_sizes.values()) * self.capacity, dtype=np.int32)
            self._float = np.empty(sum(float_sizes.values()) * self.capacity)
        views = {}
        for flat, sizes in ((self._int, int_sizes), (self._float, float_sizes)):
            pos = 0
            for name, rows in sizes.items():
                views[name] = flat[pos : pos + rows * m]
                pos += rows * m
        self.x = views["x16"].view(np.int16)[: 2 * nc * m].reshape(2 * nc, m)  # samples in FFT order
        self.z = [views["z0"].reshape(2, nc, m), views["z1"].reshape(2, nc, m)]
        self.t, self.t2, self.u, self.v = views["t"], views["t2"], views["u"], views["v"]
        self.ym = views["ym"].reshape(2, h + 1, m)
        self.ab = views["ab"].reshape(6, h + 1, m)
        self.spec = views["spec"].reshape(2, nb, m)
        self.power = views["power"].reshape(nb, m)
        self.m = m
        return self


_local = threading.local()


def _plan_and_workspace(cfg: FeatureConfig, m: int) -> tuple[_Plan, _Workspace]:
    """This thread's plan and workspace for cfg, the workspace shaped for m frames."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    entry = cache.get(cfg)
    if entry is None:
        if len(cache) >= 4:  # a few configs per thread at most; drop the oldest
            del cache[next(iter(cache))]
        plan = _Plan(cfg)
        entry = cache[cfg] = (plan, _Workspace(plan, cfg))
    return entry[0], entry[1].resize(m)


def _fft(ws: _Workspace, plan: _Plan) -> np.ndarray:
    """Step 4 on ws.z[0] (filled, digit-reversed): returns Y, (2, Nc, m) int32 (unshifted last stage)."""
    m, nc = ws.m, plan.nc
    src, dst = ws.z
    last = len(plan.stages) - 1
    for i, (r, q, c, s) in enumerate(plan.stages):
        g = nc // (r * q)
        a = src.reshape(2, g, r, q, m)
        y = dst.reshape(2, g, r, q, m)
        if r == 2:  # first stage only: twiddle 1
            a0, a1 = a[:, :, 0], a[:, :, 1]
            a0 += 1
            np.add(a0, a1, out=y[:, :, 0])
            np.subtract(a0, a1, out=y[:, :, 1])
            dst >>= 1
        else:
            if c is None:  # q == 1: every twiddle is W^0 = 1, and (a 2^15 + 2^14) >> 15 == a
                t = a[:, :, 1:]
            else:
                t = ws.t.reshape(2, g, 3, q, m)
                np.multiply(a[:, :, 1:], c, out=t)  # (a_re c, a_im c)
                sw = ws.t2.reshape(2, g, 3, q, m)
                np.multiply(a[::-1, :, 1:], s, out=sw)  # (a_im s, -a_re s)
                t += sw
                t += 1 << 14
                t >>= 15
            a0 = a[:, :, 0]
            t1, t2, t3 = t[:, :, 0], t[:, :, 1], t[:, :, 2]
            if i != last:
                a0 += 2  # rounding of the final >> 2, shared by all four outputs
            s02 = ws.u.reshape(2, g, q, m)
            d02 = ws.v.reshape(2, g, q, m)
            np.add(a0, t2, out=s02)
            np.subtract(a0, t2, out=d02)
            s13 = np.add(t1, t3, out=t2)  # t2 is used up: reuse its slot
            d13 = np.subtract(t1, t3, out=t1)
            np.add(s02, s13, out=y[:, :, 0])
            np.subtract(s02, s13, out=y[:, :, 2])
            np.add(d02[0], d13[1], out=y[0, :, 1])  # y1 = d02 - i d13
            np.subtract(d02[1], d13[0], out=y[1, :, 1])
            np.subtract(d02[0], d13[1], out=y[0, :, 3])  # y3 = d02 + i d13
            np.add(d02[1], d13[0], out=y[1, :, 3])
            if i != last:
                dst >>= 2
        src, dst = dst, src
    return src


def _spectrum_t(frames: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-5 with the frame axis last.

    frames : (..., window_len) int16 (any strides), m = prod(frames.shape[:-1]) >= 1 frames
    returns (re, im, shift): (num_bins, m) int32 spectra X = DFT(w) / N (views of a workspace
    buffer: valid until the next call) and (m,) int32 normalization shifts s
    """
    m = frames.size // cfg.window_len
    plan, ws = _plan_and_workspace(cfg, m)
    # Gather the samples straight into FFT order (frames last), then window there: the window
    # is permuted the same way and is 0 on the padding slots (which read sample 0).
    samples_first = np.ascontiguousarray(np.moveaxis(frames, -1, 0)).reshape(cfg.window_len, m)
    np.take(samples_first, plan.gather_clipped, axis=0, out=ws.x)
    x = ws.z[0].reshape(2 * plan.nc, m)
    np.multiply(ws.x, plan.window_gathered, out=x)
    x += 1 << 14
    x >>= 15
    peak = np.maximum(x.max(axis=0), -x.min(axis=0))
    exp = np.frexp(peak.astype(np.float64))[1] - 1  # floor(log2 peak) for peak > 0
    shift = np.where(peak > 0, np.maximum(14 - exp, 0), 0).astype(np.int32)
    x <<= shift
    y = _fft(ws, plan)
    h, nc = plan.half, plan.nc
    yk = y[:, : h + 1]
    ym = np.take(y, plan.kmirror, axis=1, out=ws.ym)
    a, b, v = ws.ab[:2], ws.ab[2:4], ws.ab[4:]  # int32
    np.add(yk[0], ym[0], out=a[0])
    np.subtract(yk[1], ym[1], out=a[1])
    np.subtract(yk[0], ym[0], out=b[0])
    np.add(yk[1], ym[1], out=b[1])
    b += 4
    b >>= 3
    tmp = ws.ym[0]  # ym is used up
    np.multiply(b[1], plan.split_cos, out=v[0])  # V = -i W B'
    np.multiply(b[0], plan.split_sin, out=tmp)
    v[0] -= tmp
    np.multiply(b[0], plan.split_cos, out=v[1])
    np.multiply(b[1], plan.split_sin, out=tmp)
    v[1] += tmp
    np.negative(v[1], out=v[1])
    v += 1 << 11  # U = (V + 2^11) >> 12
    v >>= 12
    a += 8  # rounding of the final >> 4
    xs = ws.spec
    np.add(a[0], v[0], out=xs[0, : h + 1])
    np.add(a[1], v[1], out=xs[1, : h + 1])
    np.subtract(a[0], v[0], out=xs[0, nc : h - 1 : -1])  # X[Nc - k], k = 0..h
    np.subtract(v[1], a[1], out=xs[1, nc : h - 1 : -1])
    xs[1, nc : h - 1 : -1] += 16  # (U_im - A_im + 8) >> 4, with A_im already holding + 8
    xs >>= 4
    return xs[0], xs[1], shift


def _band_energies_t(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Step 6, exact in float64 (any summation order). power: (num_bins, m) -> (num_bands, m) float64."""
    m = power.shape[1]
    if m < 16:  # few frames: one small matrix product beats a call per band
        return cfg.tables.mel_dense.T @ power
    plan, _ = _plan_and_workspace(cfg, m)
    energy = np.empty((cfg.num_bands, m))
    for b, (lo, w) in enumerate(plan.bands):
        np.dot(w, power[lo : lo + w.size], out=energy[b])
    return energy


def _log_to_int8_t(energy: np.ndarray, shift: np.ndarray, plan: "_Plan") -> np.ndarray:
    """Steps 7-8 in float64 (every value an integer < 2^53: exact).

    energy: (F, m) float64 integers >= 0; shift: (m,) int32 -> (F, m) int8
    """
    mant, e1 = np.frexp(energy)  # energy = mant 2^e1, mant in [0.5, 1): e = e1 - 1
    idx = mant * (1 << (LOG_INDEX_BITS + 1))
    idx -= 1 << LOG_INDEX_BITS  # the 8 bits after the leading one; -256 for energy 0
    acc = plan.frac_mult[idx.astype(np.intp)]  # entry -256 is -1e30: energy 0 saturates to -128
    acc += e1 * plan.octave_mult
    acc += plan.acc_const - plan.shift_mult * shift  # (-1 - 2 s) 2^10 mult - offset + 2^19
    acc *= plan.acc_scale
    np.floor(acc, out=acc)
    np.clip(acc, 0, 255, out=acc)  # q + 128
    return (acc.astype(np.uint8) ^ np.uint8(128)).view(np.int8)  # u - 128 as int8


def fft_frames(frames: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-5 for frames of (pre-emphasized) samples (for tests and inspection).

    frames : (M, window_len) int16
    returns (re, im, shift): (M, num_bins) int32 spectra X = DFT(w) / N and (M,) int32 shifts s
    """
    re = np.empty((frames.shape[0], cfg.num_bins), dtype=np.int32)
    im = np.empty_like(re)
    shift = np.empty(frames.shape[0], dtype=np.int32)
    step = _block_frames(cfg)
    for lo in range(0, frames.shape[0], step):
        hi = min(lo + step, frames.shape[0])
        r, i, shift[lo:hi] = _spectrum_t(frames[lo:hi], cfg)
        re[lo:hi], im[lo:hi] = r.T, i.T
    return re, im, shift


def _features_block(frames: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Steps 2-8 for one block: frames (..., window_len) int16, at most _block_frames(cfg) of them
    (any strides: a sliding-window view is read in place) -> (m, num_bands) int8."""
    re, im, shift = _spectrum_t(frames, cfg)
    np.square(re, out=re)
    np.square(im, out=im)
    plan, ws = _plan_and_workspace(cfg, shift.size)
    np.add(re, im, out=ws.power)  # < 2^31: exact in int32 and float64
    energy = _band_energies_t(ws.power, cfg)
    return _log_to_int8_t(energy, shift, plan).T


def features_from_frames(frames: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Steps 2-8 for frames of (pre-emphasized) samples.

    frames : (M, window_len) int16 (any strides)
    returns (M, num_bands) int8
    """
    out = np.empty((frames.shape[0], cfg.num_bands), dtype=np.int8)
    step = _block_frames(cfg)
    for lo in range(0, frames.shape[0], step):
        blk = frames[lo : lo + step]
        out[lo : lo + len(blk)] = _features_block(blk, cfg)
    return out


def _as_int16(audio, what: str = "audio") -> np.ndarray:
    a = np.asarray(audio)
    if a.dtype != np.int16:
        raise AudioError(f"{what}: expected int16 PCM samples, got dtype {a.dtype} (use audio.to_int16)")
    return a


def compute_features(audio: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """Integer features of whole clips (each clip starts from a reset frontend).

    audio : (N, S) or (S,) int16 PCM at cfg.sample_rate
    returns (N, T, F) or (T, F) int8 with T = cfg.num_frames(S), F = cfg.num_bands
    """
    cfg = FeatureConfig() if cfg is None else cfg
    if not isinstance(cfg, FeatureConfig):
        raise EdgekwsError(f"cfg: expected a FeatureConfig (a bundle's is FeatureConfig.from_dict(manifest"
                           f"['feature_config'])), got {type(cfg).__name__}")
    a = _as_int16(audio)
    if a.ndim not in (1, 2):
        raise AudioError(f"audio: expected shape (S,) or (N, S), got {a.shape}")
    if a.ndim == 2 and len(a) and 0 < a.shape[1] < cfg.window_len:   # e.g. stereo (S, 2) read as S clips
        raise AudioError(f"audio: shape {a.shape} reads as {a.shape[0]} clips of {a.shape[1]} samples, shorter "
                         f"than one window ({cfg.window_len}); give mono (S,) or clips (N, S)")
    single = a.ndim == 1
    a2 = a[None] if single else a
    n_clips, n_samples = a2.shape
    n_frames = cfg.num_frames(n_samples)
    out = np.empty((n_clips, n_frames, cfg.num_bands), dtype=np.int8)
    if n_frames and n_clips:
        # Blocks of whole clips (or of frames of one long clip), read through sliding-window
        # views: the frames are never copied out of the audio.
        step = _block_frames(cfg)
        clips_per_block = max(1, step // n_frames)
        for lo in range(0, n_clips, clips_per_block):
            x = preemphasize(a2[lo : lo + clips_per_block], cfg.tables.preemph_q15)
            win = np.lib.stride_tricks.sliding_window_view(x, cfg.window_len, axis=1)[:, :: cfg.hop_len][:, :n_frames]
            if clips_per_block > 1:
                out[lo : lo + len(x)] = _features_block(win, cfg).reshape(len(x), n_frames, cfg.num_bands)
            else:
                for f in range(0, n_frames, step):
                    out[lo, f : f + step] = _features_block(win[0, f : f + step], cfg)
    return out[0] if single else out

"""The one requantization rule of edgekws int8 inference (numpy version; C: firmware/src/kernels.c
`ekws_requantize`, ONNX: edgekws/export/onnx.py `_requant_nodes`).

    x = clamp(acc + bias, INT32_MIN, INT32_MAX)        acc, bias : int32   (sum in int64)
    p = x * M                                           M         : int32 in [2^30, 2^31) (or smaller
                                                                    when n was capped at 62), |p| < 2^62
    r = sign(p) * ((|p| + 2^(n-1)) >> n)                n         : right shift in [1, 62]
    y = clamp(r + zp_out, act_min, act_max) as int8     ReLU / ReLU6 are this clamp

i.e. round(x * M / 2^n) with ties rounded AWAY FROM ZERO. Why this rule: it is exact in 64-bit integer
arithmetic (no overflow: |x| <= 2^31, M < 2^31, 2^(n-1) <= 2^61), and ONNX can express it bit for
bit with integer operators only — p + Sign(p) * 2^(n-1) followed by int64 Div, which truncates
toward zero — whereas onnxruntime's QLinearConv / QDQ path rescales in float32 (round half to
even) and cannot reproduce a fixed-point multiplier in general. The real multiplier
m = s_in * s_w / s_out is encoded as M / 2^n with M = round(f * 2^31), m = f * 2^e, f in [0.5, 1).
"""

from __future__ import annotations

import math

import numpy as np

from edgekws.errors import EdgekwsError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MIN_SHIFT, MAX_SHIFT = 1, 62


def quantize_multiplier(m: float, what: str = "multiplier") -> tuple[int, int]:
    """Real multiplier m >= 0 -> (M, n) with m ~= M / 2^n, M int32 in [2^30, 2^31), n in [1, 62].

    Multipliers below 2^-62 lose mantissa bits (M shrinks, n stays 62); m = 0 gives (0, 1).
    Raises EdgekwsError naming `what` when m >= 2^30 or is not finite.
    """
    m = float(m)
    if not math.isfinite(m) or m < 0:
        raise EdgekwsError(f"{what}: requantization multiplier {m!r} is not a finite value >= 0")
    if m == 0.0:
        return 0, MIN_SHIFT
    f, e = math.frexp(m)  # m = f * 2^e, 0.5 <= f < 1
    mult = int(round(f * (1 << 31)))
    n = 31 - e
    if mult == 1 << 31:
        mult //= 2
        n -= 1
    if n < MIN_SHIFT:
        raise EdgekwsError(f"{what}: requantization multiplier {m:.6g} is too large (must be < 2^30); "
                           "the layer's scales are inconsistent")
    if n > MAX_SHIFT:
        extra = n - MAX_SHIFT
        mult = (mult + (1 << (extra - 1))) >> extra if extra < 63 else 0
        n = MAX_SHIFT
    return mult, n


def rounding_shift(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """round(p / 2^n), ties away from zero. p int64 (|p| < 2^62), n int64 in [1, 62], broadcastable."""
    p = np.asarray(p, np.int64)
    n = np.asarray(n, np.int64)
    half = np.left_shift(np.int64(1), n - 1)
    return np.where(p >= 0, (p + half) >> n, -((-p + half) >> n))


def requantize(acc: np.ndarray, bias, multiplier, shift, zp_out: int, act_min: int, act_max: int) -> np.ndarray:
    """The rule above, vectorized. acc (..., C) int32/int64; bias, multiplier, shift (C,) or scalars
    broadcasting over the last axis -> (..., C) int8."""
    x = np.asarray(acc, np.int64) + np.asarray(bias, np.int64)
    np.clip(x, INT32_MIN, INT32_MAX, out=x)
    r = rounding_shift(x * np.asarray(multiplier, np.int64), np.asarray(shift, np.int64))
    return np.clip(r + np.int64(zp_out), act_min, act_max).astype(np.int8)


def requantize_scalar(acc: int, bias: int, multiplier: int, shift: int, zp_out: int,
                      act_min: int, act_max: int) -> int:
    """The rule in plain Python integers (unbounded): an independent oracle for the tests."""
    x = min(max(int(acc) + int(bias), INT32_MIN), INT32_MAX)
    p = x * int(multiplier)
    half = 1 << (int(shift) - 1)
    r = (abs(p) + half) >> int(shift)
    r = -r if p < 0 else r
    return min(max(r + int(zp_out), int(act_min)), int(act_max))

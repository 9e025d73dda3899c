"""Padding rules shared by the 2-D layers: "valid", "same" (TensorFlow's rule) or explicit."""

from __future__ import annotations

import numpy as np

from edgekws.errors import is_int


def _pair(v, what: str) -> tuple[int, int]:
    if is_int(v):
        v = (int(v), int(v))
    if (not isinstance(v, (tuple, list)) or len(v) != 2
            or not all(is_int(i) and i >= 1 for i in v)):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {v!r}")
    return int(v[0]), int(v[1])


def normalize_padding(padding):
    """Return "valid", "same" or ((top, bottom), (left, right)) from the accepted forms:
    "valid" | "same" | p | (ph, pw) | ((top, bottom), (left, right))."""
    if padding in ("valid", "same"):
        return padding
    if is_int(padding) and padding >= 0:
        return ((int(padding),) * 2,) * 2
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(is_int(p) and p >= 0 for p in padding):
            return ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and
               all(is_int(i) and i >= 0 for i in p) for p in padding):
            return tuple((int(p[0]), int(p[1])) for p in padding)
    raise ValueError(f"padding must be 'valid', 'same', an int >= 0, (ph, pw) or "
                     f"((top, bottom), (left, right)), got {padding!r}")


def resolve(padding, in_hw, kernel, stride):
    """Explicit pads and output size for one 2-D window op.

    Returns ((top, bottom), (left, right)), (out_h, out_w). "same" gives out = ceil(in / stride)
    with the extra row/column of an odd total at the bottom/right, as TensorFlow does.
    """
    pads = []
    for i in range(2):
        n, k, s = int(in_hw[i]), kernel[i], stride[i]
        if padding == "valid":
            pads.append((0, 0))
        elif padding == "same":
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        else:
            pads.append(tuple(padding[i]))
    out = tuple((int(in_hw[i]) + sum(pads[i]) - kernel[i]) // stride[i] + 1 for i in range(2))
    if min(out) < 1:
        raise ValueError(f"window {kernel} with stride {stride} and padding {pads} does not fit an "
                         f"input of {tuple(in_hw)}")
    return tuple(pads), out


def pad_nhwc(x: np.ndarray, pads, value=0.0) -> np.ndarray:
    """x (N, H, W, C) -> padded copy, or x itself when all pads are 0."""
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    out = np.full((x.shape[0], x.shape[1] + t + b, x.shape[2] + l + r, x.shape[3]), value, x.dtype)
    out[:, t:t + x.shape[1], l:l + x.shape[2]] = x
    return out


def crop_nhwc(xp: np.ndarray, pads, hw) -> np.ndarray:
    """Inverse of pad_nhwc on a gradient: the (N, H, W, C) interior of xp."""
    (t, _), (l, _) = pads
    if xp.shape[1] == hw[0] and xp.shape[2] == hw[1]:
        return xp
    return xp[:, t:t + hw[0], l:l + hw[1]]


def tap(xp: np.ndarray, i: int, j: int, out_hw, stride) -> np.ndarray:
    """View of the padded input seen by kernel tap (i, j): (N, out_h, out_w, C)."""
    return xp[:, i:i + stride[0] * (out_hw[0] - 1) + 1:stride[0],
              j:j + stride[1] * (out_hw[1] - 1) + 1:stride[1]]

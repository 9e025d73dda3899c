"""Pooling over NHWC batches: AvgPool2D, MaxPool2D (loops over window taps only) and GlobalAvgPool."""

from __future__ import annotations

import numpy as np

from edgekws.nn import padding as pad
from edgekws.nn.layer import Layer, register


class _Pool2D(Layer):
    """Shared geometry: pool_size, stride (default = pool_size), padding as in Conv2D."""

    def __init__(self, pool_size, stride=None, padding="valid", name: str | None = None):
        super().__init__(name)
        kind = type(self).__name__
        self.pool_size = pad._pair(pool_size, f"{kind}: pool_size")
        self.stride = pad._pair(stride if stride is not None else pool_size, f"{kind}: stride")
        self.padding = pad.normalize_padding(padding)
        if not isinstance(self.padding, str) and any(max(p) >= k for p, k in zip(self.padding, self.pool_size)):
            # a window of padding only: -inf from MaxPool2D (and then inf logits), zeros from AvgPool2D
            raise ValueError(f"{kind}: padding {padding!r} must be smaller than pool_size {self.pool_size} "
                             "on every side")

    def _hyper(self):
        p = self.padding if isinstance(self.padding, str) else [list(q) for q in self.padding]
        return {"pool_size": list(self.pool_size), "stride": list(self.stride), "padding": p}

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__}: input must be (N, H, W, C), got per-example "
                             f"shape {tuple(input_shape)}")
        _, (ho, wo) = pad.resolve(self.padding, input_shape[:2], self.pool_size, self.stride)
        return (ho, wo, int(input_shape[2]))

    def _build(self, rng):
        self._pads, self._out_hw = pad.resolve(self.padding, self.input_shape[:2], self.pool_size, self.stride)

    def _taps(self):
        return [(i, j) for i in range(self.pool_size[0]) for j in range(self.pool_size[1])]


@register
class AvgPool2D(_Pool2D):
    """Mean over each window: x (N, H, W, C) -> (N, Ho, Wo, C). Padded cells count as zeros."""

    def forward(self, x, training=False):
        self._check_input(x)
        self._n = x.shape[0]
        xp = pad.pad_nhwc(x, self._pads)
        y = np.zeros((x.shape[0], *self._out_hw, x.shape[3]), x.dtype)
        for i, j in self._taps():
            y += pad.tap(xp, i, j, self._out_hw, self.stride)
        y *= x.dtype.type(1.0 / (self.pool_size[0] * self.pool_size[1]))
        return y

    def backward(self, dy):
        h, w, c = self.input_shape
        (t, b), (l, r) = self._pads
        dxp = np.zeros((self._n, h + t + b, w + l + r, c), dy.dtype)
        g = dy * dy.dtype.type(1.0 / (self.pool_size[0] * self.pool_size[1]))
        for i, j in self._taps():
            pad.tap(dxp, i, j, self._out_hw, self.stride)[...] += g
        return np.ascontiguousarray(pad.crop_nhwc(dxp, self._pads, (h, w)))


@register
class MaxPool2D(_Pool2D):
    """Max over each window: x (N, H, W, C) -> (N, Ho, Wo, C). Padded cells are -inf; the
    gradient goes to the first maximal tap of each window."""

    def forward(self, x, training=False):
        self._check_input(x)
        self._n = x.shape[0]
        xp = pad.pad_nhwc(x, self._pads, value=-np.inf)
        y = np.full((x.shape[0], *self._out_hw, x.shape[3]), -np.inf, x.dtype)
        arg = np.zeros(y.shape, np.int32)
        for k, (i, j) in enumerate(self._taps()):
            v = pad.tap(xp, i, j, self._out_hw, self.stride)
            better = v > y
            y[better] = v[better]
            arg[better] = k
        self._arg = arg
        return y

    def backward(self, dy):
        h, w, c = self.input_shape
        (t, b), (l, r) = self._pads
        dxp = np.zeros((self._n, h + t + b, w + l + r, c), dy.dtype)
        for k, (i, j) in enumerate(self._taps()):
            pad.tap(dxp, i, j, self._out_hw, self.stride)[...] += dy * (self._arg == k)
        return np.ascontiguousarray(pad.crop_nhwc(dxp, self._pads, (h, w)))


@register
class GlobalAvgPool(Layer):
    """Mean over all positions: x (N, H, W, C) (or any (N, ..., C)) -> (N, C).

    taps : names of earlier layers whose outputs are also averaged over their positions and
           appended, in order: (N, C + C_tap1 + ...). A multi-layer embedding: the pooled output
           of an earlier block keeps finer sound detail than the last block alone, which is what
           last-layer retraining on a new language needs. Sequential feeds the tapped outputs in
           (`tap_values`) and routes their gradients back (`tap_grads`).
    """

    def __init__(self, name: str | None = None, taps=()):
        super().__init__(name)
        if isinstance(taps, str) or not all(isinstance(t, str) and t for t in taps):
            raise ValueError(f"GlobalAvgPool: taps must be a list of layer names, got {taps!r}")
        self.taps = tuple(taps)
        self.tap_shapes: tuple = ()   # per-example shapes of the tapped outputs (set by Sequential)
        self.tap_values: list = []    # the tapped outputs of the current forward (set by Sequential)
        self.tap_grads: list = []     # their gradients after backward

    def _hyper(self) -> dict:
        return {"taps": list(self.taps)} if self.taps else {}

    def output_shape(self, input_shape):
        for shape in (input_shape, *self.tap_shapes):
            if len(shape) < 2:
                raise ValueError(f"GlobalAvgPool: input must be (N, ..., C), got per-example shape {tuple(shape)}")
        if len(self.tap_shapes) != len(self.taps):
            raise ValueError(f"GlobalAvgPool: taps {list(self.taps)} need the tapped shapes (build it in a Sequential)")
        return (int(input_shape[-1]) + sum(int(s[-1]) for s in self.tap_shapes),)

    @staticmethod
    def _mean(x):
        x3 = x.reshape(x.shape[0], -1, x.shape[-1])
        return np.einsum("npc->nc", x3) * x.dtype.type(1.0 / x3.shape[1])

    def forward(self, x, training=False):
        self._check_input(x)
        if len(self.tap_values) != len(self.taps):
            raise ValueError(f"{self.name}: taps {list(self.taps)} were not fed (run it inside its Sequential)")
        self._shapes = [x.shape] + [t.shape for t in self.tap_values]
        y = self._mean(x)
        if self.taps:
            y = np.concatenate([y] + [self._mean(np.asarray(t, x.dtype)) for t in self.tap_values], axis=1)
        return y

    def backward(self, dy):
        grads, start = [], 0
        for shape in self._shapes:
            n, c = shape[0], shape[-1]
            spatial = int(np.prod(shape[1:-1]))
            g = dy[:, start:start + c] * dy.dtype.type(1.0 / spatial)
            grads.append(np.broadcast_to(g[:, None, :], (n, spatial, c)).reshape(shape))
            start += c
        self.tap_grads = grads[1:]
        return grads[0]

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
    """Mean over all positions: x (N, H, W, C) (or any (N, ..., C)) -> (N, C)."""

    def output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"GlobalAvgPool: input must be (N, ..., C), got per-example shape {tuple(input_shape)}")
        return (int(input_shape[-1]),)

    def forward(self, x, training=False):
        self._check_input(x)
        self._shape = x.shape
        x3 = x.reshape(x.shape[0], -1, x.shape[-1])
        return np.einsum("npc->nc", x3) * x.dtype.type(1.0 / x3.shape[1])

    def backward(self, dy):
        n, c = dy.shape
        spatial = int(np.prod(self._shape[1:-1]))
        g = dy * dy.dtype.type(1.0 / spatial)
        return np.broadcast_to(g[:, None, :], (n, spatial, c)).reshape(self._shape)

"""Depthwise 2-D convolution (one kh x kw filter per channel, depth multiplier 1) over NHWC.

Weights are stored [kh, kw, C] — the layout TFLite and CMSIS-NN use for depthwise kernels
(their [1, kh, kw, C] without the leading 1), so export never transposes.

The layer is memory-bound: it runs as einsum over a sliding-window view, one cache-sized block
of the batch at a time, the blocks shared among the engine's threads (see parallel.py).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgekws.nn import padding as pad
from edgekws.nn.layer import Layer, he_normal, register
from edgekws.nn.parallel import batch_blocks, run_blocks


@register
class DepthwiseConv2D(Layer):
    """DepthwiseConv2D(kernel_size, stride, padding): x (N, H, W, C) -> (N, Ho, Wo, C).

    params: weight (kh, kw, C), bias (C,)
    """

    out_channel_axis = 2

    def __init__(self, kernel_size, stride=1, padding="valid", use_bias: bool = True,
                 name: str | None = None):
        super().__init__(name)
        self.kernel_size = pad._pair(kernel_size, "DepthwiseConv2D: kernel_size")
        self.stride = pad._pair(stride, "DepthwiseConv2D: stride")
        self.padding = pad.normalize_padding(padding)
        self.use_bias = bool(use_bias)

    def _hyper(self):
        p = self.padding if isinstance(self.padding, str) else [list(q) for q in self.padding]
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": p, "use_bias": self.use_bias}

    def _geometry(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError("DepthwiseConv2D: input must be (N, H, W, C), got per-example shape "
                             f"{tuple(input_shape)}")
        return pad.resolve(self.padding, input_shape[:2], self.kernel_size, self.stride)

    def output_shape(self, input_shape):
        _, (ho, wo) = self._geometry(input_shape)
        return (ho, wo, int(input_shape[2]))

    def macs(self, input_shape):
        ho, wo, c = self.output_shape(input_shape)
        return ho * wo * c * self.kernel_size[0] * self.kernel_size[1]

    def _build(self, rng):
        kh, kw = self.kernel_size
        c = self.input_shape[2]
        self._add_param("weight", he_normal(rng, (kh, kw, c), kh * kw, self.dtype))
        if self.use_bias:
            self._add_param("bias", np.zeros(c))
        self._pads, self._out_hw = self._geometry(self.input_shape)

    def _blocks(self, n):
        return batch_blocks(n, int(np.prod(self.input_shape)) * self.dtype.itemsize)

    def forward(self, x, training=False):
        """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
        self._check_input(x)
        self._x = x
        w = self.params["weight"]
        y = np.empty((x.shape[0], *self.output_shape(self.input_shape)), x.dtype)

        def block(sl):
            np.einsum("nhwcij,ijc->nhwc", self._windows(pad.pad_nhwc(x[sl], self._pads)), w, out=y[sl])
            if self.use_bias:
                y[sl] += self.params["bias"]

        run_blocks(block, self._blocks(x.shape[0]))
        return y

    def _windows(self, xp):
        """(n, Hp, Wp, C) -> strided view (n, Ho, Wo, C, kh, kw) of every output's window."""
        v = sliding_window_view(xp, self.kernel_size, axis=(1, 2))
        return v[:, ::self.stride[0], ::self.stride[1]][:, :self._out_hw[0], :self._out_hw[1]]

    def _transposed_pads(self):
        """Pads of dy such that dx is the stride-1 correlation of dy with the flipped kernel;
        None when that does not apply (stride > 1 or a pad wider than kernel - 1)."""
        if self.stride != (1, 1):
            return None
        pads = tuple((k - 1 - p[0], k - 1 - p[1]) for k, p in zip(self.kernel_size, self._pads))
        return pads if min(min(p) for p in pads) >= 0 else None

    def backward(self, dy):
        """dy (N, Ho, Wo, C) -> dx (N, H, W, C); accumulates weight (kh, kw, C) and bias (C,)."""
        x, w = self._x, self.params["weight"]
        kh, kw = self.kernel_size
        want_dx = self.need_input_grad
        dx = np.empty_like(x) if want_dx else None
        flipped = np.ascontiguousarray(w[::-1, ::-1])
        tpads = self._transposed_pads()

        def block(sl):
            dyb = dy[sl]
            dw = db = None
            if self.trainable:
                dw = np.einsum("nhwcij,nhwc->ijc", self._windows(pad.pad_nhwc(x[sl], self._pads)), dyb)
                db = np.einsum("nhwc->c", dyb) if self.use_bias else None
            if want_dx and tpads is not None:  # gather: a forward pass over padded dy
                dyp = pad.pad_nhwc(dyb, tpads)
                np.einsum("nhwcij,ijc->nhwc", sliding_window_view(dyp, self.kernel_size, axis=(1, 2)),
                          flipped, out=dx[sl])
            elif want_dx:  # scatter every tap's contribution into a padded gradient
                dxp = np.zeros((dyb.shape[0], *(s + sum(p) for s, p in zip(x.shape[1:3], self._pads)),
                                x.shape[3]), x.dtype)
                for i in range(kh):
                    for j in range(kw):
                        pad.tap(dxp, i, j, self._out_hw, self.stride)[...] += dyb * w[i, j]
                dx[sl] = pad.crop_nhwc(dxp, self._pads, x.shape[1:3])
            return dw, db

        parts = run_blocks(block, self._blocks(x.shape[0]))
        if self.trainable:
            for dw, db in parts:  # summed in block order: the same result for any thread count
                self.grads["weight"] += dw
                if self.use_bias:
                    self.grads["bias"] += db
        return dx

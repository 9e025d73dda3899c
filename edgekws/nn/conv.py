"""2-D convolution over NHWC batches by im2col + one BLAS matrix product.

Weights are stored [out, kh, kw, in] (the export layout). A 1x1 stride-1 unpadded convolution
(pointwise) needs no im2col: the NHWC batch already is the (N*H*W, C) matrix. With few input
channels (the first layer's one) im2col is written tap-major, (kh*kw*C, N*Ho*Wo): its copy then
moves whole output rows instead of C values at a time (measured 3x faster for C = 1), and BLAS
takes the transposed matrix as it is. The products run per cache-sized block of the batch on
the engine's threads (keep BLAS itself at 1 thread when the engine uses several, e.g.
OPENBLAS_NUM_THREADS=1: two thread pools fighting over two cores were measured 50x slower).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgekws.errors import is_int
from edgekws.nn import padding as pad
from edgekws.nn.layer import Layer, he_normal, register
from edgekws.nn.parallel import batch_blocks, run_blocks

_TAP_MAJOR_BELOW_C = 16  # input channels below which im2col is tap-major (measured: 1..16 faster, 32 slower)


@register
class Conv2D(Layer):
    """Conv2D(filters, kernel_size, stride, padding): x (N, H, W, C) -> (N, Ho, Wo, filters).

    kernel_size, stride : int or (h, w)
    padding             : "valid" | "same" | p | (ph, pw) | ((top, bottom), (left, right))
    params: weight (filters, kh, kw, C), bias (filters,)
    """

    out_channel_axis = 0

    def __init__(self, filters: int, kernel_size, stride=1, padding="valid", use_bias: bool = True,
                 name: str | None = None):
        super().__init__(name)
        if not is_int(filters, numpy=False) or filters < 1:
            raise ValueError(f"Conv2D: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = pad._pair(kernel_size, "Conv2D: kernel_size")
        self.stride = pad._pair(stride, "Conv2D: stride")
        self.padding = pad.normalize_padding(padding)
        self.use_bias = bool(use_bias)

    def _hyper(self):
        p = self.padding if isinstance(self.padding, str) else [list(q) for q in self.padding]
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": p, "use_bias": self.use_bias}

    def _geometry(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D: input must be (N, H, W, C), got per-example shape {tuple(input_shape)}")
        return pad.resolve(self.padding, input_shape[:2], self.kernel_size, self.stride)

    def output_shape(self, input_shape):
        _, (ho, wo) = self._geometry(input_shape)
        return (ho, wo, self.filters)

    def macs(self, input_shape):
        ho, wo, _ = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        return ho * wo * self.filters * kh * kw * int(input_shape[2])

    def _build(self, rng):
        kh, kw = self.kernel_size
        c = self.input_shape[2]
        self._add_param("weight", he_normal(rng, (self.filters, kh, kw, c), kh * kw * c, self.dtype))
        if self.use_bias:
            self._add_param("bias", np.zeros(self.filters))
        self._pads, self._out_hw = self._geometry(self.input_shape)
        self._pointwise = self.kernel_size == (1, 1) and self.stride == (1, 1) and self._pads == ((0, 0), (0, 0))
        self._tap_major = not self._pointwise and c < _TAP_MAJOR_BELOW_C

    def _im2col(self, x):
        """x (N, H, W, C) -> cols (N, Ho*Wo, kh*kw*C), or tap-major (kh*kw*C, N, Ho*Wo)."""
        n, c = x.shape[0], x.shape[3]
        if self._pointwise:
            return x.reshape(n, -1, c)
        (kh, kw), (ho, wo) = self.kernel_size, self._out_hw
        xp = pad.pad_nhwc(x, self._pads)
        if self._tap_major:  # one copy of the window view, whole output rows at a time
            windows = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::self.stride[0], ::self.stride[1]]
            cols = np.empty((kh, kw, c, n, ho, wo), x.dtype)
            np.copyto(cols, windows[:, :ho, :wo].transpose(4, 5, 3, 0, 1, 2))
            return cols.reshape(kh * kw * c, n, ho * wo)
        cols = np.empty((n, ho, wo, kh, kw, c), x.dtype)
        for i in range(kh):  # loop over kernel taps only; each copy moves the whole batch
            for j in range(kw):
                cols[:, :, :, i, j, :] = pad.tap(xp, i, j, self._out_hw, self.stride)
        return cols.reshape(n, ho * wo, kh * kw * c)

    def _cols_block(self, sl: slice) -> np.ndarray:
        """The im2col rows of examples sl as a (rows, kh*kw*C) matrix (a transposed view when
        tap-major)."""
        if self._tap_major:
            return self._cols[:, sl].reshape(self._cols.shape[0], -1).T
        return self._cols[sl].reshape(-1, self._cols.shape[2])

    def _weight_grad(self, sl: slice, dyb: np.ndarray) -> np.ndarray:
        """dy^T @ cols of examples sl, (filters, kh*kw*C); tap-major as (cols^T @ dy)^T, the
        product order that reads both operands as stored (measured faster)."""
        if self._tap_major:
            return (self._cols[:, sl].reshape(self._cols.shape[0], -1) @ dyb).T
        return dyb.T @ self._cols_block(sl)

    def _blocks(self, n):
        return batch_blocks(n, int(np.prod(self.input_shape)) * self.dtype.itemsize)

    def forward(self, x, training=False):
        """x (N, H, W, C) -> y (N, Ho, Wo, filters)."""
        self._check_input(x)
        n = self._n = x.shape[0]
        self._cols = self._im2col(x)
        w2t = self.params["weight"].reshape(self.filters, -1).T
        y = np.empty((n, *self._out_hw, self.filters), x.dtype)
        y3 = y.reshape(n, -1, self.filters)

        def block(sl):  # one matrix product per cache-sized block, shared among the threads
            out = y3[sl].reshape(-1, self.filters)
            np.matmul(self._cols_block(sl), w2t, out=out)
            if self.use_bias:
                out += self.params["bias"]

        run_blocks(block, self._blocks(n))
        return y

    def backward(self, dy):
        """dy (N, Ho, Wo, filters) -> dx (N, H, W, C) (None when need_input_grad is False)."""
        n = self._n
        dy3 = dy.reshape(n, -1, self.filters)
        w2 = self.params["weight"].reshape(self.filters, -1)
        want_dx = self.need_input_grad
        dcols = np.empty((n, dy3.shape[1], w2.shape[1]), dy.dtype) if want_dx else None

        def block(sl):
            dyb = dy3[sl].reshape(-1, self.filters)
            dw = self._weight_grad(sl, dyb) if self.trainable else None
            db = np.einsum("pf->f", dyb) if self.trainable and self.use_bias else None
            if want_dx:
                np.matmul(dyb, w2, out=dcols[sl].reshape(-1, w2.shape[1]))
            return dw, db

        parts = run_blocks(block, self._blocks(n))
        if self.trainable:  # partial sums added in block order: same bits for any thread count
            for dw, db in parts:
                self.grads["weight"] += dw.reshape(self.grads["weight"].shape)
                if self.use_bias:
                    self.grads["bias"] += db
        if not want_dx:
            return None
        h, w, c = self.input_shape
        if self._pointwise:
            return dcols.reshape(n, h, w, c)
        (kh, kw), (ho, wo) = self.kernel_size, self._out_hw
        dcols = dcols.reshape(n, ho, wo, kh, kw, c)
        (t, b), (l, r) = self._pads
        dxp = np.zeros((n, h + t + b, w + l + r, c), dcols.dtype)
        for i in range(kh):
            for j in range(kw):
                pad.tap(dxp, i, j, self._out_hw, self.stride)[...] += dcols[:, :, :, i, j, :]
        return np.ascontiguousarray(pad.crop_nhwc(dxp, self._pads, (h, w)))

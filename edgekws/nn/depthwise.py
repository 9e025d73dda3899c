"""Depthwise 2-D convolution (one kh x kw filter per channel, depth multiplier 1) over NHWC.

Weights are stored [kh, kw, C] — the layout TFLite and CMSIS-NN use for depthwise kernels
(their [1, kh, kw, C] without the leading 1), so export never transposes.

The layer is memory-bound, and numpy is fastest on long contiguous loops. So a block of the
batch is copied into a flat zero-gapped "grid" (`_Grid`) in which every kernel tap reads the
input at one constant offset from the output, and each pass (forward, dx, dw) is one einsum over
a strided view of it: one multiply-add per tap and value in loops over long contiguous rows,
and no copy beyond loading the block into the grid. Blocks are cache-sized and shared among
the engine's threads (see parallel.py).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edgekws.nn import padding as pad
from edgekws.nn.layer import Layer, he_normal, register
from edgekws.nn.parallel import batch_blocks, run_blocks, thread_scratch

_BLOCK_BYTES = 1024 * 1024  # grid bytes per block (measured best of 256 KB .. 4 MB)
_SCRATCH: dict = {}  # per-thread grid buffers, shared by the layers of one geometry
_ROW_VALUES = 8192  # longest row of the weight-gradient pass's 2-D views (5824 measured 2x faster than 2688)


class _Grid:
    """Flat layout of a block of n examples in which a convolution is a sum of shifted slices.

    Each example is Hg rows of Wg pixels of C channels; the data (input x, or the gradient of
    the stride-1 output) sits in the top-left corner and the rest (the gap) stays zero, and
    `margin` zeros come before and after the block. The stride-1 output anchored at grid cell q
    (the cell of the input pixel under its window's tap (pt, pl)) reads tap (i, j) at
    q + ((i - pt) * Wg + j - pl) * C, the same offset for every q; the gaps are wide enough that
    a read outside the data lands on a zero, so they do the padding. Stride s outputs are every
    s-th stride-1 output. The backward pass correlates the gradient, placed on the same grid, with
    the flipped kernel anchored at (kh - 1 - pt, kw - 1 - pl) to get dx.
    """

    def __init__(self, in_hw, pads, kernel, stride, out_hw, channels):
        (h, w), ((pt, pb), (pl, pr)), (kh, kw) = in_hw, pads, kernel
        hz, wz = h + pt + pb - kh + 1, w + pl + pr - kw + 1  # stride-1 output size
        # gaps absorb the forward's reads past the input (pads) and the backward's reads past
        # the stride-1 output (kernel - 1 - pads)
        self.hg = max(h + max(pt, pb), hz + max(kh - 1 - pt, 0))
        self.wg = max(w + max(pl, pr), wz + max(kw - 1 - pl, 0))
        self.in_hw, self.out_hw, self.stride, self.kernel, self.c = in_hw, out_hw, stride, kernel, channels
        self.anchor = (pt, pl)
        self.pads = ((pt, pb), (pl, pr))
        # the largest tap offset, either way, of the kernel and of the flipped kernel
        self.margin = (max(pt, kh - 1 - pt) * self.wg + max(pl, kw - 1 - pl)) * channels
        self.example = self.hg * self.wg * channels  # values per example
        cells = self.hg * self.wg
        # row length of `rows`: C times the largest divisor of Hg*Wg that fits _ROW_VALUES
        self.row = channels * next(d for d in range(max(1, min(cells, _ROW_VALUES // channels)), 0, -1)
                                   if cells % d == 0)

    def buffer(self, role: str, n: int, dtype) -> np.ndarray:
        """This thread's flat buffer `role` for n examples plus margins, zeroed when first made
        and reused by every layer with this geometry: callers only ever write data cells, so the
        gaps and margins stay zero."""
        # every padding side: the bottom/right pads set the grid (hg, wg) and the margins too, and two
        # layers differing only there once shared a buffer laid out for one of them (wrong dx and dw)
        geometry = (role, self.in_hw, self.out_hw, self.stride, self.kernel, self.pads, self.c)
        return thread_scratch(_SCRATCH, geometry, (2 * self.margin + n * self.example,), dtype)

    def cells(self, buf: np.ndarray, n: int) -> np.ndarray:
        """(n, Hg, Wg, C) view of the grid part of buf."""
        return buf[self.margin:self.margin + n * self.example].reshape(n, self.hg, self.wg, self.c)

    def strided_outputs(self, cells: np.ndarray) -> np.ndarray:
        """(n, Ho, Wo, C) view of the cells of the strided outputs among (n, Hg, Wg, C) cells."""
        (sh, sw), (ho, wo) = self.stride, self.out_hw
        return cells[:, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw]

    def rows(self, buf: np.ndarray, n: int) -> np.ndarray:
        """(n * Hg * Wg * C / row, row) view of the grid part of buf: every cell, in long rows."""
        return buf[self.margin:self.margin + n * self.example].reshape(-1, self.row)

    def tap_rows(self, buf: np.ndarray, n: int) -> np.ndarray:
        """Read-only (kh, kw, rows, row) view: [i, j] is `rows` shifted by tap (i, j)'s offset."""
        (pt, pl), (kh, kw), size = self.anchor, self.kernel, buf.itemsize
        start = self.margin - (pt * self.wg + pl) * self.c
        return as_strided(buf[start:], (kh, kw, n * self.example // self.row, self.row),
                          (self.wg * self.c * size, self.c * size, self.row * size, size), writeable=False)

    def taps(self, buf: np.ndarray, n: int, flip: bool = False) -> np.ndarray:
        """Read-only view (kh, kw, n, rows, cols, C) of grid buffer buf: [i, j, e, a, b] is the
        pixel that tap (i, j) reads for output (a, b) of example e, over the (Ho, Wo) strided
        outputs; flip: for the flipped kernel, over the (H, W) input pixels (dx). Unit column
        stride merges the last two axes into one of cols * C (a long loop for einsum)."""
        (pt, pl), (kh, kw), c, size = self.anchor, self.kernel, self.c, buf.itemsize
        (sh, sw), (rows, cols) = self.stride, self.out_hw
        if flip:
            (pt, pl), (sh, sw), (rows, cols) = (kh - 1 - pt, kw - 1 - pl), (1, 1), self.in_hw
        start = self.margin - (pt * self.wg + pl) * c
        shape = (kh, kw, n, rows) + ((cols * c,) if sw == 1 else (cols, c))
        strides = (self.wg * c, c, self.example, sh * self.wg * c) + ((1,) if sw == 1 else (sw * c, 1))
        return as_strided(buf[start:], shape, tuple(s * size for s in strides), writeable=False)


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
        self._grid = _Grid(self.input_shape[:2], self._pads, self.kernel_size, self.stride, self._out_hw, c)

    def _blocks(self, n):
        return batch_blocks(n, self._grid.example * self.dtype.itemsize, _BLOCK_BYTES)

    def _load(self, x: np.ndarray) -> np.ndarray:
        """x (n, H, W, C) copied into the top-left corner of this thread's input grid buffer."""
        g, n = self._grid, x.shape[0]
        buf = g.buffer("x", n, x.dtype)
        g.cells(buf, n)[:, :x.shape[1], :x.shape[2]] = x
        return buf

    def _correlate(self, buf, n, weight, out, flip=False):
        """out (n, rows, cols, C), C-contiguous, = sum over taps of `taps(buf, n, flip)` times the
        tap's (C,) weights: one einsum, the weights tiled to the view's last axes."""
        view = self._grid.taps(buf, n, flip)
        tiled = np.tile(weight[:, :, None, :], (1, 1, out.shape[2], 1)).reshape(*weight.shape[:2], *view.shape[4:])
        np.einsum("ijnh...,ij...->nh...", view, tiled, out=out.reshape(view.shape[2:]))

    def forward(self, x, training=False):
        """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
        self._check_input(x)
        self._x = x
        y = np.empty((x.shape[0], *self._out_hw, x.shape[3]), x.dtype)

        def block(sl):
            self._correlate(self._load(x[sl]), sl.stop - sl.start, self.params["weight"], y[sl])
            if self.use_bias:
                y[sl] += self.params["bias"]

        run_blocks(block, self._blocks(x.shape[0]))
        return y

    def backward(self, dy):
        """dy (N, Ho, Wo, C) -> dx (N, H, W, C); accumulates weight (kh, kw, C) and bias (C,)."""
        x, g = self._x, self._grid
        want_dx = self.need_input_grad
        dx = np.empty(x.shape, x.dtype) if want_dx else None
        flipped = self.params["weight"][::-1, ::-1]

        def block(sl):
            n = sl.stop - sl.start
            # dL/d(stride-1 output) on the grid: dy at the strided outputs' cells, zero elsewhere
            dz = g.buffer("dz", n, dy.dtype)
            g.strided_outputs(g.cells(dz, n))[...] = dy[sl]
            dw = db = None
            if self.trainable and tuple(self.stride) == (1, 1):  # per tap: shifted x times dz, in long rows
                per_column = np.einsum("ijpk,pk->ijk", g.tap_rows(self._load(x[sl]), n), g.rows(dz, n))
                dw = per_column.reshape(*self.kernel_size, -1, g.c).sum(2)
            elif self.trainable:  # strided: only the strided outputs have a gradient; read x there only
                view = g.taps(self._load(x[sl]), n)  # (kh, kw, n, Ho, Wo, C), or Wo * C merged
                if view.ndim == 6:  # dscnn's dw2, batch 64: 2.8 ms, the whole-grid pass 5.9 ms
                    dw = np.einsum("ijnabc,nabc->ijc", view, dy[sl])
                else:
                    per_column = np.einsum("ijnak,nak->ijk", view, dy[sl].reshape(view.shape[2:]))
                    dw = per_column.reshape(*self.kernel_size, -1, g.c).sum(2)
            if self.trainable and self.use_bias:
                db = np.einsum("pc->c", dy[sl].reshape(-1, g.c))
            if want_dx:
                self._correlate(dz, n, flipped, dx[sl], flip=True)
            return dw, db

        parts = run_blocks(block, self._blocks(x.shape[0]))
        if self.trainable:
            for dw, db in parts:  # summed in block order: the same result for any thread count
                self.grads["weight"] += dw
                if self.use_bias:
                    self.grads["bias"] += db
        return dx

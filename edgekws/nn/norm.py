"""Batch normalization over the last (channel) axis, its optional fused ReLU/ReLU6, and folding
into the preceding Dense / Conv2D / DepthwiseConv2D for inference and export.

Training mode normalizes with the batch statistics and updates running statistics
(running = (1 - momentum) * running + momentum * batch, unbiased variance, as PyTorch does);
evaluation mode (and a frozen layer) uses the running statistics.

Work is done per cache-sized block of the batch (see parallel.py): statistics by Chan's
pairwise combination of per-block means and squared deviations, so float32 stays accurate.
"""

from __future__ import annotations

import numpy as np

from edgekws.nn.layer import Layer, register
from edgekws.nn.parallel import batch_blocks, run_blocks

_ACTS = (None, "relu", "relu6")


@register
class BatchNorm(Layer):
    """BatchNorm(momentum, eps): x (N, ..., C) -> same shape.

    params : gamma (C,), beta (C,)          buffers: running_mean (C,), running_var (C,)
    """

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {momentum!r}")
        if not float(eps) > 0.0:
            raise ValueError(f"BatchNorm: eps must be > 0, got {eps!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.activation = None  # set by Sequential when a ReLU/ReLU6 follows (fusion)

    def _hyper(self):
        return {"momentum": self.momentum, "eps": self.eps}

    def _build(self, rng):
        c = self.input_shape[-1]
        self._add_param("gamma", np.ones(c))
        self._add_param("beta", np.zeros(c))
        self.buffers["running_mean"] = np.zeros(c, self.dtype)
        self.buffers["running_var"] = np.ones(c, self.dtype)

    def _blocks(self, n):
        return batch_blocks(n, int(np.prod(self.input_shape)) * self.dtype.itemsize)

    def _stats(self, x2, blocks, rows):
        """Per-channel batch mean and biased variance (float64) of x viewed as (N, rows, C)."""
        def block(sl):
            xb = x2[sl].reshape(-1, x2.shape[-1])
            mean = np.einsum("pc->c", xb) / xb.shape[0]  # no BLAS inside worker threads
            d = xb - mean
            return xb.shape[0], mean.astype(np.float64), np.einsum("pc,pc->c", d, d).astype(np.float64)
        parts = run_blocks(block, blocks)
        total = sum(p[0] for p in parts)
        mean = sum(p[0] * p[1] for p in parts) / total
        m2 = sum(p[2] + p[0] * (p[1] - mean) ** 2 for p in parts)
        return mean, m2 / total, total

    def forward(self, x, training=False):
        """x (N, ..., C) -> y, same shape; applies the fused activation when one is set."""
        self._check_input(x)
        c = x.shape[-1]
        x2 = x.reshape(x.shape[0], -1, c)
        blocks = self._blocks(x.shape[0])
        gamma, beta = self.params["gamma"], self.params["beta"]
        self._training = training and self.trainable
        if self._training:
            mean, var, m = self._stats(x2, blocks, x2.shape[1])
            mom = self.momentum
            unbiased = var * m / max(m - 1, 1)
            self.buffers["running_mean"][...] = (1 - mom) * self.buffers["running_mean"] + mom * mean
            self.buffers["running_var"][...] = (1 - mom) * self.buffers["running_var"] + mom * unbiased
        else:
            mean = self.buffers["running_mean"].astype(np.float64)
            var = self.buffers["running_var"].astype(np.float64)
        invstd = 1.0 / np.sqrt(var + self.eps)
        scale = gamma * invstd.astype(self.dtype)
        shift = (beta - mean * scale).astype(self.dtype)
        self._x, self._mean, self._invstd, self._scale = x, mean.astype(self.dtype), invstd, scale
        y = np.empty_like(x)
        y2 = y.reshape(x2.shape)
        act = self.activation

        def block(sl):
            yb = y2[sl]
            np.multiply(x2[sl], scale, out=yb)
            yb += shift
            if act == "relu":
                np.maximum(yb, 0, out=yb)
            elif act == "relu6":
                np.clip(yb, 0, 6, out=yb)

        run_blocks(block, blocks)
        self._y = y if act else None
        return y

    def backward(self, dy):
        """dy (N, ..., C) -> dx; accumulates gamma/beta gradients (through the fused activation)."""
        x = self._x
        c = x.shape[-1]
        x2 = x.reshape(x.shape[0], -1, c)
        blocks = self._blocks(x.shape[0])
        g = np.empty_like(dy)  # dL/d(pre-activation), then turned into dx in place
        g2, dy2 = g.reshape(x2.shape), dy.reshape(x2.shape)
        y2 = self._y.reshape(x2.shape) if self._y is not None else None
        mean, act = self._mean, self.activation

        def sums(sl):
            gb = g2[sl]
            if act == "relu":
                np.multiply(dy2[sl], y2[sl] > 0, out=gb)
            elif act == "relu6":
                yb = y2[sl]
                np.multiply(dy2[sl], (yb > 0) & (yb < 6), out=gb)
            else:
                gb[...] = dy2[sl]
            gb = gb.reshape(-1, c)
            d = x2[sl].reshape(-1, c) - mean
            return np.einsum("pc->c", gb), np.einsum("pc,pc->c", gb, d)

        parts = run_blocks(sums, blocks)
        dbeta = sum(p[0].astype(np.float64) for p in parts)
        dgamma = sum(p[1].astype(np.float64) for p in parts) * self._invstd
        if self.trainable:
            self.grads["gamma"] += dgamma.astype(self.dtype)
            self.grads["beta"] += dbeta.astype(self.dtype)
        if not self.need_input_grad:
            return None
        scale = self._scale
        if not self._training:  # statistics are constants: dx = scale * g
            run_blocks(lambda sl: np.multiply(g2[sl], scale, out=g2[sl]), blocks)
            return g
        m = x2.shape[0] * x2.shape[1]
        a = (-scale.astype(np.float64) * self._invstd * dgamma / m)
        b = (-scale.astype(np.float64) * dbeta / m - a * mean.astype(np.float64)).astype(self.dtype)
        a = a.astype(self.dtype)

        def dx_block(sl):
            gb = g2[sl]
            tmp = np.multiply(x2[sl], a)
            np.multiply(gb, scale, out=gb)
            gb += tmp
            gb += b

        run_blocks(dx_block, blocks)
        return g


def fold_batchnorm(layer: Layer, bn: BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """Fold `bn` (its running statistics) into the Dense/Conv2D/DepthwiseConv2D `layer` before it.

    Returns (weight, bias) in the layer's own layouts — Dense (out, in), Conv2D (out, kh, kw, in),
    DepthwiseConv2D (kh, kw, C) — such that layer-with-them(x) == bn(layer(x)) in eval mode.
    """
    axis = getattr(layer, "out_channel_axis", None)
    if axis is None or "weight" not in layer.params:
        raise ValueError(f"fold_batchnorm: cannot fold into {type(layer).__name__} "
                         f"{layer.name!r} (needs Dense, Conv2D or DepthwiseConv2D)")
    w = layer.params["weight"].astype(np.float64)
    c = w.shape[axis]
    if bn.params.get("gamma") is None or bn.params["gamma"].shape != (c,):
        raise ValueError(f"fold_batchnorm: {bn.name!r} has not {c} channels like {layer.name!r}")
    scale = bn.params["gamma"] / np.sqrt(bn.buffers["running_var"].astype(np.float64) + bn.eps)
    shape = [1] * w.ndim
    shape[axis] = c
    bias = layer.params["bias"].astype(np.float64) if "bias" in layer.params else np.zeros(c)
    new_b = (bias - bn.buffers["running_mean"]) * scale + bn.params["beta"]
    return (w * scale.reshape(shape)).astype(layer.dtype), new_b.astype(layer.dtype)

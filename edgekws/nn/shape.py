"""Layers that only move or mask values: Flatten and (inverted) Dropout."""

from __future__ import annotations

import numpy as np

from edgekws.nn.layer import Layer, register


@register
class Flatten(Layer):
    """x (N, *dims) -> (N, prod(dims)), row-major (NHWC order is kept)."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._shape)


@register
class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability `rate` and scale the rest
    by 1/(1-rate); identity in evaluation. Any shape.

    The mask comes from this layer's own np.random.Generator, drawn from the model's generator
    at build time (or set `layer.rng`), so a seeded model drops the same units every run.
    """

    def __init__(self, rate: float, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.rng = np.random.default_rng(0)

    def _hyper(self):
        return {"rate": self.rate}

    def _build(self, rng):
        self.rng = np.random.default_rng(rng.integers(0, 2**63))

    def forward(self, x, training=False):
        if not training or not self.trainable or self.rate == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate
        self._mask = keep.astype(x.dtype)
        self._mask *= x.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, dy):
        return dy if self._mask is None else dy * self._mask

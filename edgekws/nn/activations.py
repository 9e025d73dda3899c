"""Elementwise activations: ReLU and ReLU6 (the clipped ReLU of int8 keyword-spotting models)."""

from __future__ import annotations

import numpy as np

from edgekws.nn.layer import Layer, register


@register
class ReLU(Layer):
    """y = max(x, 0), any shape. Backward passes dy where y > 0."""

    def forward(self, x, training=False):
        y = np.maximum(x, 0)
        self._mask = y > 0
        return y

    def backward(self, dy):
        return dy * self._mask


@register
class ReLU6(Layer):
    """y = min(max(x, 0), 6), any shape. Backward passes dy where 0 < x < 6."""

    def forward(self, x, training=False):
        self._mask = (x > 0) & (x < 6)
        return np.clip(x, 0, 6)

    def backward(self, dy):
        return dy * self._mask

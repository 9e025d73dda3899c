"""Fully connected layer: y = x W^T + b with weights stored [out, in] (the export layout)."""

from __future__ import annotations

import numpy as np

from edgekws.errors import is_int
from edgekws.nn.layer import Layer, glorot_uniform, register


@register
class Dense(Layer):
    """Dense(units): x (N, in) -> y (N, units).

    params: weight (units, in), bias (units,)
    """

    out_channel_axis = 0  # axis of `weight` indexed by output unit (BatchNorm folding)

    def __init__(self, units: int, use_bias: bool = True, name: str | None = None):
        super().__init__(name)
        if not is_int(units, numpy=False) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units = units
        self.use_bias = bool(use_bias)

    def _hyper(self):
        return {"units": self.units, "use_bias": self.use_bias}

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Dense: input must be (N, features), got per-example shape {tuple(input_shape)}"
                             " (add a Flatten or GlobalAvgPool before it)")
        return (self.units,)

    def macs(self, input_shape):
        return int(input_shape[0]) * self.units

    def _build(self, rng):
        fan_in = self.input_shape[0]
        self._add_param("weight", glorot_uniform(rng, (self.units, fan_in), fan_in, self.units, self.dtype))
        if self.use_bias:
            self._add_param("bias", np.zeros(self.units))

    def forward(self, x, training=False):
        """x (N, in) -> (N, units), same dtype as the layer."""
        self._check_input(x)
        self._x = x
        y = x @ self.params["weight"].T
        if self.use_bias:
            y += self.params["bias"]
        return y

    def backward(self, dy):
        """dy (N, units) -> dx (N, in); accumulates weight/bias gradients."""
        if self.trainable:
            self.grads["weight"] += dy.T @ self._x
            if self.use_bias:
                self.grads["bias"] += dy.sum(axis=0)
        return dy @ self.params["weight"] if self.need_input_grad else None

"""GRU layer trained by backpropagation through time (unrolled over the frames).

Gate order in every stacked weight is (z, r, n) — update, reset, candidate — as in PyTorch/ONNX:
  z = sigmoid(W_z x + b_xz + U_z h + b_hz)     r = sigmoid(W_r x + b_xr + U_r h + b_hr)
  n = tanh(W_n x + b_xn + r * (U_n h + b_hn))  h' = (1 - z) * n + z * h
Loops run over time steps only; each step is whole-batch matrix products.
"""

from __future__ import annotations

import numpy as np

from edgekws.errors import is_int
from edgekws.nn.layer import Layer, glorot_uniform, register


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # no overflow for large |a|; keeps the dtype


@register
class GRU(Layer):
    """GRU(units): x (N, T, F) -> (N, T, units) if return_sequences else the last state (N, units).

    params: w_x (3*units, F), w_h (3*units, units), b_x (3*units,), b_h (3*units,)
    clip  : if set, the gradient flowing back through the hidden state is clipped to
            [-clip, clip] at every step of BPTT (guards against exploding gradients over long
            sequences; clip the parameter gradients by norm with optim.clip_grad_norm as well).
    """

    def __init__(self, units: int, return_sequences: bool = False, clip: float | None = None,
                 name: str | None = None):
        super().__init__(name)
        if not is_int(units, numpy=False) or units < 1:
            raise ValueError(f"GRU: units must be a positive int, got {units!r}")
        if clip is not None and not float(clip) > 0:
            raise ValueError(f"GRU: clip must be None or > 0, got {clip!r}")
        self.units = units
        self.return_sequences = bool(return_sequences)
        self.clip = None if clip is None else float(clip)

    def _hyper(self):
        return {"units": self.units, "return_sequences": self.return_sequences, "clip": self.clip}

    def output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"GRU: input must be (N, T, F), got per-example shape {tuple(input_shape)}")
        return (int(input_shape[0]), self.units) if self.return_sequences else (self.units,)

    def macs(self, input_shape):
        t, f = input_shape
        return int(t) * 3 * self.units * (int(f) + self.units)

    def _build(self, rng):
        h, f = self.units, self.input_shape[1]
        self._add_param("w_x", glorot_uniform(rng, (3 * h, f), f, h, self.dtype))
        q = [np.linalg.qr(rng.standard_normal((h, h)))[0] for _ in range(3)]  # orthogonal per gate
        self._add_param("w_h", np.concatenate(q, axis=0))
        self._add_param("b_x", np.zeros(3 * h))
        self._add_param("b_h", np.zeros(3 * h))

    def forward(self, x, training=False):
        """x (N, T, F) -> (N, T, H) or (N, H)."""
        self._check_input(x)
        n, t_len, _ = x.shape
        hsz = self.units
        w_h, b_h = self.params["w_h"], self.params["b_h"]
        xg = (x.reshape(n * t_len, -1) @ self.params["w_x"].T + self.params["b_x"]).reshape(n, t_len, 3 * hsz)
        hs = np.zeros((n, t_len + 1, hsz), x.dtype)  # hs[:, t] is the state before step t
        self._z = np.empty((n, t_len, hsz), x.dtype)
        self._r = np.empty_like(self._z)
        self._n = np.empty_like(self._z)
        self._hn = np.empty_like(self._z)  # U_n h + b_hn, needed for dr
        for t in range(t_len):
            h = hs[:, t]
            hg = h @ w_h.T + b_h
            z = _sigmoid(xg[:, t, :hsz] + hg[:, :hsz])
            r = _sigmoid(xg[:, t, hsz:2 * hsz] + hg[:, hsz:2 * hsz])
            cand = np.tanh(xg[:, t, 2 * hsz:] + r * hg[:, 2 * hsz:])
            hs[:, t + 1] = cand + z * (h - cand)
            self._z[:, t], self._r[:, t], self._n[:, t], self._hn[:, t] = z, r, cand, hg[:, 2 * hsz:]
        self._x, self._hs = x, hs
        return hs[:, 1:].copy() if self.return_sequences else hs[:, -1].copy()

    def backward(self, dy):
        """dy (N, T, H) or (N, H) -> dx (N, T, F); accumulates w_x, w_h, b_x, b_h gradients."""
        x, hs = self._x, self._hs
        n, t_len, _ = x.shape
        hsz = self.units
        w_h = self.params["w_h"]
        dxg = np.empty((n, t_len, 3 * hsz), x.dtype)
        dw_h = np.zeros_like(w_h)
        db_h = np.zeros(3 * hsz, x.dtype)
        dh = np.zeros((n, hsz), x.dtype) if self.return_sequences else dy.copy()
        for t in reversed(range(t_len)):
            if self.return_sequences:
                dh = dh + dy[:, t]
            if self.clip is not None:
                np.clip(dh, -self.clip, self.clip, out=dh)
            z, r, cand, h = self._z[:, t], self._r[:, t], self._n[:, t], hs[:, t]
            da_n = dh * (1 - z) * (1 - cand * cand)
            da_z = dh * (h - cand) * z * (1 - z)
            da_r = da_n * self._hn[:, t] * r * (1 - r)
            dxg[:, t, :hsz], dxg[:, t, hsz:2 * hsz], dxg[:, t, 2 * hsz:] = da_z, da_r, da_n
            dhg = np.concatenate([da_z, da_r, da_n * r], axis=1)  # (N, 3H)
            if self.trainable:
                dw_h += dhg.T @ h
                db_h += dhg.sum(axis=0)
            dh = dh * z + dhg @ w_h
        dxg2 = dxg.reshape(n * t_len, 3 * hsz)
        if self.trainable:
            self.grads["w_x"] += dxg2.T @ x.reshape(n * t_len, -1)
            self.grads["b_x"] += dxg2.sum(axis=0)
            self.grads["w_h"] += dw_h
            self.grads["b_h"] += db_h
        if not self.need_input_grad:
            return None
        return (dxg2 @ self.params["w_x"]).reshape(x.shape)

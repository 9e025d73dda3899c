"""Central finite-difference gradient checks (run them in float64).

`gradcheck` compares analytic gradients against (f(a + h) - f(a - h)) / 2h for every element of
every named array; `check_layer` wires a single layer to it with the scalar loss sum(y * r) for a
fixed random r, so dL/dy = r.
"""

from __future__ import annotations

import numpy as np


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n|| / max(||a||, ||n||, 1e-12): 0 for identical arrays, ~1 for unrelated ones."""
    scale = max(float(np.linalg.norm(analytic)), float(np.linalg.norm(numeric)), 1e-12)
    return float(np.linalg.norm(analytic - numeric)) / scale


def gradcheck(loss_fn, analytic: dict[str, np.ndarray], arrays: dict[str, np.ndarray],
              h: float = 1e-6) -> dict[str, float]:
    """loss_fn() -> float reads `arrays` (modified in place here and restored).

    analytic : name -> dL/d(array), computed beforehand at the unmodified arrays
    Returns name -> relative error.
    """
    errors = {}
    for name, a in arrays.items():
        if a.dtype != np.float64:
            raise ValueError(f"gradcheck: {name} is {a.dtype}; finite differences need float64")
        numeric = np.zeros_like(a)
        flat, nflat = a.reshape(-1), numeric.reshape(-1)  # views: a must be contiguous
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            up = loss_fn()
            flat[i] = keep - h
            down = loss_fn()
            flat[i] = keep
            nflat[i] = (up - down) / (2 * h)
        errors[name] = rel_error(analytic[name], numeric)
    return errors


def check_layer(layer, x: np.ndarray, rng: np.random.Generator, training: bool = True,
                before_forward=None, h: float = 1e-6) -> dict[str, float]:
    """Gradient check of a built float64 layer at input x (N, ...): input grad 'x' and every param.

    before_forward : optional callable run before every forward (e.g. to re-seed a Dropout).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)

    def run():
        if before_forward is not None:
            before_forward()
        return layer.forward(x, training)

    r = rng.standard_normal(run().shape)
    layer.zero_grad()
    run()
    layer.need_input_grad = True
    analytic = {"x": layer.backward(r.copy()), **{k: g.copy() for k, g in layer.grads.items()}}
    return gradcheck(lambda: float(np.sum(run() * r)), analytic, {"x": x, **layer.params}, h)

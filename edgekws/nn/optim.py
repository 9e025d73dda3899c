"""Optimizers (SGD with momentum/Nesterov, Adam, AdamW) and gradient clipping by global norm.

An optimizer takes the list returned by `Sequential.parameters()` — (name, param, grad) triples —
and updates each param IN PLACE at `step()`. Its state (moments, step count) round-trips through
`state_dict()` / `load_state_dict()` so that a resumed training is bit-exact. Set `opt.lr` before
each step to follow a schedule (see schedules.py).

Weight decay: L2 (added to the gradient) for SGD and Adam, decoupled for AdamW. By default it
applies to weights only (params with ndim >= 2), not to biases or BatchNorm gamma/beta.
"""

from __future__ import annotations

import numpy as np


def clip_grad_norm(parameters, max_norm: float) -> float:
    """Scale all gradients so that their global L2 norm is at most max_norm; returns the norm
    before clipping. parameters: iterable of (name, param, grad)."""
    if not float(max_norm) > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be > 0, got {max_norm!r}")
    grads = [g for _, _, g in parameters]
    with np.errstate(over="ignore"):
        total = float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads)))
    if not np.isfinite(total):   # float32 squares overflow past ~1.8e19: the norm again in float64
        total = float(np.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64)))
                                  for g in grads)))
    if total > max_norm:
        factor = max_norm / (total + 1e-6)
        for g in grads:
            g *= g.dtype.type(factor)
    return total


class Optimizer:
    """Base: holds the parameter list, lr, weight decay and the step count."""

    def __init__(self, parameters, lr: float, weight_decay: float = 0.0, decay_filter=None):
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError(f"{type(self).__name__}: no parameters to optimize (is everything frozen?)")
        names = [n for n, _, _ in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__}: parameter names are not unique: {names}")
        if not float(lr) >= 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {lr!r}")
        if not float(weight_decay) >= 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {weight_decay!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        decay_filter = decay_filter or (lambda name, p: p.ndim >= 2)
        self._decay = {n: bool(decay_filter(n, p)) and self.weight_decay > 0 for n, p, _ in self.parameters}
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}

    def zero_grad(self) -> None:
        for _, _, g in self.parameters:
            g.fill(0)

    def step(self) -> None:
        self.step_count += 1
        for name, p, g in self.parameters:
            self._update(name, p, g, self.state[name])

    def _update(self, name, p, g, state):
        raise NotImplementedError

    def _l2(self, name, p, g):
        """g + wd * p for L2-decayed params (a new array; g itself is left untouched)."""
        return g + p.dtype.type(self.weight_decay) * p if self._decay[name] else g

    def state_dict(self) -> dict:
        """{'step_count': int, 'lr': float, 'state': {param name: {slot: ndarray copy}}}."""
        return {"step_count": self.step_count, "lr": self.lr,
                "state": {n: {k: v.copy() for k, v in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, sd: dict) -> None:
        if set(sd["state"]) != set(self.state):
            raise ValueError(f"{type(self).__name__}.load_state_dict: parameters differ: saved "
                             f"{sorted(sd['state'])}, optimizer has {sorted(self.state)}")
        shapes = {n: p.shape for n, p, _ in self.parameters}
        for n, slots in sd["state"].items():
            for k, v in slots.items():
                if v.shape != shapes[n]:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {n}.{k} has shape "
                                     f"{v.shape}, parameter has {shapes[n]}")
        self.step_count = int(sd["step_count"])
        self.lr = float(sd["lr"])
        self.state = {n: {k: np.array(v, copy=True) for k, v in s.items()} for n, s in sd["state"].items()}


class SGD(Optimizer):
    """p -= lr * v, v = momentum * v + g (PyTorch's form); Nesterov uses g + momentum * v."""

    def __init__(self, parameters, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, decay_filter=None):
        super().__init__(parameters, lr, weight_decay, decay_filter)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _update(self, name, p, g, state):
        g = self._l2(name, p, g)
        lr = p.dtype.type(self.lr)
        if self.momentum == 0:
            p -= lr * g
            return
        if "velocity" not in state:
            state["velocity"] = g.copy()
        else:
            v = state["velocity"]
            v *= p.dtype.type(self.momentum)
            v += g
        v = state["velocity"]
        p -= lr * (g + p.dtype.type(self.momentum) * v if self.nesterov else v)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; weight_decay is L2 added to the gradient."""

    decoupled = False

    def __init__(self, parameters, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decay_filter=None):
        super().__init__(parameters, lr, weight_decay, decay_filter)
        b1, b2 = (float(b) for b in betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas!r}")
        if not float(eps) > 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps!r}")
        self.betas, self.eps = (b1, b2), float(eps)

    def _update(self, name, p, g, state):
        t = p.dtype.type
        if self.decoupled:
            if self._decay[name]:
                p *= t(1.0 - self.lr * self.weight_decay)
        else:
            g = self._l2(name, p, g)
        b1, b2 = self.betas
        if "m" not in state:
            state["m"] = np.zeros_like(p)
            state["v"] = np.zeros_like(p)
        m, v = state["m"], state["v"]
        m *= t(b1)
        m += t(1 - b1) * g
        v *= t(b2)
        v += t(1 - b2) * (g * g)
        bc1 = 1 - b1 ** self.step_count
        bc2 = 1 - b2 ** self.step_count
        denom = np.sqrt(v)
        denom *= t(1.0 / np.sqrt(bc2))
        denom += t(self.eps)
        p -= t(self.lr / bc1) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * wd before the step."""

    decoupled = True

    def __init__(self, parameters, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, decay_filter=None):
        super().__init__(parameters, lr, betas, eps, weight_decay, decay_filter)

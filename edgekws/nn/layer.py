"""The Layer base class shared by every layer of the numpy engine, and the registry of layer types.

A layer is a forward/backward pair over whole batches:
  forward(x, training)  caches only what backward needs and returns y;
  backward(dy)          returns dL/dx and ACCUMULATES (+=) parameter gradients into `grads`.
Shapes given to `build`, `output_shape` and `macs` are per example (no batch axis).
"""

from __future__ import annotations

import numpy as np

LAYER_TYPES: dict[str, type["Layer"]] = {}


def register(cls):
    """Class decorator: make a layer type rebuildable from its `config()`."""
    LAYER_TYPES[cls.__name__] = cls
    return cls


def layer_from_config(config: dict) -> "Layer":
    """Rebuild an (unbuilt) layer from the dict returned by `Layer.config()`."""
    cfg = dict(config)
    kind = cfg.pop("type", None)
    if kind not in LAYER_TYPES:
        raise ValueError(f"layer config: unknown layer type {kind!r} (known: {sorted(LAYER_TYPES)})")
    return LAYER_TYPES[kind](**cfg)


class Layer:
    """Base class. Subclasses set `params` in `build` and implement forward/backward.

    Attributes
    ----------
    name      : str, unique inside a model (Sequential assigns one when None)
    params    : dict name -> ndarray, trainable parameters (updated in place by optimizers)
    grads     : dict name -> ndarray, same keys and shapes as `params`
    buffers   : dict name -> ndarray, non-trainable state saved with the model (BN running stats)
    trainable : False when frozen: no parameter gradients are computed and training-time
                behaviour (batch statistics, dropout) is switched off.
    need_input_grad : False lets backward skip dL/dx (first layer of a model) and return None.
    """

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise ValueError(f"layer name must be a non-empty string without '.', got {name!r}")
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.trainable = True
        self.need_input_grad = True
        self.dtype = np.dtype(np.float32)
        self.input_shape: tuple[int, ...] | None = None

    # ---- construction -------------------------------------------------------------------
    def build(self, input_shape, rng: np.random.Generator, dtype=np.float32) -> "Layer":
        """Create parameters for per-example `input_shape`; returns self."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(dtype)
        self.output_shape(self.input_shape)  # validates the shape
        self._build(rng)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return self

    def _build(self, rng: np.random.Generator) -> None:
        pass

    def _add_param(self, key: str, value: np.ndarray) -> None:
        self.params[key] = np.ascontiguousarray(value, dtype=self.dtype)

    def config(self) -> dict:
        """JSON-able dict from which `layer_from_config` rebuilds this layer (unbuilt)."""
        return {"type": type(self).__name__, "name": self.name, **self._hyper()}

    def _hyper(self) -> dict:
        return {}

    # ---- shapes and costs ---------------------------------------------------------------
    def output_shape(self, input_shape) -> tuple[int, ...]:
        return tuple(input_shape)

    def macs(self, input_shape) -> int:
        """Multiply-accumulates per example (0 for layers folded away or free)."""
        return 0

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    # ---- computation --------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def __call__(self, x, training: bool = False):
        return self.forward(x, training)

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    def _check_input(self, x: np.ndarray) -> None:
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.name or type(self).__name__}: input shape {tuple(x.shape[1:])} per example, "
                f"expected {self.input_shape}")

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({hyper})"


def glorot_uniform(rng: np.random.Generator, shape, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """Glorot/Xavier uniform init, drawn in float64 then cast (same draws for every dtype)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(rng: np.random.Generator, shape, fan_in: int, dtype) -> np.ndarray:
    """He (Kaiming) normal init for ReLU networks, drawn in float64 then cast."""
    return (rng.standard_normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(dtype)

"""Sequential: the model container of the numpy engine.

Named layers in order; forward/backward over whole batches; freezing (last-layer retraining);
per-layer output shape, parameter and MAC counts; state_dict; save/load as one .npz holding the
arrays plus the JSON architecture (bit-exact round trip, written atomically).

A BatchNorm directly followed by ReLU/ReLU6 runs fused (one pass over memory instead of two);
the result is the same as running them one after the other.
"""

from __future__ import annotations

import json

import numpy as np

from edgekws.errors import BundleError, is_int
from edgekws.fileio import atomic_open
from edgekws.nn.activations import ReLU, ReLU6
from edgekws.nn.layer import Layer, layer_from_config
from edgekws.nn.norm import BatchNorm
from edgekws.nn.shape import Dropout

FORMAT = "edgekws.nn.Sequential"
FORMAT_VERSION = 1


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if is_int(rng):
        return np.random.default_rng(int(rng))
    raise ValueError(f"Sequential: rng must be an int seed or a np.random.Generator, got {rng!r}")


class Sequential:
    """Sequential(layers, input_shape, rng=0, dtype=float32).

    layers      : list of unbuilt Layer objects; unnamed ones get "<type><index>" names
    input_shape : per-example shape, e.g. (49, 40, 1) for NHWC features
    rng         : int seed or np.random.Generator for the initial weights and dropout masks
    """

    def __init__(self, layers, input_shape, rng=0, dtype=np.float32):
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise ValueError("Sequential: layers must be a non-empty list of Layer objects")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"Sequential: dtype must be float32 or float64, got {self.dtype}")
        gen = _as_rng(rng)
        shape = self.input_shape
        shapes: dict[str, tuple] = {}   # output shape of every layer so far, for taps
        for i, layer in enumerate(layers):
            if layer.name is None:
                layer.name = f"{type(layer).__name__.lower()}{i}"
            try:
                if getattr(layer, "taps", ()):
                    layer.tap_shapes = tuple(self._tap_shape(layers, i, t, shapes) for t in layer.taps)
                layer.build(shape, gen, self.dtype)
            except ValueError as exc:
                raise ValueError(f"Sequential: layer {i} ({layer.name}): {exc}") from None
            shape = layer.output_shape(shape)
            shapes[layer.name] = shape
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential: layer names must be unique, got {names}")
        self.layers = layers
        self.output_shape = shape
        self._by_name = {layer.name: layer for layer in layers}
        self._position = {layer.name: i for i, layer in enumerate(layers)}
        self._tapped = {t for layer in layers for t in getattr(layer, "taps", ())}
        self._update_input_grad()

    @staticmethod
    def _tap_shape(layers, i: int, tap: str, shapes: dict) -> tuple:
        """Output shape of the earlier layer `tap` that layers[i] reads; a BatchNorm fused with
        its ReLU never materializes its own output, so it cannot be tapped."""
        if tap not in shapes:
            raise ValueError(f"tap {tap!r} is not an earlier layer")
        j = next(k for k in range(i) if layers[k].name == tap)
        if isinstance(layers[j], BatchNorm) and isinstance(layers[j + 1], (ReLU, ReLU6)):
            raise ValueError(f"tap {tap!r} is a BatchNorm fused with the ReLU after it; tap {layers[j + 1].name!r}")
        return shapes[tap]

    # ---- structure ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> Layer:
        if name not in self._by_name:
            raise KeyError(f"no layer named {name!r}; layers: {list(self._by_name)}")
        return self._by_name[name]

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def _index(self, name: str) -> int:
        self[name]
        return self._position[name]

    def _update_input_grad(self):
        """Backward stops at the first trainable layer: layers before it need no input gradient."""
        first = next((i for i, layer in enumerate(self.layers) if layer.trainable and layer.params), len(self.layers))
        for i, layer in enumerate(self.layers):
            layer.need_input_grad = i > first
        self._first_trainable = first

    def freeze(self, names) -> None:
        """Freeze layers by name (a str or a list): no gradients, inference behaviour, and no updates
        from an optimizer made afterwards (model.parameters() leaves them out). An optimizer made
        before still holds them, and its weight decay and momentum would move them: make it after."""
        for name in [names] if isinstance(names, str) else list(names):
            self[name].trainable = False
        self._update_input_grad()

    def unfreeze(self, names=None) -> None:
        """Unfreeze the named layers (all when None)."""
        targets = self.layers if names is None else [self[n] for n in ([names] if isinstance(names, str) else names)]
        for layer in targets:
            layer.trainable = True
        self._update_input_grad()

    def parameters(self):
        """[(qualified name 'layer.param', param, grad)] of the trainable layers, in order."""
        return [(f"{layer.name}.{k}", p, layer.grads[k])
                for layer in self.layers if layer.trainable for k, p in layer.params.items()]

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    # ---- computation --------------------------------------------------------------------
    def _plan(self, stop: int):
        """Steps (layer, fused_activation_or_None, name of the layer whose output it produces) up
        to index stop."""
        steps, i = [], 0
        while i <= stop:
            layer = self.layers[i]
            nxt = self.layers[i + 1] if i + 1 <= stop else None
            if isinstance(layer, BatchNorm) and isinstance(nxt, (ReLU, ReLU6)):
                steps.append((layer, "relu" if isinstance(nxt, ReLU) else "relu6", nxt.name))
                i += 2
            else:
                steps.append((layer, None, layer.name))
                i += 1
        return steps

    def forward(self, x: np.ndarray, training: bool = False, until: str | None = None) -> np.ndarray:
        """x (N, *input_shape) -> (N, *output_shape); cast to the model dtype first.

        until : a layer name; return that layer's output instead (e.g. the embedding after the
                global pool for last-layer retraining). backward() then starts from that layer.
        """
        x = np.asarray(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"Sequential.forward: x must be (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {x.shape}")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        stop = len(self.layers) - 1 if until is None else self._index(until)
        self._steps = self._plan(stop)
        saved = {}
        for layer, act, out in self._steps:
            if isinstance(layer, BatchNorm):
                layer.activation = act
            if getattr(layer, "taps", ()):
                layer.tap_values = [saved[t] for t in layer.taps]
            x = layer.forward(x, training)
            if out in self._tapped:
                saved[out] = x
        return x

    __call__ = forward

    def backward(self, dy: np.ndarray, input_grad: bool = False):
        """dy = dL/d(output of the last forward), same shape -> dL/dx if input_grad else None.

        Parameter gradients accumulate (call zero_grad between steps). Layers before the first
        trainable one are skipped unless input_grad is True.
        """
        steps = self._steps
        if input_grad:
            for layer, _, _ in steps:
                layer.need_input_grad = True
        pending = {}  # gradients that taps send back to the outputs they read
        try:
            for layer, _, out in reversed(steps):
                if not input_grad and self._position[layer.name] < self._first_trainable:
                    break
                if out in pending:
                    dy = dy + pending.pop(out)
                dy = layer.backward(dy)
                for tap, g in zip(getattr(layer, "taps", ()), getattr(layer, "tap_grads", ())):
                    pending[tap] = pending[tap] + g if tap in pending else g
        finally:
            if input_grad:
                self._update_input_grad()
        return dy if input_grad else None

    # ---- description --------------------------------------------------------------------
    def layer_info(self) -> list[dict]:
        """Per layer: name, type, output_shape, params, macs (per example), trainable."""
        rows, shape = [], self.input_shape
        for layer in self.layers:
            out = layer.output_shape(shape)
            rows.append({"name": layer.name, "type": type(layer).__name__, "output_shape": out,
                         "params": layer.num_params(), "macs": layer.macs(shape), "trainable": layer.trainable})
            shape = out
        return rows

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers)

    def macs(self) -> int:
        return sum(r["macs"] for r in self.layer_info())

    def summary(self) -> str:
        """A table: layer, type, output shape, parameters, MACs per example; then the totals."""
        rows = self.layer_info()
        wn = max(6, *(len(r["name"]) for r in rows)) + 2
        wt = max(5, *(len(r["type"]) for r in rows)) + 2
        lines = [f"{'layer':<{wn}}{'type':<{wt}}{'output shape':<16}{'params':>10}{'MACs':>14}"]
        for r in rows:
            frozen = "  (frozen)" if not r["trainable"] else ""
            lines.append(f"{r['name']:<{wn}}{r['type']:<{wt}}{str(r['output_shape']):<16}"
                         f"{r['params']:>10,}{r['macs']:>14,}{frozen}")
        lines.append(f"{'total':<{wn + wt + 16}}{self.num_params():>10,}{self.macs():>14,}")
        lines.append(f"input {self.input_shape}, dtype {self.dtype.name}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({layer.name}): {layer!r}{'' if layer.trainable else '  [frozen]'}"
                          for layer in self.layers)
        return f"Sequential(input_shape={self.input_shape},\n{inner}\n)"

    def config(self) -> dict:
        """JSON-able architecture: enough to rebuild the model (without its weights)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "input_shape": list(self.input_shape),
                "dtype": self.dtype.name, "layers": [layer.config() for layer in self.layers],
                "frozen": [layer.name for layer in self.layers if not layer.trainable]}

    @classmethod
    def from_config(cls, config: dict, rng=0) -> "Sequential":
        model = cls([layer_from_config(c) for c in config["layers"]], config["input_shape"], rng=rng,
                    dtype=np.dtype(config.get("dtype", "float32")))
        if config.get("frozen"):
            model.freeze(config["frozen"])
        return model

    # ---- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """{'layer.param' or 'layer.buffer': copy}, parameters and BatchNorm running statistics."""
        return {f"{layer.name}.{k}": v.copy() for layer in self.layers
                for k, v in list(layer.params.items()) + list(layer.buffers.items())}

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays into the model in place; every key must match in name and shape."""
        own = {f"{layer.name}.{k}": v for layer in self.layers
               for k, v in list(layer.params.items()) + list(layer.buffers.items())}
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or extra:
            raise BundleError(f"missing arrays {missing}, unexpected arrays {extra}")
        for key, dst in own.items():
            src = np.asarray(state[key])
            if src.shape != dst.shape:
                raise BundleError(f"{key} has shape {src.shape}, model expects {dst.shape}")
            dst[...] = src

    def random_state(self) -> dict:
        """JSON-able states of the layers' own generators (dropout masks), for bit-exact resume."""
        return {layer.name: layer.rng.bit_generator.state for layer in self.layers if isinstance(layer, Dropout)}

    def set_random_state(self, state: dict) -> None:
        for name, st in state.items():
            self[name].rng.bit_generator.state = st

    def save(self, path) -> None:
        """Write one .npz: every state_dict array plus '__architecture__' (UTF-8 JSON bytes)."""
        arrays = self.state_dict()
        arrays["__architecture__"] = np.frombuffer(json.dumps(self.config()).encode("utf-8"), np.uint8)
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> "Sequential":
        """Rebuild a model written by `save`; raises BundleError if the file is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise BundleError(f"{path}: no such model file") from None
        except (OSError, ValueError, EOFError) as exc:
            raise BundleError(f"{path}: not a readable .npz model file ({exc})") from None
        if "__architecture__" not in arrays:
            raise BundleError(f"{path}: no '__architecture__' entry; not written by Sequential.save")
        try:
            config = json.loads(arrays.pop("__architecture__").tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path}: architecture JSON is corrupt ({exc})") from None
        if config.get("format") != FORMAT or config.get("version") != FORMAT_VERSION:
            raise BundleError(f"{path}: format {config.get('format')!r} version {config.get('version')!r}, "
                              f"expected {FORMAT!r} version {FORMAT_VERSION}")
        try:
            model = cls.from_config(config)
        except (TypeError, ValueError, KeyError) as exc:
            raise BundleError(f"{path}: architecture cannot be rebuilt ({exc})") from None
        try:
            model.load_state_dict(arrays)
        except BundleError as exc:
            raise BundleError(f"{path}: weights do not fit the architecture ({exc})") from None
        return model

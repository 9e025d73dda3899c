"""The int8 model: post-training quantization of the folded ops, its storage in a bundle, and the
integer-only reference forward pass (the oracle that onnxruntime and the C runtime must match).

Scheme (TFLite's int8 spec): weights int8 symmetric per output channel (zero point 0, range
[-127, 127]); activations int8 asymmetric per tensor (real = scale * (q - zp)); bias int32 at scale
s_in * s_w[c]; each op's output requantized by the rule of fixedpoint.py with M, n per output
channel; ReLU / ReLU6 folded into [act_min, act_max]. Average pooling keeps the input's scale and
zero point and divides by the window size through the same rule (padded cells count as zeros).
The model input is the int8 feature (scale and zero point from the FeatureConfig). A pool with
taps (graph.py) and its "tappool" ops share one output grid, calibrated on the whole concatenated
embedding; each tappool requantizes its own window sum onto it (its own M, n) and the pool
appends those int8 vectors to its output.

QLayer fields (per example shapes): those of graph.FloatOp plus
    weight int8, bias int32 (Co,), multiplier int32 (Co,) or (1,), shift int32 (same)
    in_scale, in_zp, out_scale, out_zp, act_min, act_max, weight_scale float64 (Co,)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekws.errors import BundleError, EdgekwsError
from edgekws.quant.fixedpoint import INT32_MAX, INT32_MIN, quantize_multiplier, requantize
from edgekws.quant.graph import FloatOp, _windows

SCHEME = {
    "weights": "int8 symmetric per output channel, zero point 0, [-127, 127]",
    "activations": "int8 asymmetric per tensor",
    "bias": "int32 at scale input_scale * weight_scale[c]",
    "requantization": "y = clamp(zp + round_half_away(clamp32(acc + bias) * M / 2^n), act_min, act_max); "
                      "M int32, n in [1, 62], computed in int64",
}
OPS = ("conv", "depthwise", "dense", "avgpool", "tappool")
POOLS = ("avgpool", "tappool")


@dataclass
class QLayer:
    name: str
    op: str
    in_shape: tuple
    out_shape: tuple
    kernel: tuple
    stride: tuple
    pads: tuple
    act: str | None
    in_scale: float
    in_zp: int
    out_scale: float
    out_zp: int
    act_min: int
    act_max: int
    multiplier: np.ndarray
    shift: np.ndarray
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    weight_scale: np.ndarray | None = None
    folded: list = field(default_factory=list)
    taps: list = field(default_factory=list)

    def meta(self) -> dict:
        """JSON-able description (the arrays live in int8.npz)."""
        return {"name": self.name, "op": self.op, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape), "kernel": list(self.kernel), "stride": list(self.stride),
                "pads": [list(p) for p in self.pads], "act": self.act, "in_scale": self.in_scale,
                "in_zp": self.in_zp, "out_scale": self.out_scale, "out_zp": self.out_zp,
                "act_min": self.act_min, "act_max": self.act_max, "folded": list(self.folded),
                **({"taps": list(self.taps)} if self.taps else {})}


@dataclass
class QuantModel:
    """layers run in order; input: int8 features (N, *input_shape) at (input_scale, input_zp)."""

    layers: list[QLayer]
    input_shape: tuple
    calibration: dict = field(default_factory=dict)

    @property
    def input_scale(self) -> float:
        return self.layers[0].in_scale

    @property
    def input_zp(self) -> int:
        return self.layers[0].in_zp

    @property
    def output_scale(self) -> float:
        return self.layers[-1].out_scale

    @property
    def output_zp(self) -> int:
        return self.layers[-1].out_zp

    @property
    def num_classes(self) -> int:
        return int(self.layers[-1].out_shape[-1])

    # ---- storage ----------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Contents of int8.npz: '<layer>.weight|bias|multiplier|shift|weight_scale'."""
        out = {}
        for q in self.layers:
            out[f"{q.name}.multiplier"] = q.multiplier.astype(np.int32)
            out[f"{q.name}.shift"] = q.shift.astype(np.int32)
            if q.weight is not None:
                out[f"{q.name}.weight"] = q.weight.astype(np.int8)
                out[f"{q.name}.bias"] = q.bias.astype(np.int32)
                out[f"{q.name}.weight_scale"] = q.weight_scale.astype(np.float64)
        return out

    def meta(self) -> dict:
        """The manifest's "quantization" entry."""
        return {"scheme": dict(SCHEME), "input_shape": list(self.input_shape),
                "input": {"scale": self.input_scale, "zero_point": self.input_zp},
                "output": {"scale": self.output_scale, "zero_point": self.output_zp},
                "calibration": self.calibration, "layers": [q.meta() for q in self.layers]}

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict[str, np.ndarray], where: str = "int8.npz") -> "QuantModel":
        layers = []
        try:
            for m in meta["layers"]:
                name = m["name"]
                has_w = m["op"] not in POOLS
                layers.append(QLayer(
                    name=name, op=m["op"], in_shape=tuple(m["in_shape"]), out_shape=tuple(m["out_shape"]),
                    kernel=tuple(m["kernel"]), stride=tuple(m["stride"]), pads=tuple(tuple(p) for p in m["pads"]),
                    act=m["act"], in_scale=float(m["in_scale"]), in_zp=int(m["in_zp"]),
                    out_scale=float(m["out_scale"]), out_zp=int(m["out_zp"]), act_min=int(m["act_min"]),
                    act_max=int(m["act_max"]), multiplier=arrays[f"{name}.multiplier"].astype(np.int32),
                    shift=arrays[f"{name}.shift"].astype(np.int32),
                    weight=arrays[f"{name}.weight"].astype(np.int8) if has_w else None,
                    bias=arrays[f"{name}.bias"].astype(np.int32) if has_w else None,
                    weight_scale=arrays[f"{name}.weight_scale"] if has_w else None,
                    folded=list(m.get("folded", [])), taps=list(m.get("taps", []))))
            model = cls(layers, tuple(meta["input_shape"]), dict(meta.get("calibration", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: quantization parameters are incomplete ({exc!r})") from None
        model.check()
        return model

    def check(self) -> None:
        """Validate shapes and ranges; raises EdgekwsError naming the layer."""
        side = {}
        for q in self.layers:
            co = q.out_shape[-1]
            where = f"int8 layer {q.name!r} ({q.op})"
            if q.op not in OPS:
                raise EdgekwsError(f"{where}: unknown op")
            if q.op == "tappool":
                if len(q.in_shape) != 3 or tuple(q.out_shape) != (q.in_shape[2],) or \
                        tuple(q.kernel) != tuple(q.in_shape[:2]):
                    raise EdgekwsError(f"{where}: must pool a whole (H, W, C) map to (C,)")
                side[q.name] = co
            if q.taps:
                if q.op != "avgpool" or len(q.out_shape) != 1 or any(t not in side for t in q.taps):
                    raise EdgekwsError(f"{where}: taps {q.taps} must name earlier tappool layers of a global pool")
                if co != q.in_shape[-1] + sum(side[t] for t in q.taps):
                    raise EdgekwsError(f"{where}: output of {co} values is not its {q.in_shape[-1]} channels "
                                       "plus its taps")
            nmult = 1 if q.op in POOLS else co
            if q.multiplier.shape != (nmult,) or q.shift.shape != (nmult,):
                raise EdgekwsError(f"{where}: multiplier/shift must have shape ({nmult},)")
            if np.any(q.shift < 1) or np.any(q.shift > 62) or np.any(q.multiplier < 0):
                raise EdgekwsError(f"{where}: shift must be in [1, 62] and multiplier >= 0")
            if not -128 <= q.act_min <= q.act_max <= 127:
                raise EdgekwsError(f"{where}: activation clamp [{q.act_min}, {q.act_max}] outside int8")
            if not (-128 <= q.in_zp <= 127 and -128 <= q.out_zp <= 127):   # as the C blob check
                raise EdgekwsError(f"{where}: zero points ({q.in_zp}, {q.out_zp}) must be int8 values")
            expect = {"conv": (co, *q.kernel, q.in_shape[-1]), "depthwise": (*q.kernel, co),
                      "dense": (co, int(np.prod(q.in_shape)))}.get(q.op)
            if expect is not None and (q.weight is None or q.weight.shape != expect or q.bias.shape != (co,)):
                raise EdgekwsError(f"{where}: weight must be {expect} and bias ({co},)")


# ---- post-training quantization ---------------------------------------------------------------

def activation_range(lo: float, hi: float, act: str | None) -> tuple[float, int]:
    """Calibrated real range -> (scale, zero_point) of an int8 per-tensor activation.
    The range always includes 0 so that zero (and padding) is exact."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if act == "relu6":
        hi = min(hi, 6.0)
    if hi - lo < 1e-8:
        # an output that is (all but) constant zero on the calibration data, e.g. a dead layer: any
        # grid represents it, and [0, 1] keeps the next layer's bias / (s_in * s_w) inside int32
        hi = lo + 1.0
    scale = (hi - lo) / 255.0
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return scale, zp


def quantize_weights(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8: w float -> (q int8, scale (C,) float64); scale = max|w| / 127."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=other) if other else np.abs(w)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def quantize_ops(ops: list[FloatOp], ranges: list[tuple[float, float]], input_scale: float,
                 input_zp: int, calibration: dict | None = None) -> QuantModel:
    """Folded float ops + calibrated output range (lo, hi) per op -> QuantModel."""
    layers = []
    s_in, zp_in = float(input_scale), int(input_zp)
    # a tappool writes onto the grid of the pool that appends it (calibrated on the whole embedding)
    grid = {t: activation_range(lo, hi, None) for fop, (lo, hi) in zip(ops, ranges) for t in fop.taps}
    for fop, (lo, hi) in zip(ops, ranges):
        where = f"layer {fop.name!r}"
        if fop.op in POOLS:
            # Its own calibrated range: an average spans far less than its input (a global pool of
            # ReLU maps used ~30 of 256 levels with the input's scale), and the pooled output is
            # the embedding that last-layer retraining learns from.
            area = fop.kernel[0] * fop.kernel[1]
            s_out, zp_out = grid[fop.name] if fop.op == "tappool" else activation_range(lo, hi, None)
            m, n = quantize_multiplier(s_in / (area * s_out), where)
            layers.append(QLayer(fop.name, fop.op, fop.in_shape, fop.out_shape, fop.kernel, fop.stride,
                                 fop.pads, None, s_in, zp_in, s_out, zp_out, -128, 127,
                                 np.array([m], np.int32), np.array([n], np.int32), folded=list(fop.folded),
                                 taps=list(fop.taps)))
            if fop.op == "avgpool":  # a tappool leaves the main chain's input as it is
                s_in, zp_in = s_out, zp_out
            continue
        axis = {"conv": 0, "depthwise": 2, "dense": 0}[fop.op]
        wq, ws = quantize_weights(fop.weight, axis)
        s_out, zp_out = activation_range(lo, hi, fop.act)
        if not (np.isfinite(s_out) and s_out < np.finfo(np.float32).max):
            raise EdgekwsError(f"{where}: output scale {s_out:g} is not a float32 number (calibrated range "
                               f"{lo:g} .. {hi:g}); the float model's values are out of range")
        b = np.round(fop.bias / (s_in * ws))
        if np.any(b < INT32_MIN) | np.any(b > INT32_MAX):
            raise EdgekwsError(f"{where}: a bias is {np.abs(b).max():.3g} steps of the int32 accumulator, beyond "
                               "int32 (its input's range is tiny against the bias): the int8 model would not "
                               "follow the float one")
        bias = b.astype(np.int32)
        mults, shifts = zip(*(quantize_multiplier(s_in * w / s_out, where) for w in ws))
        act_min, act_max = -128, 127
        if fop.act in ("relu", "relu6"):
            act_min = max(act_min, zp_out)
        if fop.act == "relu6":
            act_max = int(min(act_max, zp_out + round(6.0 / s_out)))
        layers.append(QLayer(fop.name, fop.op, fop.in_shape, fop.out_shape, fop.kernel, fop.stride, fop.pads,
                             fop.act, s_in, zp_in, s_out, zp_out, act_min, act_max,
                             np.array(mults, np.int32), np.array(shifts, np.int32), weight=wq, bias=bias,
                             weight_scale=ws, folded=list(fop.folded)))
        s_in, zp_in = s_out, zp_out
    qm = QuantModel(layers, tuple(ops[0].in_shape), dict(calibration or {}))
    qm.check()
    return qm


# ---- the integer reference forward pass --------------------------------------------------------

def _int_windows(x: np.ndarray, q: QLayer) -> np.ndarray:
    """x (N, H, W, C) int -> (N, Ho, Wo, kh, kw, C) int32 windows of (x - in_zp), padding = 0."""
    fop = FloatOp(q.name, q.op, q.in_shape, q.out_shape, kernel=q.kernel, stride=q.stride, pads=q.pads)
    return _windows(x.astype(np.int32) - np.int32(q.in_zp), fop, np.int32(0))


def layer_forward(q: QLayer, x: np.ndarray) -> np.ndarray:
    """One int8 layer, integers only: x (N, *in_shape) int8 -> (N, *out_shape) int8."""
    n = x.shape[0]
    if q.op == "dense":
        acc = (x.reshape(n, -1).astype(np.int32) - np.int32(q.in_zp)) @ q.weight.astype(np.int32).T
    else:
        cols = _int_windows(x.reshape(n, *q.in_shape), q)
        if q.op == "conv":
            k = cols[0, 0, 0].size
            acc = cols.reshape(-1, k) @ q.weight.reshape(q.weight.shape[0], k).astype(np.int32).T
        elif q.op == "depthwise":
            acc = np.einsum("nhwijc,ijc->nhwc", cols, q.weight.astype(np.int32), dtype=np.int32)
        else:
            acc = cols.sum(axis=(3, 4), dtype=np.int32)
    bias = q.bias if q.bias is not None else 0
    y = requantize(acc, bias, q.multiplier, q.shift, q.out_zp, q.act_min, q.act_max)
    if q.taps:  # the caller appends the tapped vectors (run_layers)
        return y.reshape(n, -1)
    return y.reshape(n, *q.out_shape)


def run_layers(layers, x: np.ndarray, outs: list | None = None) -> np.ndarray:
    """The int8 layers in order over one batch; a tappool keeps its vector aside for the pool that
    appends it. outs: when given, each layer's output is appended to outs[k]."""
    side = {}
    for k, q in enumerate(layers):
        if q.op == "tappool":
            y = side[q.name] = layer_forward(q, x)
        else:
            x = y = layer_forward(q, x)
            if q.taps:
                x = y = np.concatenate([x] + [side[t] for t in q.taps], axis=1)
        if outs is not None:
            outs[k].append(y)
    return x


def same_example_shape(got, want) -> bool:
    """Is one example of shape `got` the model input `want`, up to trailing 1s ((49, 40) is
    (49, 40, 1))? Transposed (40, 49) features, which hold as many values, are not."""
    strip = lambda s: tuple(int(v) for v in s)[:max([i + 1 for i, v in enumerate(s) if v != 1] or [0])]  # noqa: E731
    return strip(got) == strip(want)


def check_example_shape(features, input_shape, what: str) -> None:
    """Refuse features whose per-example shape is not the model input (same_example_shape)."""
    shape = np.shape(features)
    if len(shape) < 2 or not same_example_shape(shape[1:], input_shape):
        raise EdgekwsError(f"{what}: features of shape {tuple(shape[1:])} per example, model expects "
                           f"{tuple(input_shape)} (frames x bands)")


def int8_forward(qm: QuantModel, features: np.ndarray, collect: bool = False, batch: int = 256):
    """features (N, T, F) or (N, *input_shape) int8 -> logits (N, K) int8 (and every layer's output
    when collect=True). No floating point anywhere."""
    x = np.asarray(features)
    if x.dtype != np.int8:
        raise EdgekwsError(f"int8 forward: features must be int8, got {x.dtype}")
    n = x.shape[0]
    check_example_shape(x, qm.input_shape, "int8 forward")
    x = x.reshape(n, *qm.input_shape)
    if n == 0:  # no windows: empty logits (and empty layer outputs) of the right shapes
        empty = [np.zeros((0, *q.out_shape), np.int8) for q in qm.layers]
        logits = np.zeros((0, int(np.prod(qm.layers[-1].out_shape))), np.int8)
        return (logits, empty) if collect else logits
    outs, chunks = [[] for _ in qm.layers], []
    for i in range(0, n, batch):
        chunks.append(run_layers(qm.layers, x[i:i + batch], outs if collect else None))
    logits = np.concatenate(chunks).reshape(n, -1)
    if collect:
        return logits, [np.concatenate(o) for o in outs]
    return logits

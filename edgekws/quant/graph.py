"""From a numpy-engine Sequential to the op list every exporter shares: BatchNorm folded into the
preceding Conv2D / DepthwiseConv2D / Dense, ReLU / ReLU6 attached as the op's activation, Dropout
dropped, Flatten a no-op (NHWC is already row-major), pooling kept. Also the float forward pass
of that folded list (float64), used for calibration and as the float ONNX reference.

Anything else (BatchNorm not after a compute layer, MaxPool2D, GRU, a ReLU after pooling, ...)
raises EdgekwsError naming the layer.

A GlobalAvgPool with taps (a multi-layer embedding) becomes, besides its own "avgpool" op, one
"tappool" op per tap, placed right after the op whose output it reads: it averages that output
over its positions into a side vector and leaves the main chain alone (the next op reads the same
input as the tap did). The pool appends the side vectors, in order, to its own output; `taps`
names them. Engines keep only those vectors (a few bytes), never the tapped maps.

FloatOp fields, shapes per example (no batch axis):
    op        "conv" | "depthwise" | "dense" | "avgpool" | "tappool"
    in_shape  (H, W, C) or (F,)         out_shape (Ho, Wo, Co) or (units,)
    weight    conv (Co, kh, kw, C), depthwise (kh, kw, C), dense (units, F); None for avgpool
    bias      (Co,) float64 (zeros when the layer had none); None for avgpool
    kernel, stride (kh, kw), (sh, sw);  pads ((top, bottom), (left, right))
    act       None | "relu" | "relu6"
    taps      avgpool: names of the tappool ops whose vectors follow its own output ([] otherwise)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekws.errors import EdgekwsError
from edgekws.nn import padding as pad

SUPPORTED = "Conv2D, DepthwiseConv2D, Dense, BatchNorm (after one of those), ReLU, ReLU6, AvgPool2D, " \
            "GlobalAvgPool, Flatten, Dropout"


@dataclass
class FloatOp:
    name: str
    op: str
    in_shape: tuple
    out_shape: tuple
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    pads: tuple = ((0, 0), (0, 0))
    act: str | None = None
    folded: list = field(default_factory=list)
    taps: list = field(default_factory=list)


def fold_model(model) -> list[FloatOp]:
    """Sequential (eval-mode statistics) -> [FloatOp]. Raises EdgekwsError naming an unsupported layer."""
    from edgekws.nn import (AvgPool2D, BatchNorm, Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten,
                            GlobalAvgPool, ReLU, ReLU6, fold_batchnorm)

    ops: list[FloatOp] = []
    known = (AvgPool2D, BatchNorm, Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten, GlobalAvgPool, ReLU, ReLU6)
    for layer in model.layers:   # an unsupported layer first: its name says more than a structural error
        if not isinstance(layer, known):
            raise EdgekwsError(f"layer {layer.name!r} ({type(layer).__name__}): not supported by int8 "
                               f"quantization and export (supported: {SUPPORTED})")
    shape = tuple(model.input_shape)
    last_compute = None  # the op a BatchNorm / activation may still fold into
    made_by: dict[str, FloatOp] = {}  # layer name -> the op whose output is that layer's output
    for layer in model.layers:
        kind = type(layer).__name__
        out = tuple(layer.output_shape(shape))
        where = f"layer {layer.name!r} ({kind})"
        if isinstance(layer, (Conv2D, DepthwiseConv2D, Dense)):
            if isinstance(layer, Dense) and len(shape) != 1:
                raise EdgekwsError(f"{where}: Dense needs a flat input, got {shape}")
            if not isinstance(layer, Dense) and len(shape) != 3:
                raise EdgekwsError(f"{where}: needs an (H, W, C) input, got {shape}")
            w = layer.params["weight"].astype(np.float64)
            b = layer.params["bias"].astype(np.float64) if "bias" in layer.params else np.zeros(out[-1])
            fop = FloatOp(layer.name, {Conv2D: "conv", DepthwiseConv2D: "depthwise", Dense: "dense"}[type(layer)],
                          shape, out, weight=w, bias=b)
            if not isinstance(layer, Dense):
                fop.kernel, fop.stride = tuple(layer.kernel_size), tuple(layer.stride)
                fop.pads, _ = pad.resolve(layer.padding, shape[:2], layer.kernel_size, layer.stride)
            ops.append(fop)
            last_compute = fop
        elif isinstance(layer, BatchNorm):
            if last_compute is None or last_compute.act is not None or last_compute.folded:
                raise EdgekwsError(f"{where}: a BatchNorm must directly follow a Conv2D, DepthwiseConv2D "
                                   "or Dense to be folded; int8 export does not support it here")
            src = _shadow(last_compute, layer)
            w, b = fold_batchnorm(src, layer)
            last_compute.weight, last_compute.bias = w.astype(np.float64), b.astype(np.float64)
            last_compute.folded.append(layer.name)
        elif isinstance(layer, (ReLU, ReLU6)):
            if last_compute is None or last_compute.act is not None:
                raise EdgekwsError(f"{where}: an activation must follow a Conv2D, DepthwiseConv2D or Dense "
                                   "(optionally after its BatchNorm) to fold into its int8 clamp")
            last_compute.act = "relu" if isinstance(layer, ReLU) else "relu6"
            last_compute.folded.append(layer.name)
        elif isinstance(layer, (AvgPool2D, GlobalAvgPool)):
            if len(shape) != 3:
                raise EdgekwsError(f"{where}: needs an (H, W, C) input, got {shape}")
            if isinstance(layer, GlobalAvgPool):
                fop = FloatOp(layer.name, "avgpool", shape, out, kernel=tuple(shape[:2]), stride=tuple(shape[:2]))
                for j, tap in enumerate(layer.taps):
                    fop.taps.append(_insert_tap(ops, made_by, f"{layer.name}_tap{j}", tap, where))
            else:
                pads, _ = pad.resolve(layer.padding, shape[:2], layer.pool_size, layer.stride)
                fop = FloatOp(layer.name, "avgpool", shape, out, kernel=tuple(layer.pool_size),
                              stride=tuple(layer.stride), pads=pads)
            ops.append(fop)
            last_compute = None
        elif isinstance(layer, (Dropout, Flatten)):
            # Dropout is the identity at inference; NHWC is row-major, so Flatten moves no data and
            # the next Dense reads the previous op's output as a vector.
            if isinstance(layer, Flatten) and not ops:
                raise EdgekwsError(f"{where}: Flatten as the first layer is not supported by int8 export")
        else:
            raise EdgekwsError(f"{where}: not supported by int8 quantization and export "
                               f"(supported: {SUPPORTED})")
        if ops:
            made_by[layer.name] = ops[-1]
        shape = out
    if not ops or ops[-1].op == "avgpool":
        raise EdgekwsError("int8 export: the model must end with a Dense (or convolution) layer")
    return ops


def _insert_tap(ops: list[FloatOp], made_by: dict, name: str, tap: str, where: str) -> str:
    """Put a "tappool" op reading layer `tap`'s output right after the op that makes it."""
    src = made_by.get(tap)
    if src is None or len(src.out_shape) != 3:
        raise EdgekwsError(f"{where}: tap {tap!r} must be the (H, W, C) output of an earlier layer")
    if src.folded and tap != src.folded[-1] or not src.folded and tap != src.name:
        raise EdgekwsError(f"{where}: tap {tap!r} is folded into {src.name!r} (whose output is "
                           f"{(src.folded or [src.name])[-1]!r}); int8 export can only tap an op's output")
    h, w, c = src.out_shape
    k = ops.index(src) + 1
    while k < len(ops) and ops[k].op == "tappool":
        k += 1
    ops.insert(k, FloatOp(name, "tappool", src.out_shape, (c,), kernel=(h, w), stride=(h, w)))
    return name


def main_chain(ops) -> list:
    """The ops (or QLayers) that pass data along: every op but the side "tappool" ones."""
    return [o for o in ops if o.op != "tappool"]


def _shadow(fop: FloatOp, bn):
    """A stand-in layer carrying fop's current weights for nn.fold_batchnorm."""
    from edgekws.nn import Conv2D, Dense, DepthwiseConv2D

    cls = {"conv": Conv2D, "depthwise": DepthwiseConv2D, "dense": Dense}[fop.op]
    obj = cls.__new__(cls)
    obj.params = {"weight": fop.weight, "bias": fop.bias}
    obj.name = fop.name
    obj.dtype = np.dtype(np.float64)
    return obj


# ---- float forward pass of the folded ops (float64) -------------------------------------------

def _windows(x: np.ndarray, fop: FloatOp, fill) -> np.ndarray:
    """x (N, H, W, C) -> (N, Ho, Wo, kh, kw, C) strided copy of every window (pads filled with `fill`)."""
    (t, b), (l, r) = fop.pads
    if t or b or l or r:
        xp = np.full((x.shape[0], x.shape[1] + t + b, x.shape[2] + l + r, x.shape[3]), fill, x.dtype)
        xp[:, t:t + x.shape[1], l:l + x.shape[2]] = x
    else:
        xp = x
    (kh, kw), (sh, sw) = fop.kernel, fop.stride
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    v = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    v = v[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]
    return np.ascontiguousarray(v.transpose(0, 1, 2, 4, 5, 3))


def float_op_forward(fop: FloatOp, x: np.ndarray) -> np.ndarray:
    """One folded op in float64: x (N, *in_shape) -> (N, *out_shape)."""
    n = x.shape[0]
    if fop.op == "dense":
        y = x.reshape(n, -1) @ fop.weight.T + fop.bias
    elif fop.op == "conv":
        cols = _windows(x.reshape(n, *fop.in_shape), fop, 0.0)
        y = cols.reshape(-1, cols[0, 0, 0].size) @ fop.weight.reshape(fop.weight.shape[0], -1).T + fop.bias
    elif fop.op == "depthwise":
        cols = _windows(x.reshape(n, *fop.in_shape), fop, 0.0)
        y = np.einsum("nhwijc,ijc->nhwc", cols, fop.weight) + fop.bias
    else:  # avgpool / tappool
        cols = _windows(x.reshape(n, *fop.in_shape), fop, 0.0)
        y = cols.sum(axis=(3, 4)) / (fop.kernel[0] * fop.kernel[1])
    if fop.act == "relu":
        y = np.maximum(y, 0)
    elif fop.act == "relu6":
        y = np.clip(y, 0, 6)
    if fop.taps:  # float_forward appends the tapped vectors
        return y.reshape(n, -1)
    return y.reshape(n, *fop.out_shape)


def float_forward(ops: list[FloatOp], x: np.ndarray, collect: bool = False):
    """x (N, *in_shape of ops[0]) float -> output (N, *out_shape of ops[-1]) float64
    (and the list of every op's output when collect=True)."""
    outs, side = [], {}
    x = np.asarray(x, np.float64)
    for fop in ops:
        if fop.op == "tappool":
            y = side[fop.name] = float_op_forward(fop, x)
        else:
            x = y = float_op_forward(fop, x)
            if fop.taps:
                x = y = np.concatenate([x.reshape(len(x), -1)] + [side[t] for t in fop.taps], axis=1)
        if collect:
            outs.append(y)
    return (x, outs) if collect else x

"""From a numpy-engine Sequential to the op list every exporter shares: BatchNorm folded into the
preceding Conv2D / DepthwiseConv2D / Dense, ReLU / ReLU6 attached as the op's activation, Dropout
dropped, Flatten a no-op (NHWC is already row-major), pooling kept. Also the float forward pass
of that folded list (float64), used for calibration and as the float ONNX reference.

Anything else (BatchNorm not after a compute layer, MaxPool2D, GRU, a ReLU after pooling, ...)
raises EdgekwsError naming the layer.

FloatOp fields, shapes per example (no batch axis):
    op        "conv" | "depthwise" | "dense" | "avgpool"
    in_shape  (H, W, C) or (F,)         out_shape (Ho, Wo, Co) or (units,)
    weight    conv (Co, kh, kw, C), depthwise (kh, kw, C), dense (units, F); None for avgpool
    bias      (Co,) float64 (zeros when the layer had none); None for avgpool
    kernel, stride (kh, kw), (sh, sw);  pads ((top, bottom), (left, right))
    act       None | "relu" | "relu6"
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


def fold_model(model) -> list[FloatOp]:
    """Sequential (eval-mode statistics) -> [FloatOp]. Raises EdgekwsError naming an unsupported layer."""
    from edgekws.nn import (AvgPool2D, BatchNorm, Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten,
                            GlobalAvgPool, ReLU, ReLU6, fold_batchnorm)

    ops: list[FloatOp] = []
    shape = tuple(model.input_shape)
    last_compute = None  # the op a BatchNorm / activation may still fold into
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
        shape = out
    if not ops or ops[-1].op == "avgpool":
        raise EdgekwsError("int8 export: the model must end with a Dense (or convolution) layer")
    return ops


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
    else:
        cols = _windows(x.reshape(n, *fop.in_shape), fop, 0.0)
        y = cols.sum(axis=(3, 4)) / (fop.kernel[0] * fop.kernel[1])
    if fop.act == "relu":
        y = np.maximum(y, 0)
    elif fop.act == "relu6":
        y = np.clip(y, 0, 6)
    return y.reshape(n, *fop.out_shape)


def float_forward(ops: list[FloatOp], x: np.ndarray, collect: bool = False):
    """x (N, *in_shape of ops[0]) float -> output (N, *out_shape of ops[-1]) float64
    (and the list of every op's output when collect=True)."""
    outs = []
    x = np.asarray(x, np.float64)
    for fop in ops:
        x = float_op_forward(fop, x)
        if collect:
            outs.append(x)
    return (x, outs) if collect else x

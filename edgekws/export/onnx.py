"""ONNX export: model.onnx (float, BatchNorm folded) and model.int8.onnx (integer operators only).

Both graphs take the int8 feature tensor "features" (N, T, F) (or (N, *input_shape) when the model
input has more than one channel) and keep the bundle's weights in their NHWC / [out, in] layouts as
initializers; Transpose nodes on those constants (folded by onnxruntime at load) give ONNX its
NCHW / OIHW order, so the export itself never transposes data.

model.int8.onnx computes the numpy integer reference bit for bit. It does not use QLinearConv or
QDQ: onnxruntime requantizes those in float32 with round-half-to-even, which a fixed-point
multiplier + shift cannot match in general. Instead each layer is
    ConvInteger / MatMulInteger (int8 x int8 -> int32, input zero point as x_zero_point; padding
    counts as the zero point, i.e. real zero) -> Cast int64 -> Add bias -> Clip int32 range
    -> Mul M -> p + Sign(p) * 2^(n-1) -> Div 2^n (int64 Div truncates toward zero, so this is
    rounding half away from zero) -> Add zp_out -> Clip [act_min, act_max] -> Cast int8,
the rule of edgekws/quant/fixedpoint.py. Depthwise convolution is ConvInteger with group=C; average
pooling is a group=C ConvInteger with all-ones weights (the integer window sum) + the same rule.
A tappool (a pool tap, edgekws/quant/graph.py) pools the tensor in flight into a side vector and
its pool Concats those vectors after its own output; both graphs keep the tapped tensor by name.
The output "logits" is int8 (N, K); real = output_scale * (q - output_zp) (in metadata_props).
"""

from __future__ import annotations

import json

import numpy as np

from edgekws.errors import EdgekwsError, require
from edgekws.quant.fixedpoint import INT32_MAX, INT32_MIN

OPSET = 17
IR_VERSION = 8


class _Graph:
    """A small builder: unique names, initializers, nodes."""

    def __init__(self):
        self.onnx = require("onnx", "pip install onnx", "ONNX export")
        self.h = self.onnx.helper
        self.nh = self.onnx.numpy_helper
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base: str, value) -> str:
        name = self.name(base)
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.name(base)
        self.nodes.append(self.h.make_node(op, inputs, [out], name=out + "_" + op, **attrs))
        return out

    def model(self, inp: str, in_type, in_shape, out: str, out_type, out_shape, doc: str, metadata: dict):
        h = self.h
        graph = h.make_graph(self.nodes, "edgekws", [h.make_tensor_value_info(inp, in_type, in_shape)],
                             [h.make_tensor_value_info(out, out_type, out_shape)], self.inits)
        graph.doc_string = doc
        m = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="edgekws")
        m.ir_version = IR_VERSION
        h.set_model_props(m, {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
        self.onnx.checker.check_model(m, full_check=True)
        return m


def _input_layout(input_shape) -> tuple[list, bool]:
    """ONNX input dims (after N) and whether a trailing channel of 1 is dropped."""
    shape = list(input_shape)
    if len(shape) == 3 and shape[2] == 1:
        return shape[:2], True
    return shape, False


def _pads(pads) -> list[int]:
    (t, b), (l, r) = pads
    return [int(t), int(l), int(b), int(r)]


def _enter(g: _Graph, x: str, input_shape) -> str:
    """Reshape to (N, *input_shape) and, for images, NHWC -> NCHW."""
    x = g.node("Reshape", [x, g.const("in_shape", np.array([-1, *input_shape], np.int64))], "input")
    if len(input_shape) == 3:
        x = g.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    return x


def _flat_for_dense(g: _Graph, x: str, rank: int) -> str:
    """A 4-D NCHW tensor -> NHWC-ordered (N, H*W*C), the order the dense weights expect."""
    if rank == 4:
        x = g.node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
        x = g.node("Flatten", [x], "flat", axis=1)
    return x


def _conv_weight(g: _Graph, op: str, w: np.ndarray, base: str) -> str:
    """Our weight layouts -> ONNX [M, C/group, kh, kw] through Transpose nodes on the constant."""
    c = g.const(base, w)
    if op == "conv":  # (Co, kh, kw, C) -> (Co, C, kh, kw)
        return g.node("Transpose", [c], base + "_oihw", perm=[0, 3, 1, 2])
    t = g.node("Transpose", [c], base + "_ckk", perm=[2, 0, 1])  # depthwise (kh, kw, C) -> (C, kh, kw)
    return g.node("Unsqueeze", [t, g.const("axis1", np.array([1], np.int64))], base + "_c1kk")


def _metadata(labels, feature_config: dict, qmeta: dict | None, kind: str) -> dict:
    from edgekws import __version__

    md = {"edgekws.version": __version__, "edgekws.kind": kind, "edgekws.labels": list(labels),
          "edgekws.feature_config": feature_config,
          "edgekws.input": "int8 features 'features' (N, T, F); real = input_scale * (q - input_zero_point)"}
    if qmeta is not None:
        md["edgekws.quantization"] = qmeta
        md["edgekws.input_scale"] = repr(qmeta["input"]["scale"])
        md["edgekws.input_zero_point"] = str(qmeta["input"]["zero_point"])
        md["edgekws.output_scale"] = repr(qmeta["output"]["scale"])
        md["edgekws.output_zero_point"] = str(qmeta["output"]["zero_point"])
    return md


# ---- float graph --------------------------------------------------------------------------------

def float_onnx(ops, input_scale: float, input_zp: int, labels, feature_config: dict):
    """Folded float ops (edgekws.quant.graph.FloatOp) -> onnx.ModelProto: int8 features -> float logits."""
    g = _Graph()
    TP = g.onnx.TensorProto
    in_shape = tuple(ops[0].in_shape)
    dims, _ = _input_layout(in_shape)
    x = g.node("Cast", ["features"], "f32", to=TP.FLOAT)
    x = g.node("Sub", [x, g.const("in_zp", np.array(input_zp, np.float32))], "centered")
    x = g.node("Mul", [x, g.const("in_scale", np.array(input_scale, np.float32))], "x")
    x = _enter(g, x, in_shape)
    rank = 4 if len(in_shape) == 3 else 2
    side = {}
    for fop in ops:
        if fop.op == "tappool":
            side[fop.name] = g.node("Flatten", [g.node("GlobalAveragePool", [x], fop.name)], fop.name + "_flat", axis=1)
            continue
        if fop.op in ("conv", "depthwise"):
            w = _conv_weight(g, fop.op, fop.weight.astype(np.float32), fop.name + "_w")
            b = g.const(fop.name + "_b", fop.bias.astype(np.float32))
            x = g.node("Conv", [x, w, b], fop.name, kernel_shape=list(fop.kernel), strides=list(fop.stride),
                       pads=_pads(fop.pads), group=int(fop.in_shape[2]) if fop.op == "depthwise" else 1)
        elif fop.op == "avgpool":  # global pooling too: a window covering the whole map
            x = g.node("AveragePool", [x], fop.name, kernel_shape=list(fop.kernel), strides=list(fop.stride),
                       pads=_pads(fop.pads), count_include_pad=1)
        else:
            x = _flat_for_dense(g, x, rank)
            rank = 2
            x = g.node("Gemm", [x, g.const(fop.name + "_w", fop.weight.astype(np.float32)),
                                g.const(fop.name + "_b", fop.bias.astype(np.float32))], fop.name, transB=1)
        if fop.act == "relu":
            x = g.node("Relu", [x], fop.name + "_relu")
        elif fop.act == "relu6":
            x = g.node("Clip", [x, g.const("zero", np.array(0, np.float32)), g.const("six", np.array(6, np.float32))],
                       fop.name + "_relu6")
        if len(fop.out_shape) == 1 and rank == 4:  # Flatten after a conv/pool folded into this op
            x = _flat_for_dense(g, x, rank)
            rank = 2
        if fop.taps:
            x = g.node("Concat", [x] + [side[t] for t in fop.taps], fop.name + "_taps", axis=1)
    g.nodes.append(g.h.make_node("Identity", [x], ["logits"], name="logits_Identity"))
    return g.model("features", TP.INT8, ["N", *dims], "logits", TP.FLOAT, ["N", int(ops[-1].out_shape[-1])],
                   "edgekws float model (BatchNorm folded)", _metadata(labels, feature_config, None, "float"))


# ---- integer graph ------------------------------------------------------------------------------

def _requant_nodes(g: _Graph, acc: str, q, rank: int) -> str:
    """int32 accumulator (NCHW or (N, C)) -> int8 by the fixed-point rule (see module docstring)."""
    TP = g.onnx.TensorProto
    shape = (-1, 1, 1) if rank == 4 else (-1,)
    per = lambda v: np.asarray(v, np.int64).reshape(shape) if np.size(v) > 1 else np.asarray(v, np.int64).reshape(())  # noqa: E731
    x = g.node("Cast", [acc], q.name + "_acc64", to=TP.INT64)
    if q.bias is not None:
        x = g.node("Add", [x, g.const(q.name + "_bias", per(q.bias))], q.name + "_biased")
    x = g.node("Clip", [x, g.const("i32min", np.array(INT32_MIN, np.int64)),
                        g.const("i32max", np.array(INT32_MAX, np.int64))], q.name + "_sat")
    p = g.node("Mul", [x, g.const(q.name + "_mult", per(q.multiplier))], q.name + "_p")
    shift = q.shift.astype(np.int64)
    half = g.node("Mul", [g.node("Sign", [p], q.name + "_sign"),
                          g.const(q.name + "_half", per(np.left_shift(np.int64(1), shift - 1)))], q.name + "_half")
    r = g.node("Div", [g.node("Add", [p, half], q.name + "_rnd"),
                       g.const(q.name + "_div", per(np.left_shift(np.int64(1), shift)))], q.name + "_r")
    r = g.node("Add", [r, g.const(q.name + "_zp", np.array(q.out_zp, np.int64))], q.name + "_shifted")
    r = g.node("Clip", [r, g.const(q.name + "_lo", np.array(q.act_min, np.int64)),
                        g.const(q.name + "_hi", np.array(q.act_max, np.int64))], q.name + "_clamped")
    return g.node("Cast", [r], q.name + "_out", to=TP.INT8)


def _voice_nodes(g: _Graph, x: str, offset: np.ndarray, q) -> str:
    """x (N, E) int8 -> clamp(x - offset, -128, 127) int8 (edgekws.voicenorm.normalize)."""
    if offset.shape != (int(np.prod(q.in_shape)),):
        raise EdgekwsError(f"voice offset of shape {offset.shape} for an embedding of {int(np.prod(q.in_shape))} values")
    TP = g.onnx.TensorProto
    wide = g.node("Cast", [x], "voice_in", to=TP.INT64)
    moved = g.node("Sub", [wide, g.const("voice_offset", offset)], "voice_moved")
    moved = g.node("Clip", [moved, g.const("voice_lo", np.array(-128, np.int64)),
                            g.const("voice_hi", np.array(127, np.int64))], "voice_clip")
    return g.node("Cast", [moved], "voice_out", to=TP.INT8)


def int8_onnx(qm, labels, feature_config: dict, voice_offset=None):
    """QuantModel -> onnx.ModelProto with integer operators: int8 features -> int8 logits. With a
    voice_offset (E,) the last (dense) layer reads its input less the offset, saturated to int8
    (edgekws/voicenorm.py: Cast int64 -> Sub -> Clip [-128, 127] -> Cast int8)."""
    g = _Graph()
    TP = g.onnx.TensorProto
    in_shape = tuple(qm.input_shape)
    dims, _ = _input_layout(in_shape)
    x = _enter(g, "features", in_shape)
    rank = 4 if len(in_shape) == 3 else 2
    side = {}
    for q in qm.layers:
        zp = g.const(q.name + "_in_zp", np.array(q.in_zp, np.int8))
        if q.op == "tappool":  # the tensor in flight, pooled into a side vector; x stays as it is
            w = g.const(q.name + "_ones", np.ones((int(q.in_shape[2]), 1, *q.kernel), np.int8))
            acc = g.node("ConvInteger", [x, w, zp], q.name + "_acc", kernel_shape=list(q.kernel),
                         strides=list(q.stride), group=int(q.in_shape[2]))
            side[q.name] = _flat_for_dense(g, _requant_nodes(g, acc, q, 4), 4)
            continue
        if q.op in ("conv", "depthwise", "avgpool"):
            c = int(q.in_shape[2])
            if q.op == "avgpool":
                w = g.const(q.name + "_ones", np.ones((c, 1, *q.kernel), np.int8))
            else:
                w = _conv_weight(g, q.op, q.weight, q.name + "_w")
            acc = g.node("ConvInteger", [x, w, zp], q.name + "_acc", kernel_shape=list(q.kernel),
                         strides=list(q.stride), pads=_pads(q.pads), group=1 if q.op == "conv" else c)
            x = _requant_nodes(g, acc, q, 4)
            if len(q.out_shape) == 1:  # global pool or flatten: continue as (N, features)
                x = _flat_for_dense(g, x, 4)
                rank = 2
            if q.taps:
                x = g.node("Concat", [x] + [side[t] for t in q.taps], q.name + "_taps", axis=1)
        else:
            x = _flat_for_dense(g, x, rank)
            rank = 2
            if voice_offset is not None and q is qm.layers[-1]:
                x = _voice_nodes(g, x, np.asarray(voice_offset, np.int64), q)
            wt = g.node("Transpose", [g.const(q.name + "_w", q.weight)], q.name + "_wt", perm=[1, 0])
            acc = g.node("MatMulInteger", [x, wt, zp], q.name + "_acc")
            x = _requant_nodes(g, acc, q, 2)
    g.nodes.append(g.h.make_node("Identity", [x], ["logits"], name="logits_Identity"))
    return g.model("features", TP.INT8, ["N", *dims], "logits", TP.INT8, ["N", qm.num_classes],
                   "edgekws int8 model: integer operators, fixed-point requantization "
                   "(round half away from zero), bit-exact with the numpy reference",
                   _metadata(labels, feature_config, qm.meta(), "int8"))


ORT_MIN = "1.24"   # 1.19-1.23 have no ConvInteger for int8 inputs (NOT_IMPLEMENTED); 1.24-1.32 run it


def session(model_or_bytes, threads: int = 1):
    """An onnxruntime InferenceSession (CPU, `threads` intra-op threads) for a ModelProto, bytes or path."""
    ort = require("onnxruntime", f"pip install 'onnxruntime>={ORT_MIN}'", "running ONNX models")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    data = model_or_bytes.SerializeToString() if hasattr(model_or_bytes, "SerializeToString") else model_or_bytes
    try:
        return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as exc:   # noqa: BLE001 - onnxruntime's own error types
        raise EdgekwsError(f"onnxruntime {ort.__version__} cannot run this model ({str(exc).splitlines()[0][:300]}); "
                           f"the int8 graph's ConvInteger on int8 inputs needs onnxruntime >= {ORT_MIN} "
                           f"(pip install 'onnxruntime>={ORT_MIN}'), or use --engine numpy / c") from None


def run(sess, features: np.ndarray) -> np.ndarray:
    """features (N, T, F) int8 (any per-example shape with the right size) -> logits (N, K)."""
    shape = [d if isinstance(d, int) else -1 for d in sess.get_inputs()[0].shape]
    x = np.asarray(features)
    if x.dtype != np.int8:   # a cast would wrap int16 200 to -56: logits of other features
        raise EdgekwsError(f"ONNX model: features must be int8, got {x.dtype}")
    x = np.ascontiguousarray(x.reshape(-1, *shape[1:]))
    return sess.run(["logits"], {"features": x})[0]

"""ONNX export: both graphs pass onnx.checker and carry metadata; float ONNX within 1e-4 of numpy
float; int8 ONNX logits equal to the numpy integer reference bit for bit (random models and the
requantization rule on edge cases); the export CLI."""

import json
import types

import numpy as np
import onnx
import pytest

from edgekws.bundle import Bundle
from edgekws.cli import main
from edgekws.export.onnx import _Graph, _requant_nodes, float_onnx, int8_onnx, run, session
from edgekws.quant import dequantize_input, fold_model, int8_forward, quantize_model
from quant_helpers import FC, features, make_bundle, make_model, make_tapped_model, make_whitened_model
from test_quant import edge_cases

LABELS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("arch", ["dscnn-s", "cnn", "dnn", "tapped", "whitened"])
def test_float_and_int8_parity_on_random_models(arch):
    """(tapped: dscnn-s whose embedding also pools two earlier blocks, Concat in both graphs;
    whitened: the same with a whitening Dense before the classifier, as train --vocab writes it)"""
    model = {"tapped": lambda: make_tapped_model(seed=7), "whitened": lambda: make_whitened_model(seed=7)}.get(
        arch, lambda: make_model(arch, seed=7))()
    feats = features(64, seed=8)
    x = dequantize_input(feats, FC.input_scale, FC.input_zero_point).reshape(64, *model.input_shape)
    ref = model.forward(x)
    fo = float_onnx(fold_model(model), FC.input_scale, FC.input_zero_point, LABELS, FC.to_dict())
    assert np.abs(run(session(fo), feats) - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    qm = quantize_model(model, feats[:32], FC.input_scale, FC.input_zero_point)
    qo = int8_onnx(qm, LABELS, FC.to_dict())
    got = run(session(qo), feats)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, int8_forward(qm, feats))
    # saturating inputs: all -128, all +127
    extremes = np.stack([np.full((49, 40), -128, np.int8), np.full((49, 40), 127, np.int8)])
    np.testing.assert_array_equal(run(session(qo), extremes), int8_forward(qm, extremes))


def test_int8_graph_uses_integer_operators_only_and_has_metadata():
    qm = quantize_model(make_model(), features(16), FC.input_scale, FC.input_zero_point)
    m = int8_onnx(qm, LABELS, FC.to_dict())
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert ops <= {"Reshape", "Transpose", "Unsqueeze", "ConvInteger", "MatMulInteger", "Cast", "Add", "Clip",
                   "Mul", "Sign", "Div", "Flatten", "Identity"}
    assert "QLinearConv" not in ops and "DequantizeLinear" not in ops
    md = {p.key: p.value for p in m.metadata_props}
    assert json.loads(md["edgekws.labels"]) == LABELS
    assert json.loads(md["edgekws.feature_config"]) == FC.to_dict()
    assert json.loads(md["edgekws.quantization"])["output"]["zero_point"] == qm.output_zp
    assert int(md["edgekws.input_zero_point"]) == FC.input_zero_point
    inp = m.graph.input[0]
    assert inp.name == "features" and inp.type.tensor_type.elem_type == onnx.TensorProto.INT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim][1:] == [49, 40]


def test_onnx_requantization_equals_numpy_on_edge_cases():
    rows = edge_cases()
    groups = {}
    for r in rows:
        groups.setdefault(tuple(int(v) for v in r[4:]), []).append(r)
    for (zp, lo, hi), rs in groups.items():
        rs = np.array(rs)
        q = types.SimpleNamespace(name="t", bias=rs[:, 1].astype(np.int32), multiplier=rs[:, 2].astype(np.int32),
                                  shift=rs[:, 3].astype(np.int32), out_zp=zp, act_min=lo, act_max=hi)
        if len(rs) == 1:  # per-channel constants need a channel axis
            rs = np.concatenate([rs, rs])
            q.bias, q.multiplier, q.shift = (np.repeat(a, 2) for a in (q.bias, q.multiplier, q.shift))
        g = _Graph()
        out = _requant_nodes(g, "acc", q, 2)
        g.nodes.append(g.h.make_node("Identity", [out], ["logits"]))
        m = g.model("acc", onnx.TensorProto.INT32, [1, len(rs)], "logits", onnx.TensorProto.INT8, [1, len(rs)], "", {})
        got = session(m).run(["logits"], {"acc": rs[:, 0].astype(np.int32)[None]})[0][0]
        from edgekws.quant import requantize

        want = requantize(rs[:, 0], rs[:, 1], rs[:, 2], rs[:, 3], zp, lo, hi)
        np.testing.assert_array_equal(got, want)


def test_export_cli_writes_checked_files(tmp_path, capsys):
    bundle, model = make_bundle(tmp_path / "m")
    assert main(["export", str(bundle.path), "--onnx"]) == 0
    assert "not quantized, so no model.int8.onnx" in capsys.readouterr().out
    np.save(tmp_path / "calib.npy", features(24))
    assert main(["quantize", str(bundle.path), "--calib", str(tmp_path / "calib.npy")]) == 0
    assert main(["export", str(bundle.path), "--onnx", "--c"]) == 0
    out = capsys.readouterr().out
    assert "model.int8.onnx" in out and "arena" in out
    b = Bundle.load(bundle.path)
    for name in ("model.onnx", "model.int8.onnx", "c/model.bin", "c/ekws_model_data.c", "c/ekws_model_data.h"):
        assert b.has(name), name
    onnx.checker.check_model(onnx.load(str(b.path / "model.int8.onnx")), full_check=True)
    assert main(["export", str(bundle.path)]) == 2
    assert "nothing to do" in capsys.readouterr().err


def test_an_onnxruntime_that_cannot_run_the_model_is_a_clear_error():
    """onnxruntime 1.19-1.23 lack ConvInteger for int8 inputs: a raw NOT_IMPLEMENTED traceback came out
    of listen --engine onnx (the Pi folder's default engine)."""
    from edgekws.errors import EdgekwsError
    from edgekws.export.onnx import ORT_MIN

    with pytest.raises(EdgekwsError, match=rf"cannot run this model .*needs onnxruntime >= {ORT_MIN}"):
        session(b"not an onnx model")

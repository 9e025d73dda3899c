"""int8 quantization: the requantization rule (numpy == plain Python == C on edge cases), multiplier
encoding, BatchNorm folding, PTQ error, unsupported layers named, bundle storage, CLI and engine."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekws.bundle import Bundle
from edgekws.cli import main
from edgekws.errors import EdgekwsError
from edgekws.nn import GRU, BatchNorm, Conv2D, Dense, GlobalAvgPool, MaxPool2D, ReLU, Sequential
from edgekws.quant import (dequantize_input, float_forward, fold_model, int8_forward, load_quantized,
                           quantize_bundle, quantize_model, quantize_multiplier, requantize)
from edgekws.quant.fixedpoint import INT32_MAX, INT32_MIN, requantize_scalar
from quant_helpers import FC, features, interrupted_when_writing, make_bundle, make_model

EDGE_ACC = [0, 1, -1, 2, -2, 3, -3, 127, -128, INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1,
            1 << 30, -(1 << 30), 12345, -12345]
EDGE_BIAS = [0, 1, -1, INT32_MAX, INT32_MIN, 1000]
EDGE_MULT = [0, 1, 1 << 30, INT32_MAX, 1518500250]
EDGE_SHIFT = [1, 2, 31, 32, 33, 61, 62]


def edge_cases():
    rng = np.random.default_rng(0)
    rows = [(a, b, m, s, zp, lo, hi) for a in EDGE_ACC for b in EDGE_BIAS[:3] for m in EDGE_MULT
            for s in EDGE_SHIFT for zp, lo, hi in ((0, -128, 127), (-128, -128, 127), (127, -3, 100))]
    rows += [(a, b, INT32_MAX, s, 0, -128, 127) for a in EDGE_ACC for b in EDGE_BIAS for s in (1, 62)]
    # exact ties: x * M / 2^n = k + 1/2 for M = 1, n = 1 (and M = 2^30, n = 31)
    rows += [(a, 0, m, s, 0, -128, 127) for a in range(-9, 10) for m, s in ((1, 1), (1 << 30, 31), (3, 2))]
    for _ in range(300):
        rows.append((int(rng.integers(INT32_MIN, INT32_MAX)), int(rng.integers(-(1 << 20), 1 << 20)),
                     int(rng.integers(0, INT32_MAX)), int(rng.integers(1, 63)), int(rng.integers(-128, 128)),
                     -128, 127))
    return np.array(rows, np.int64)


def test_requantize_numpy_equals_plain_python_on_edge_cases():
    rows = edge_cases()
    got = [int(requantize(np.array([a]), b, m, s, zp, lo, hi)[0]) for a, b, m, s, zp, lo, hi in rows]
    want = [requantize_scalar(*r) for r in rows]
    assert got == want


def test_ties_round_half_away_from_zero():
    acc = np.array([-5, -3, -1, 1, 3, 5])  # x / 2 = -2.5, -1.5, -0.5, 0.5, 1.5, 2.5
    assert requantize(acc, 0, 1, 1, 0, -128, 127).tolist() == [-3, -2, -1, 1, 2, 3]
    # bias is added to the accumulator before rescaling, and the sum saturates to int32
    assert requantize(np.array([INT32_MAX]), INT32_MAX, 1 << 30, 62, 0, -128, 127).tolist() == [0]
    assert requantize_scalar(INT32_MAX, INT32_MAX, INT32_MAX, 1, 0, -128, 127) == 127


@settings(max_examples=200, deadline=None)
@given(st.integers(INT32_MIN, INT32_MAX), st.integers(INT32_MIN, INT32_MAX), st.integers(0, INT32_MAX),
       st.integers(1, 62), st.integers(-128, 127))
def test_requantize_property(acc, bias, mult, shift, zp):
    assert int(requantize(np.array([acc]), bias, mult, shift, zp, -128, 127)[0]) == \
        requantize_scalar(acc, bias, mult, shift, zp, -128, 127)


@pytest.mark.parametrize("m", [1.0 / 3, 0.5, 0.999999, 1e-3, 2.0 ** -40, 3.7e-19, 1.5, 1000.0])
def test_quantize_multiplier_is_accurate(m):
    mult, shift = quantize_multiplier(m)
    assert 1 <= shift <= 62 and 0 <= mult <= INT32_MAX
    if m > 2.0 ** -31:
        assert (1 << 30) <= mult and abs(mult / 2.0 ** shift - m) <= m * 2.0 ** -30


def test_quantize_multiplier_rejects_bad_values():
    assert quantize_multiplier(0.0) == (0, 1)
    with pytest.raises(EdgekwsError, match=r"conv9: requantization multiplier .* too large"):
        quantize_multiplier(2.0 ** 31, "conv9")
    with pytest.raises(EdgekwsError, match="not a finite value"):
        quantize_multiplier(float("nan"))


@pytest.mark.parametrize("arch", ["dscnn-s", "cnn", "dnn"])
def test_folding_is_exact_and_int8_tracks_float(arch):
    model = make_model(arch)
    feats = features(48)
    x = dequantize_input(feats, FC.input_scale, FC.input_zero_point).reshape(48, *model.input_shape)
    ref = model.forward(x).astype(np.float64)
    ops = fold_model(model)
    assert np.abs(float_forward(ops, x) - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    qm = quantize_model(model, feats, FC.input_scale, FC.input_zero_point)
    q = int8_forward(qm, feats)
    assert q.dtype == np.int8 and q.shape == (48, 5)
    deq = (q.astype(np.float64) - qm.output_zp) * qm.output_scale
    # int8 error: a few output steps, small against the logit range
    assert np.abs(deq - ref).max() < 0.08 * np.ptp(ref)


def test_folded_names_and_scheme():
    qm = quantize_model(make_model("dscnn-s"), features(16), FC.input_scale, FC.input_zero_point)
    assert [q.op for q in qm.layers] == ["conv", "depthwise", "conv", "depthwise", "conv", "depthwise",
                                         "conv", "avgpool", "dense"]
    assert qm.layers[0].folded == ["bn1", "relu1"] and qm.layers[0].act == "relu"
    assert qm.layers[0].in_zp == FC.input_zero_point and qm.layers[0].in_scale == FC.input_scale
    for q in qm.layers:
        if q.weight is not None:
            assert q.weight.dtype == np.int8 and q.weight.min() >= -127 and q.bias.dtype == np.int32
        if q.act == "relu":
            assert q.act_min == q.out_zp  # ReLU is the clamp at the zero point
    pool = qm.layers[7]
    # the pooled embedding has its own calibrated range, narrower than its ReLU input's, and
    # the calibration data use all of it (the largest pooled value maps to 127)
    assert pool.out_zp == -128 and pool.out_scale < pool.in_scale
    _, outs = int8_forward(qm, features(16), collect=True)
    assert outs[7].max() == 127
    assert (qm.layers[8].in_scale, qm.layers[8].in_zp) == (pool.out_scale, pool.out_zp)


def _seq(layers, shape=(8, 6, 2)):
    return Sequential(layers, shape, rng=0)


@pytest.mark.parametrize("layers, message", [
    ([MaxPool2D(2, name="mp"), Conv2D(3, 1, name="c"), GlobalAvgPool(name="g"), Dense(2, name="d")],
     "layer 'mp' (MaxPool2D): not supported by int8 quantization and export"),
    ([BatchNorm(name="bn_in"), Conv2D(3, 1, name="c"), GlobalAvgPool(name="g"), Dense(2, name="d")],
     "layer 'bn_in' (BatchNorm): a BatchNorm must directly follow"),
    ([Conv2D(3, 1, name="c"), GlobalAvgPool(name="g"), ReLU(name="r"), Dense(2, name="d")],
     "layer 'r' (ReLU): an activation must follow"),
])
def test_unsupported_layers_are_named(layers, message):
    with pytest.raises(EdgekwsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fold_model(_seq(layers))


def test_gru_is_refused_by_name():
    model = Sequential([GRU(4, name="gru"), Dense(2, name="classifier")], (49, 40), rng=0)
    with pytest.raises(EdgekwsError, match=r"layer 'gru' \(GRU\): not supported"):
        fold_model(model)
    # the package's own gru architecture starts with a BatchNorm, which was named instead
    with pytest.raises(EdgekwsError, match=r"\(GRU\): not supported by int8 quantization"):
        fold_model(make_model("gru", 5))


def test_degenerate_and_broken_calibration_is_named_or_handled():
    """A dead layer (output 0 on every example) got a 4e-11 scale and the next layer's biases were
    clipped to INT32_MAX without a word; NaN outputs were dropped by min/max and then reported as
    an inconsistent multiplier."""
    model = make_model("dscnn-s", 5)
    model["bn1"].params["beta"][...] = -1e5          # conv1 + bn1 + relu: 0 for every input
    feats = features(16, seed=3)
    qm = quantize_model(model, feats, FC.input_scale, FC.input_zero_point)
    first = qm.layers[0]
    assert first.out_scale == pytest.approx(1.0 / 255) and int(np.abs(qm.layers[1].bias).max()) < 2 ** 31 - 1
    x = dequantize_input(feats, FC.input_scale, FC.input_zero_point).reshape(16, *fold_model(model)[0].in_shape)
    ref = float_forward(fold_model(model), x)
    got = (int8_forward(qm, feats).astype(np.float64) - qm.layers[-1].out_zp) * qm.layers[-1].out_scale
    np.testing.assert_allclose(got, ref, atol=8 * qm.layers[-1].out_scale)   # the int8 model follows the float one
    broken = make_model("dscnn-s", 5)
    broken["bn1"].buffers["running_var"][0] = np.nan
    with pytest.raises(EdgekwsError, match=r"layer 'conv1': NaN or infinite float outputs on the calibration data"):
        quantize_model(broken, feats, FC.input_scale, FC.input_zero_point)


def test_calibration_input_is_checked():
    with pytest.raises(EdgekwsError, match="calibration data must be a non-empty int8"):
        quantize_model(make_model(), features(4).astype(np.int16), FC.input_scale, FC.input_zero_point)


def test_bundle_round_trip_cli_and_engine(tmp_path, capsys):
    bundle, model = make_bundle(tmp_path / "m")
    feats = features(40, seed=5)
    np.save(tmp_path / "calib.npy", feats)
    assert main(["quantize", str(bundle.path), "--calib", str(tmp_path / "calib.npy")]) == 0
    assert "wrote int8.npz" in capsys.readouterr().out
    b = Bundle.load(bundle.path)  # checksums verified
    meta = b.manifest["quantization"]
    assert meta["input"] == {"scale": FC.input_scale, "zero_point": FC.input_zero_point}
    assert "round_half_away" in meta["scheme"]["requantization"]
    qm = load_quantized(b)
    direct = quantize_model(model, feats, FC.input_scale, FC.input_zero_point)
    np.testing.assert_array_equal(int8_forward(qm, feats), int8_forward(direct, feats))
    from edgekws.evaluate import load_model

    km = load_model(b, engine="int8")
    probs = km.predict_features(feats[:3])
    assert probs.shape == (3, 5) and np.allclose(probs.sum(1), 1)
    # the same through quantize_bundle with an array and a percentile
    qm2 = quantize_bundle(b, feats, percentile=99.9, log=lambda *a: None)
    assert qm2.calibration["method"] == "percentile 99.9"


def test_quantize_cli_errors(tmp_path, capsys):
    bundle, _ = make_bundle(tmp_path / "m")
    assert main(["quantize", str(bundle.path)]) == 2
    assert "no training dataset recorded; pass --calib DATA" in capsys.readouterr().err
    b = Bundle.load(bundle.path)
    b.update(training={**(b.manifest.get("training") or {}), "dataset": str(tmp_path / "gone")})
    assert main(["quantize", str(bundle.path)]) == 2
    assert (f"its training dataset {tmp_path / 'gone'} (recorded in the bundle) is not there any more; "
            "pass --calib DATA") in capsys.readouterr().err
    assert main(["quantize", str(bundle.path), "--calib", str(tmp_path / "nope")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    np.save(tmp_path / "wrong.npy", np.zeros((10, 5), np.int8))
    assert main(["quantize", str(bundle.path), "--calib", str(tmp_path / "wrong.npy")]) == 2
    assert "expected features of shape (N, 49, 40) for this model, got (10, 5)" in capsys.readouterr().err
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    for name in ("obj.npy", "garbage.npy"):
        assert main(["quantize", str(bundle.path), "--calib", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert f"--calib {tmp_path / name}: not a readable .npy array" in err and "Traceback" not in err
    with pytest.raises(EdgekwsError, match="not quantized yet"):
        load_quantized(Bundle.load(bundle.path))


def test_requantizing_removes_the_outputs_of_the_earlier_int8_model(tmp_path, capsys):
    """ONNX, C arrays and metrics made from the first int8 model must not stay listed beside the
    second one (a stale model.bin flashed, a stale .onnx in a Pi export)."""
    from edgekws.export import export_c_dir, export_onnx

    bundle, _ = make_bundle(tmp_path / "m")
    feats = features(40, seed=5)
    quantize_bundle(bundle, feats, log=lambda *a: None)
    export_onnx(bundle)
    export_c_dir(bundle)
    bundle.write_json("metrics.json", {"accuracy": 1.0})
    bundle.update(stream={"hop_every": 2, "smooth": 2, "refractory": 5, "thresholds": {}})
    old = set(bundle.files)
    assert {"model.onnx", "model.int8.onnx", "metrics.json", "c/model.bin"} <= old
    lines = []
    quantize_bundle(bundle, feats, percentile=99.0, log=lines.append)
    b = Bundle.load(bundle.path)
    assert set(b.files) == {"weights.npz", "int8.npz"} and b.manifest["quantization"]["calibration"][
        "method"] == "percentile 99.0"
    assert not (bundle.path / "c").exists() and not (bundle.path / "model.int8.onnx").exists()
    assert "removed the earlier model's c/, metrics.json, model.int8.onnx, model.onnx (export again)" in lines[0]
    assert lines[0].endswith("re-tune with edgekws eval-stream --tune")


def test_a_requantize_interrupted_leaves_a_float_bundle_not_a_mixed_one(tmp_path):
    """Ctrl-C just before int8.npz is written: the bundle loads as an unquantized model (never the new
    int8 arrays with the old scales), and quantizing again works."""
    bundle, _ = make_bundle(tmp_path / "m")
    feats = features(40, seed=5)
    quantize_bundle(bundle, feats, log=lambda *a: None)
    with interrupted_when_writing("int8.npz"), pytest.raises(KeyboardInterrupt):
        quantize_bundle(Bundle.load(bundle.path), feats, percentile=99.0, log=lambda *a: None)
    b = Bundle.load(bundle.path)
    assert b.manifest["quantization"] is None and not b.has("int8.npz")
    with pytest.raises(EdgekwsError, match="not quantized yet"):
        load_quantized(b)
    qm = quantize_bundle(b, feats, percentile=99.0, log=lambda *a: None)
    np.testing.assert_array_equal(int8_forward(load_quantized(Bundle.load(bundle.path)), feats),
                                  int8_forward(qm, feats))


def test_empty_calibration_data_is_named(tmp_path, capsys):
    bundle, _ = make_bundle(tmp_path / "m")
    np.save(tmp_path / "empty.npy", np.zeros((0, 49, 40), np.int8))
    assert main(["quantize", str(bundle.path), "--calib", str(tmp_path / "empty.npy")]) == 2
    assert f"--calib {tmp_path / 'empty.npy'}: holds 0 examples" in capsys.readouterr().err


def test_int8_forward_of_no_windows_is_empty():
    qm = quantize_model(make_model("dscnn-s"), features(8), FC.input_scale, FC.input_zero_point)
    none = features(8)[:0]
    assert int8_forward(qm, none).shape == (0, 5)
    logits, outs = int8_forward(qm, none, collect=True)
    assert logits.shape == (0, 5) and [o.shape[1:] for o in outs] == [tuple(q.out_shape) for q in qm.layers]


def test_pool_taps_fold_quantize_and_round_trip(tmp_path):
    """A multi-layer embedding: each tap becomes a "tappool" op right after the op it reads, on the
    pool's shared grid; folding is exact, int8 tracks float, and the bundle stores the taps."""
    from quant_helpers import make_tapped_model, tapped_arch

    model = make_tapped_model(seed=5)
    feats = features(48, seed=6)
    x = dequantize_input(feats, FC.input_scale, FC.input_zero_point).reshape(48, *model.input_shape)
    ops = fold_model(model)
    assert [(o.name, o.op) for o in ops][2:6] == [("pw2", "conv"), ("embedding_tap0", "tappool"),
                                                 ("dw3", "depthwise"), ("pw3", "conv")]
    assert ops[6].name == "embedding_tap1" and ops[8].name == "pw4"
    assert ops[9].taps == ["embedding_tap0", "embedding_tap1"] and ops[9].out_shape == (72,)
    ref = model.forward(x).astype(np.float64)
    assert np.abs(float_forward(ops, x) - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    emb = model.forward(x, until="embedding").astype(np.float64)
    np.testing.assert_allclose(emb[:, 24:48], model.forward(x, until="relu2pw").mean((1, 2)), rtol=1e-5)
    qm = quantize_model(model, feats, FC.input_scale, FC.input_zero_point)
    pool, taps = qm.layers[9], [qm.layers[3], qm.layers[6]]
    assert all((t.out_scale, t.out_zp) == (pool.out_scale, pool.out_zp) for t in taps)
    assert (taps[0].in_scale, taps[0].in_zp) == (qm.layers[2].out_scale, qm.layers[2].out_zp)
    assert (qm.layers[4].in_scale, qm.layers[4].in_zp) == (qm.layers[2].out_scale, qm.layers[2].out_zp)
    q, outs = int8_forward(qm, feats, collect=True)
    assert outs[9].shape == (48, 72) and outs[3].shape == (48, 24)
    np.testing.assert_array_equal(outs[9][:, 24:48], outs[3])
    deq = (q.astype(np.float64) - qm.output_zp) * qm.output_scale
    assert np.abs(deq - ref).max() < 0.08 * np.ptp(ref)
    # through a bundle: the taps survive storage
    b = Bundle.create(tmp_path / "m", labels=["_silence_", "_unknown_", "a", "b", "c"], feature_config=FC.to_dict(),
                      architecture=tapped_arch(), training={"seed": 0})
    b.write_npz("weights.npz", model.state_dict())
    quantize_bundle(b, feats, log=lambda *a: None)
    again = load_quantized(Bundle.load(tmp_path / "m"))
    assert again.layers[9].taps == pool.taps and again.layers[3].op == "tappool"
    np.testing.assert_array_equal(int8_forward(again, feats), q)
    # a pool naming a tap that is not there is refused by name
    qm.layers[9].taps = ["embedding_tap0", "nope"]
    with pytest.raises(EdgekwsError, match=r"int8 layer 'embedding' \(avgpool\): taps .* must name earlier tappool"):
        qm.check()


def test_pool_tap_on_an_unmaterialized_output_is_refused():
    model = _seq([Conv2D(3, 1, name="c"), BatchNorm(name="bn"), Conv2D(3, 1, name="c2"),
                  GlobalAvgPool(name="g", taps=["c"]), Dense(2, name="d")])
    with pytest.raises(EdgekwsError, match=r"layer 'g' \(GlobalAvgPool\): tap 'c' is folded into 'c' \(whose "
                                           r"output is 'bn'\); int8 export can only tap an op's output"):
        fold_model(model)


def test_features_of_the_wrong_shape_are_refused_not_reshaped(tmp_path):
    """(40, 49) features hold as many values as (49, 40): they were once reshaped and answered."""
    from edgekws.evaluate import load_model
    from edgekws.quant import quantize_bundle

    b, _ = make_bundle(tmp_path / "m", seed=2)
    quantize_bundle(b, features(16, seed=3), log=lambda *a: None)
    good = features(2, seed=4)
    for engine in ("float", "int8", "c"):
        km = load_model(b.path, engine)
        assert km.predict_features(good).shape[0] == 2
        assert km.predict_features(good[..., None]).shape[0] == 2      # (T, F, 1) is the same input
        with pytest.raises(EdgekwsError, match=r"features of shape \(40, 49\) per example, model expects "
                                               r"\(49, 40(, 1)?\) \(frames x bands\)"):
            km.predict_features(np.ascontiguousarray(good.transpose(0, 2, 1)))


def test_c_export_refuses_a_pool_window_the_c_check_refuses():
    """The exporter limited only convolutions to 32768 window values; the C check limits every op, so a
    GlobalAvgPool over 49 x 40 x 24 was exported and then rejected on the device ("layer too large")."""
    from edgekws.export.c import model_blob

    model = Sequential([Conv2D(24, 1, name="c"), ReLU(name="r"), GlobalAvgPool(name="pool"), Dense(3, name="fc")],
                       (49, 40, 1), rng=0)
    qm = quantize_model(model, features(8), FC.input_scale, FC.input_zero_point)
    with pytest.raises(EdgekwsError, match=r"C export: layer 'pool': window of \(49, 40\) x 24 channels is too "
                                           r"large for the C runtime"):
        model_blob(qm)


def test_zero_points_outside_int8_are_refused_as_the_c_check_does():
    """An out-of-range zero point passed the check: numpy used it, the ONNX exporter wrapped it (or
    raised numpy's OverflowError) and the C blob check refused it."""
    import copy

    qm = copy.deepcopy(quantize_model(make_model("dscnn-s"), features(8), FC.input_scale, FC.input_zero_point))
    qm.layers[1].out_zp = 200
    with pytest.raises(EdgekwsError, match=r"int8 layer .*: zero points \(-?\d+, 200\) must be int8 values"):
        qm.check()


def test_the_python_api_checks_percentile_and_calibration_shape(tmp_path):
    """percentile=10 gave an int8 model with inside-out ranges (0% agreement with float), and a
    transposed (N, 40, 49) calibration array was reshaped silently; both only checked by the CLI."""
    model = make_model("dscnn-s")
    x = features(8)
    for bad in (10, 50, 150, float("nan"), "99"):
        with pytest.raises(EdgekwsError, match=r"--percentile must be in \(50, 100\]"):
            quantize_model(model, x, FC.input_scale, FC.input_zero_point, bad)
    with pytest.raises(EdgekwsError, match=r"calibration data: features of shape \(40, 49\) per example"):
        quantize_model(model, np.ascontiguousarray(x.transpose(0, 2, 1)), FC.input_scale, FC.input_zero_point)
    qm = quantize_model(model, x, FC.input_scale, FC.input_zero_point, np.float64(99.9))
    assert qm.calibration["method"] == "percentile 99.9"

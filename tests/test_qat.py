"""Quantization-aware fine-tuning (edgekws.quant.qat): the fake-quant op and its straight-through
gradient, exact BatchNorm unfolding, and `--qat-epochs` on a tiny tone dataset leaving a valid bundle
that is bit-exact across numpy and C and no worse in int8 accuracy than PTQ."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgekws.bundle import Bundle  # noqa: E402
from edgekws.data import load_dataset  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays  # noqa: E402
from edgekws.quant import fold_model, int8_forward, quantize_bundle, quantize_model  # noqa: E402
from edgekws.quant.qat import FakeQuant, build_qat_model, fake_quant_weights, qat_bundle, unfold_into  # noqa: E402
from edgekws.train import train  # noqa: E402
from quant_helpers import FC, features, make_model  # noqa: E402
from test_train import make_tiny_dataset  # noqa: E402

QUIET = dict(log=lambda *a, **k: None)


def test_fake_quant_forward_grid_and_straight_through_gradient():
    fq = FakeQuant(0.1, -28, -28, 127)  # a ReLU grid: real range [0, 15.5]
    x = np.array([-1.0, -0.04, 0.0, 0.149, 0.151, 3.33, 15.5, 15.6, 40.0])
    y = fq.forward(x)
    np.testing.assert_allclose(y, [0, 0, 0, 0.1, 0.2, 3.3, 15.5, 15.5, 15.5], atol=1e-12)
    # STE: the gradient is that of the clipped identity (central differences of clip(x, lo, hi))
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 20, 200)
    x = x[np.abs(x) > 1e-3]
    x = x[np.abs(x - 15.5) > 1e-3]
    dy = rng.standard_normal(x.shape)
    fq.forward(x)
    dx = fq.backward(dy)
    eps = 1e-6
    numeric = (np.clip(x + eps, 0, 15.5) - np.clip(x - eps, 0, 15.5)) / (2 * eps) * dy
    np.testing.assert_allclose(dx, numeric, atol=1e-6)


def test_fake_quant_weights_match_ptq_per_channel():
    w = np.random.default_rng(1).normal(0, 0.3, (6, 3, 3, 4)).astype(np.float32)
    fqw = fake_quant_weights(w, 0)
    scale = np.abs(w).reshape(6, -1).max(1) / 127
    q = fqw / scale[:, None, None, None]
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    assert np.abs(fqw - w).max() <= scale.max() / 2 + 1e-6


def test_unfolding_is_the_inverse_of_batchnorm_folding():
    model = make_model("dscnn-s", seed=2)
    ops = fold_model(model)
    qm = quantize_model(model, features(16), FC.input_scale, FC.input_zero_point)
    qat, compute = build_qat_model(model, ops, qm)
    rng = np.random.default_rng(3)
    for layer, _ in compute:
        layer.params["weight"] *= np.float32(1.1)
        layer.params["bias"] += rng.normal(0, 0.1, layer.params["bias"].shape).astype(np.float32)
    unfold_into(model, qat, ops)
    for fop, (layer, _) in zip([o for o in fold_model(model) if o.op != "avgpool"], compute):
        np.testing.assert_allclose(fop.weight, layer.params["weight"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fop.bias, layer.params["bias"], rtol=1e-5, atol=1e-5)
    # the QAT copy computes the folded float model (before any fake quantization error)
    x = (features(4).astype(np.float32) - FC.input_zero_point) * FC.input_scale
    plain = qat.forward(x.reshape(4, *qat.input_shape))
    assert plain.shape == (4, 5)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    data = make_tiny_dataset(root / "data", speakers=8, repeats=2)
    bundle = train(data, root / "model", arch="dscnn-s", epochs=3, batch=8, lr=0.02, seed=3,
                   words=["yes", "no"], patience=50, progress=False, augment=False, specaugment=False, **QUIET)
    return data, bundle.path


def test_qat_leaves_a_valid_bundle_bit_exact_in_c_and_no_worse_than_ptq(tiny_bundle, tmp_path):
    data, src = tiny_bundle
    path = tmp_path / "model"
    shutil.copytree(src, path)
    ds = load_dataset(data, Bundle.load(path).labels[2:])
    arrays = split_arrays(ds, "train", FeatureCache(default_cache_dir(data), FC), seed=0)

    ptq = quantize_bundle(Bundle.load(path), str(data), **QUIET)
    acc_ptq = np.mean(int8_forward(ptq, arrays.features).argmax(1) == arrays.labels)
    before = Bundle.load(path).read_npz("weights.npz")

    qm = qat_bundle(Bundle.load(path), str(data), epochs=2, **QUIET)
    bundle = Bundle.load(path)  # verifies every checksum
    meta = bundle.manifest["quantization"]
    assert meta["qat"]["epochs"] == 2 and meta["qat"]["lr"] > 0 and len(meta["qat"]["loss"]) == 2
    after = bundle.read_npz("weights.npz")
    assert set(after) == set(before) and any(not np.array_equal(after[k], before[k]) for k in after)
    acc_qat = np.mean(int8_forward(qm, arrays.features).argmax(1) == arrays.labels)
    assert acc_qat >= acc_ptq, (acc_qat, acc_ptq)

    if shutil.which("cc") and shutil.which("make"):
        from edgekws.export.c import model_blob
        from edgekws.export.cruntime import CModel
        from edgekws.quant import load_quantized

        stored = load_quantized(bundle)
        np.testing.assert_array_equal(CModel(model_blob(stored)).logits_int8(arrays.features),
                                      int8_forward(stored, arrays.features))


def test_qat_refuses_bad_epochs_and_unlabelled_data(tiny_bundle, tmp_path):
    _, src = tiny_bundle
    with pytest.raises(EdgekwsError, match="qat-epochs"):
        qat_bundle(Bundle.load(src), None, epochs=0, **QUIET)
    with pytest.raises(EdgekwsError, match="dataset folder"):
        qat_bundle(Bundle.load(src), str(tmp_path / "nowhere"), epochs=1, **QUIET)


def test_cli_quantize_with_qat_epochs(tiny_bundle, tmp_path):
    from edgekws.cli import main

    data, src = tiny_bundle
    path = tmp_path / "model"
    shutil.copytree(src, path)
    assert main(["quantize", str(path), "--qat-epochs", "1", "--calib", str(data)]) == 0
    meta = Bundle.load(path).manifest["quantization"]
    assert meta["qat"]["epochs"] == 1 and meta["calibration"]["method"] == "minmax"


def test_qat_copy_of_a_tapped_model_simulates_its_int8_model():
    """The taps of a multi-layer embedding read the fake-quantized outputs they tap, so with
    fake-quantized weights the QAT copy computes what the int8 model computes (to a few steps)."""
    from quant_helpers import make_tapped_model

    model = make_tapped_model(seed=4)
    ops = fold_model(model)
    feats = features(32, seed=5)
    qm = quantize_model(model, feats, FC.input_scale, FC.input_zero_point)
    qat, compute = build_qat_model(model, ops, qm)
    assert qat["embedding"].taps == ("qat_fq_pw2", "qat_fq_pw3")
    for layer, axis in compute:
        layer.params["weight"][...] = fake_quant_weights(layer.params["weight"], axis)
    x = (feats.astype(np.float32) - FC.input_zero_point) * FC.input_scale
    sim = qat.forward(x.reshape(32, *qat.input_shape)).astype(np.float64)
    real = (int8_forward(qm, feats).astype(np.float64) - qm.output_zp) * qm.output_scale
    assert np.abs(sim - real).max() <= 3 * qm.output_scale


def test_qat_weights_do_not_depend_on_the_blas_thread_count():
    """The same seed gives the same bits on any machine: with a 2-thread BLAS the pointwise weight
    gradients of `dscnn` (inner dimension ~2,000 rows) summed in another order (session 26)."""
    from threadpoolctl import threadpool_limits

    from edgekws.quant.qat import finetune

    def run(threads):
        model = make_model("dscnn", seed=2)
        x = features(48)
        y = np.random.default_rng(4).integers(0, 5, 48)
        qm = quantize_model(model, x, FC.input_scale, FC.input_zero_point)
        with threadpool_limits(limits=threads, user_api="blas"):
            finetune(model, x, y, FC, qm, epochs=1, batch=48, **QUIET)
        return [p.copy() for layer in model.layers for p in getattr(layer, "params", {}).values()]

    one, two = run(1), run(2)
    assert len(one) > 10
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)

"""Sequential container and layer behaviour: dtypes, modes, fusion, determinism, learning,
save/load, freezing, embeddings, BatchNorm folding, threading."""

import json

import numpy as np
import pytest

from edgekws import nn
from edgekws.errors import BundleError, EdgekwsError


def small_dscnn(rng=0, dtype=np.float32, dropout=0.0):
    layers = [nn.Conv2D(8, (5, 4), stride=2, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
              nn.DepthwiseConv2D(3, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
              nn.Conv2D(8, 1, use_bias=False), nn.BatchNorm(), nn.ReLU(),
              nn.GlobalAvgPool(name="pool")]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Dense(4, name="head"))
    return nn.Sequential(layers, (12, 10, 1), rng=rng, dtype=dtype)


def synthetic(rng, n_per_class=16, classes=4):
    """Each class: a bright horizontal band at its own height, plus noise. x (N, 12, 10, 1)."""
    x = rng.normal(0, 0.5, size=(n_per_class * classes, 12, 10, 1))
    y = np.repeat(np.arange(classes), n_per_class)
    for k in range(classes):
        x[y == k, 3 * k:3 * k + 2, :, 0] += 2.0
    return x.astype(np.float32), y


def train(model, x, y, steps, lr=0.02, seed_batches=None):
    ce = nn.SoftmaxCrossEntropy()
    opt = nn.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        model.zero_grad()
        ce.forward(model(x, training=True), y)
        model.backward(ce.backward())
        opt.step()
    return opt


def test_float32_everywhere():
    rng = np.random.default_rng(0)
    model = small_dscnn()
    x, y = synthetic(rng)
    out = model(x.astype(np.float64), training=True)  # input is cast to the model dtype
    assert out.dtype == np.float32
    ce = nn.SoftmaxCrossEntropy()
    ce.forward(out, y)
    dlogits = ce.backward()
    assert dlogits.dtype == np.float32
    assert model.backward(dlogits, input_grad=True).dtype == np.float32
    opt = nn.Adam(model.parameters())
    opt.step()
    for name, p, g in model.parameters():
        assert p.dtype == np.float32 and g.dtype == np.float32, name
    for v in model.state_dict().values():
        assert v.dtype == np.float32


def test_batchnorm_refuses_to_train_on_one_value_per_channel():
    """Batch 1 after a Dense layer: the output was beta whatever the input, every gradient 0, and
    the running variance pulled toward 0 (PyTorch refuses it too)."""
    bn = nn.BatchNorm().build((4,), np.random.default_rng(0), np.float32)
    with pytest.raises(ValueError, match=r"training needs more than one value per channel, got input \(1, 4\)"):
        bn.forward(np.ones((1, 4), np.float32), training=True)
    assert bn.forward(np.ones((1, 4), np.float32)).shape == (1, 4)            # inference is fine
    spatial = nn.BatchNorm().build((3, 4), np.random.default_rng(0), np.float32)
    assert spatial.forward(np.ones((1, 3, 4), np.float32), training=True).shape == (1, 3, 4)   # 3 values each


def test_batchnorm_train_and_eval_modes():
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm(momentum=0.25).build((3, 4), rng, np.float32)
    x = (rng.standard_normal((50, 3, 4)) * 3 + 5).astype(np.float32)
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y.reshape(-1, 4).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.reshape(-1, 4).std(0), 1, atol=1e-3)
    flat = x.reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.25 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.75 + 0.25 * flat.var(0, ddof=1), rtol=1e-5)
    before = {k: v.copy() for k, v in bn.buffers.items()}
    y_eval = bn.forward(x, training=False)  # running statistics, no update
    for k in before:
        np.testing.assert_array_equal(bn.buffers[k], before[k])
    expect = (x - before["running_mean"]) / np.sqrt(before["running_var"] + bn.eps)
    np.testing.assert_allclose(y_eval, expect, rtol=1e-5, atol=1e-5)


def test_dropout_modes_and_seeding():
    layer = nn.Dropout(0.3).build((1000,), np.random.default_rng(2), np.float32)
    x = np.ones((20, 1000), np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    y = layer.forward(x, training=True)
    assert abs(np.mean(y == 0) - 0.3) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(layer.backward(x), y)  # same mask in backward
    a, b = (small_dscnn(rng=7, dropout=0.5) for _ in range(2))
    xs = synthetic(np.random.default_rng(0))[0]
    np.testing.assert_array_equal(a(xs, training=True), b(xs, training=True))


def test_fused_batchnorm_relu_equals_separate_layers():
    rng = np.random.default_rng(3)
    model = small_dscnn(rng=3, dtype=np.float64)
    x = rng.standard_normal((6, 12, 10, 1))
    dy = rng.standard_normal((6, 4))
    model.zero_grad()
    out = model(x, training=True)
    model.backward(dy)
    fused = {n: g.copy() for n, _, g in model.parameters()}
    model.zero_grad()
    h = x
    for layer in model.layers:  # layer by layer: no fusion
        if isinstance(layer, nn.BatchNorm):
            layer.activation = None
        h = layer.forward(h, training=True)
    np.testing.assert_allclose(h, out, rtol=1e-12, atol=1e-12)
    g = dy
    for layer in reversed(model.layers):
        g = layer.backward(g)
        if g is None:
            break
    for n, _, grad in model.parameters():
        np.testing.assert_allclose(grad, fused[n], rtol=1e-10, atol=1e-12)


def test_same_seed_same_weights_bit_for_bit():
    x, y = synthetic(np.random.default_rng(4))
    runs = []
    for _ in range(2):
        model = small_dscnn(rng=5, dropout=0.2)
        train(model, x, y, steps=5)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    other = small_dscnn(rng=6).state_dict()
    assert not np.array_equal(other["head.weight"], runs[0]["head.weight"])


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((64, 12, 10, 1)).astype(np.float32)
    results = []
    old = nn.get_num_threads()
    try:
        for threads in (1, 2):
            nn.set_num_threads(threads)
            model = small_dscnn(rng=9)
            out = model(x, training=True)
            model.backward(np.ones_like(out), input_grad=True)
            results.append([out] + [g.copy() for _, _, g in model.parameters()])
    finally:
        nn.set_num_threads(old)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_it_learns_to_100_percent_train_accuracy():
    x, y = synthetic(np.random.default_rng(10))
    model = small_dscnn(rng=11)
    before = np.mean(model(x).argmax(1) == y)
    train(model, x, y, steps=60)
    acc = np.mean(model(x, training=False).argmax(1) == y)
    assert before < 0.6 and acc == 1.0


def test_save_load_round_trip_bit_exact(tmp_path):
    x, y = synthetic(np.random.default_rng(12))
    model = small_dscnn(rng=13)
    train(model, x, y, steps=3)  # non-trivial running statistics
    model.freeze(["conv2d0"])
    path = tmp_path / "m.npz"
    model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind
    loaded = nn.Sequential.load(path)
    assert repr(loaded) == repr(model) and loaded.summary() == model.summary()
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and "batchnorm1.running_var" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == b[k].dtype
    np.testing.assert_array_equal(model(x), loaded(x))
    assert not loaded["conv2d0"].trainable
    json.dumps(model.config())


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="bad.npz"):
        nn.Sequential.load(bad)
    with pytest.raises(BundleError, match="no such"):
        nn.Sequential.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(BundleError, match="__architecture__"):
        nn.Sequential.load(tmp_path / "plain.npz")
    model = small_dscnn()
    state = model.state_dict()
    state["head.weight"] = np.zeros((5, 8), np.float32)
    with pytest.raises(BundleError, match="head.weight"):
        model.load_state_dict(state)
    assert issubclass(BundleError, EdgekwsError)


def test_freeze_embedding_and_last_layer_retraining():
    x, y = synthetic(np.random.default_rng(14))
    model = small_dscnn(rng=15)
    model.freeze([layer.name for layer in model.layers if layer.name != "head"])
    names = [n for n, _, _ in model.parameters()]
    assert names == ["head.weight", "head.bias"]
    frozen_before = model.state_dict()
    train(model, x, y, steps=5)
    after = model.state_dict()
    for k in frozen_before:  # frozen layers (BN statistics included) never change
        if not k.startswith("head."):
            np.testing.assert_array_equal(frozen_before[k], after[k])
    assert not np.array_equal(frozen_before["head.weight"], after["head.weight"])
    emb = model(x, until="pool")
    assert emb.shape == (len(x), 8)
    np.testing.assert_allclose(model(x), emb @ model["head"].params["weight"].T + model["head"].params["bias"],
                               rtol=1e-5, atol=1e-6)
    assert "(frozen)" in model.summary() and "[frozen]" in repr(model)
    model.unfreeze()
    assert len(model.parameters()) == 3 + 3 * 2 + 2


def test_summary_counts():
    model = nn.Sequential([nn.Conv2D(64, (10, 4), 2, "same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
                           nn.GlobalAvgPool(), nn.Dense(12)], (49, 40, 1))
    info = model.layer_info()
    assert info[0]["output_shape"] == (25, 20, 64) and info[0]["macs"] == 25 * 20 * 64 * 40
    assert info[0]["params"] == 64 * 40 and info[-1]["params"] == 64 * 12 + 12
    assert model.macs() == 25 * 20 * 64 * 40 + 64 * 12
    assert "1,280,000" in model.summary()


@pytest.mark.parametrize("kind", ["dense", "conv", "depthwise"])
def test_fold_batchnorm(kind):
    rng = np.random.default_rng(16)
    if kind == "dense":
        layer, shape = nn.Dense(5), (4,)
    elif kind == "conv":
        layer, shape = nn.Conv2D(5, (3, 2), padding="same"), (6, 5, 3)
    else:
        layer, shape = nn.DepthwiseConv2D(3, padding="same"), (6, 5, 5)
    layer.build(shape, rng, np.float64)
    layer.params["bias"][...] = rng.standard_normal(5)
    bn = nn.BatchNorm().build(layer.output_shape(shape), rng, np.float64)
    bn.params["gamma"][...] = rng.uniform(0.5, 2, 5)
    bn.params["beta"][...] = rng.standard_normal(5)
    bn.buffers["running_mean"][...] = rng.standard_normal(5)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2, 5)
    x = rng.standard_normal((3, *shape))
    expect = bn.forward(layer.forward(x), training=False)
    w, b = nn.fold_batchnorm(layer, bn)
    assert w.shape == layer.params["weight"].shape
    layer.params["weight"][...], layer.params["bias"][...] = w, b
    np.testing.assert_allclose(layer.forward(x), expect, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="cannot fold"):
        nn.fold_batchnorm(nn.ReLU(), bn)


def test_gru_clipping_bounds_the_state_gradient():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 40, 3)) * 3
    grads = []
    for clip in (None, 1e-3):
        layer = nn.GRU(5, return_sequences=True, clip=clip).build((40, 3), np.random.default_rng(0), np.float64)
        layer.forward(x, training=True)
        dx = layer.backward(np.ones((2, 40, 5)))
        grads.append(np.abs(layer.grads["w_h"]).max())
    assert grads[1] < grads[0] and np.isfinite(dx).all()


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="filters"):
        nn.Conv2D(0, 3)
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2D(3, 3, padding="full")
    with pytest.raises(ValueError, match="rate"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="unique"):
        nn.Sequential([nn.Dense(2, name="a"), nn.Dense(2, name="a")], (3,))
    with pytest.raises(ValueError, match="Dense"):
        nn.Sequential([nn.Dense(2)], (3, 4))
    with pytest.raises(ValueError, match="does not fit"):
        nn.Sequential([nn.Conv2D(2, 5)], (3, 3, 1))
    # a pooling window made of padding alone: MaxPool2D gave -inf (and then inf logits)
    with pytest.raises(ValueError, match=r"MaxPool2D: padding 2 must be smaller than pool_size \(2, 2\)"):
        nn.MaxPool2D(2, stride=2, padding=2)
    with pytest.raises(ValueError, match="AvgPool2D: padding"):
        nn.AvgPool2D((3, 2), padding=((0, 0), (0, 2)))
    assert nn.MaxPool2D(3, padding=((2, 2), (1, 0))).padding == ((2, 2), (1, 0))
    # True is not a size (it built 1-unit layers and 1x1 kernels); numpy integers still make sizes
    for make, message in ((lambda: nn.Dense(True), "Dense: units must be a positive int, got True"),
                          (lambda: nn.Conv2D(True, 3), "Conv2D: filters must be a positive int, got True"),
                          (lambda: nn.Conv2D(4, True), "kernel_size must be a positive int or a pair of them, got True"),
                          (lambda: nn.Conv2D(4, 3, padding=True), "padding must be 'valid', 'same', an int >= 0")):
        with pytest.raises(ValueError) as exc:
            make()
        assert message in str(exc.value)
    assert nn.Conv2D(4, np.int64(3), padding=(np.int32(1), 0)).padding == ((1, 1), (0, 0))
    model = small_dscnn()
    with pytest.raises(ValueError, match=r"x must be \(N, 12, 10, 1\)"):
        model(np.zeros((2, 10, 12, 1)))
    with pytest.raises(KeyError, match="nope"):
        model(np.zeros((2, 12, 10, 1)), until="nope")
    with pytest.raises(ValueError, match="labels"):
        nn.SoftmaxCrossEntropy().forward(np.zeros((2, 3), np.float32), np.array([0, 3]))


def test_one_blas_thread_limits_blas_inside_and_restores_it():
    from threadpoolctl import threadpool_info

    from edgekws.nn.parallel import one_blas_thread

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()

    @one_blas_thread
    def inside(x):
        return blas_threads(), x

    seen, value = inside(7)
    assert value == 7 and seen and all(n == 1 for n in seen)
    assert blas_threads() == before


def test_adapt_batchnorm_sets_each_layers_statistics_to_its_new_input_in_order():
    model = small_dscnn(rng=1, dropout=0.3)
    x = synthetic(np.random.default_rng(2))[0] * 3.0 + 1.5        # a "new voice": other level and spread
    before = {k: v.copy() for k, v in model.state_dict().items()}
    rstate = model.random_state()
    assert nn.adapt_batchnorm(model, x) == 3
    after = model.state_dict()
    names = [layer.name for layer in model]
    for i, layer in enumerate(model):
        if not isinstance(layer, nn.BatchNorm):
            continue
        h = model.forward(x, until=names[i - 1]).astype(np.float64)   # its input, earlier BNs adapted
        h = h.reshape(-1, h.shape[-1])
        # (later layers: the adapting pass normalized with the batch's biased variance, this one with
        # the stored unbiased one, hence the tolerance)
        np.testing.assert_allclose(layer.buffers["running_mean"], h.mean(0), rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(layer.buffers["running_var"], h.var(0, ddof=1), rtol=2e-3, atol=1e-4)
        assert layer.momentum == 0.1
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var")) for k in changed)
    assert json.dumps(model.random_state()) == json.dumps(rstate)
    fresh = small_dscnn(rng=1, dropout=0.3)
    assert not np.allclose(fresh.forward(x), model.forward(x))    # the adapted model computes otherwise
    with pytest.raises(ValueError, match="at least 2 examples"):
        nn.adapt_batchnorm(model, x[:1])
    # a frozen BatchNorm ignores training=True; it was counted as adapted but kept its statistics
    frozen = small_dscnn(rng=1, dropout=0.3)
    bn_names = [layer.name for layer in frozen if isinstance(layer, nn.BatchNorm)]
    frozen.freeze(bn_names)
    assert nn.adapt_batchnorm(frozen, x) == 3
    for name in bn_names:
        np.testing.assert_array_equal(frozen[name].buffers["running_mean"], model[name].buffers["running_mean"])
        assert frozen[name].trainable is False

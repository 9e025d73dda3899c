"""Table-driven finite-difference gradient check (float64) of every layer and loss of edgekws.nn."""

import re

import numpy as np
import pytest

from edgekws import nn
from edgekws.nn.gradcheck import check_layer, gradcheck, rel_error

TOL = 1e-6


def away_from_kinks(rng, shape, kinks=(0.0,), gap=0.05):
    """Random values at least `gap` from every kink (ReLU, ReLU6), so a nudge never crosses one."""
    x = rng.uniform(-8, 8, size=shape)
    for k in kinks:
        near = np.abs(x - k) < gap
        x[near] = k + np.sign(x[near] - k + 1e-9) * gap * 2
    return x


def distinct(rng, shape):
    """Values with no ties (max pooling picks an unambiguous winner)."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(0, 0.01, size=shape)


def bn_eval(layer, rng):
    layer.buffers["running_mean"][...] = rng.standard_normal(layer.buffers["running_mean"].shape)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2, layer.buffers["running_var"].shape)
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, layer.params["gamma"].shape)


def bn_act(act):
    def setup(layer, rng):
        layer.activation = act
        layer.params["beta"][...] = rng.uniform(-0.5, 0.5, layer.params["beta"].shape)
    return setup


# id, layer factory, per-example input shape, batch, input maker, training, setup(layer, rng)
ROWS = [
    ("dense", lambda: nn.Dense(4), (5,), 3, None, True, None),
    ("dense_batch1_nobias", lambda: nn.Dense(3, use_bias=False), (7,), 1, None, True, None),
    ("conv_valid", lambda: nn.Conv2D(3, (3, 2)), (5, 4, 2), 2, None, True, None),
    ("conv_stride2_same_odd", lambda: nn.Conv2D(3, (3, 2), stride=2, padding="same"), (7, 5, 2), 2, None, True, None),
    ("conv_explicit_pad_stride12_batch1", lambda: nn.Conv2D(2, (2, 3), stride=(1, 2), padding=((1, 0), (2, 1))),
     (4, 5, 3), 1, None, True, None),
    ("conv_pointwise", lambda: nn.Conv2D(4, 1), (3, 3, 3), 2, None, True, None),
    ("conv_16_channels_channel_major_im2col", lambda: nn.Conv2D(2, 3, stride=(2, 1), padding="same"),
     (4, 3, 16), 1, None, True, None),
    ("conv_first_layer_10x4_s2", lambda: nn.Conv2D(2, (5, 4), stride=2, padding="same", use_bias=False),
     (9, 8, 1), 2, None, True, None),
    ("depthwise_3x3_same", lambda: nn.DepthwiseConv2D(3, padding="same"), (5, 4, 3), 2, None, True, None),
    ("depthwise_stride2_same_odd", lambda: nn.DepthwiseConv2D((3, 2), stride=2, padding="same"), (7, 5, 2), 3, None, True, None),
    ("depthwise_explicit_batch1", lambda: nn.DepthwiseConv2D(2, padding=((0, 1), (1, 0)), use_bias=False),
     (3, 4, 2), 1, None, True, None),
    ("batchnorm_train_nhwc", lambda: nn.BatchNorm(), (3, 2, 4), 3, None, True, bn_eval),
    ("batchnorm_train_dense", lambda: nn.BatchNorm(), (5,), 4, None, True, bn_eval),
    ("batchnorm_eval", lambda: nn.BatchNorm(), (3, 2, 4), 2, None, False, bn_eval),
    ("batchnorm_fused_relu", lambda: nn.BatchNorm(), (3, 3, 4), 3, None, True, bn_act("relu")),
    ("batchnorm_fused_relu6_eval", lambda: nn.BatchNorm(), (3, 3, 4), 3,
     lambda rng, s: away_from_kinks(rng, s, (-0.0,)) * 0.4, False, bn_act("relu6")),
    ("relu", lambda: nn.ReLU(), (3, 4, 2), 2, lambda rng, s: away_from_kinks(rng, s), True, None),
    ("relu6", lambda: nn.ReLU6(), (3, 4, 2), 2, lambda rng, s: away_from_kinks(rng, s, (0.0, 6.0)), True, None),
    ("avgpool_2x2", lambda: nn.AvgPool2D(2), (4, 6, 3), 2, None, True, None),
    ("avgpool_3x2_s21_same_odd", lambda: nn.AvgPool2D((3, 2), stride=(2, 1), padding="same"), (5, 3, 2), 2, None, True, None),
    ("maxpool_2x2", lambda: nn.MaxPool2D(2), (4, 6, 3), 2, distinct, True, None),
    ("maxpool_3x3_s2_same_batch1", lambda: nn.MaxPool2D(3, stride=2, padding="same"), (5, 7, 2), 1, distinct, True, None),
    ("global_avg_pool", lambda: nn.GlobalAvgPool(), (3, 5, 4), 2, None, True, None),
    ("flatten", lambda: nn.Flatten(), (3, 2, 2), 2, None, True, None),
    ("dropout", lambda: nn.Dropout(0.4), (4, 5), 3, None, True, None),
    ("gru_sequences_many_steps", lambda: nn.GRU(4, return_sequences=True), (30, 3), 2, None, True, None),
    ("gru_last_state_batch1", lambda: nn.GRU(3), (12, 2), 1, None, True, None),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_layer_gradients(row):
    name, factory, shape, batch, make_x, training, setup = row
    rng = np.random.default_rng(ROWS.index(row))
    layer = factory().build(shape, rng, np.float64)
    if setup is not None:
        setup(layer, rng)
    x = make_x(rng, (batch, *shape)) if make_x else rng.standard_normal((batch, *shape))
    reseed = None
    if isinstance(layer, nn.Dropout):
        def reseed():
            layer.rng = np.random.default_rng(5)
    errors = check_layer(layer, x, rng, training=training, before_forward=reseed)
    assert set(errors) == {"x", *layer.params}
    assert max(errors.values()) < TOL, errors


def test_dropout_row_is_not_trivial():
    layer = nn.Dropout(0.4).build((4, 5), np.random.default_rng(0), np.float64)
    y = layer.forward(np.ones((3, 4, 5)), training=True)
    assert 0 < np.count_nonzero(y == 0) < y.size


LOSS_ROWS = [
    ("ce", dict()),
    ("ce_smoothing_weights", dict(label_smoothing=0.1, class_weights=[1.0, 2.0, 0.5, 3.0, 1.0])),
]


@pytest.mark.parametrize("kwargs", [r[1] for r in LOSS_ROWS], ids=[r[0] for r in LOSS_ROWS])
@pytest.mark.parametrize("batch", [1, 6])
def test_softmax_cross_entropy_gradient(kwargs, batch):
    rng = np.random.default_rng(batch)
    logits = rng.standard_normal((batch, 5)) * 3
    labels = rng.integers(0, 5, batch)
    loss = nn.SoftmaxCrossEntropy(**kwargs)
    loss.forward(logits, labels)
    errors = gradcheck(lambda: loss.forward(logits, labels), {"logits": loss.backward()}, {"logits": logits})
    assert errors["logits"] < TOL


def test_triplet_loss_gradient():
    rng = np.random.default_rng(3)
    a, p, n = (rng.standard_normal((5, 4)) for _ in range(3))
    p[:2] = a[:2] + 0.1 * rng.standard_normal((2, 4))  # easy triplets: hinge inactive
    n[:2] = -a[:2]
    loss = nn.TripletLoss(margin=0.5)
    arrays = {"a": a, "p": p, "n": n}
    f = lambda: loss.forward(a, p, n)  # noqa: E731
    f()
    hinge_active = loss._cache[-1]
    assert 0 < hinge_active.sum() < 5  # some triplets active, some not: both branches checked
    hinge = ((a / np.linalg.norm(a, axis=1, keepdims=True) - p / np.linalg.norm(p, axis=1, keepdims=True)) ** 2).sum(1)
    hinge -= ((a / np.linalg.norm(a, axis=1, keepdims=True) - n / np.linalg.norm(n, axis=1, keepdims=True)) ** 2).sum(1)
    assert np.min(np.abs(hinge + 0.5)) > 1e-3  # no triplet sits on the kink
    da, dp, dn = loss.backward()
    errors = gradcheck(f, {"a": da, "p": dp, "n": dn}, arrays)
    assert max(errors.values()) < TOL, errors


def test_output_feeding_two_consumers_accumulates():
    """x -> A -> y; loss = sum(B(y) r1) + sum(C(y) r2). A's grads come from two backward calls."""
    rng = np.random.default_rng(11)
    a = nn.Dense(4).build((3,), rng, np.float64)
    b = nn.Dense(2).build((4,), rng, np.float64)
    c = nn.Dense(5).build((4,), rng, np.float64)
    x = rng.standard_normal((3, 3))
    r1, r2 = rng.standard_normal((3, 2)), rng.standard_normal((3, 5))

    def loss():
        y = a.forward(x)
        return float(np.sum(b.forward(y) * r1) + np.sum(c.forward(y) * r2))

    loss()
    for layer in (a, b, c):
        layer.zero_grad()
    dy = b.backward(r1) + c.backward(r2)
    dx1 = a.backward(dy[:, :])
    # backward twice with the two halves must accumulate into the same gradients
    grads_once = {k: g.copy() for k, g in a.grads.items()}
    a.zero_grad()
    a.backward(b.backward(r1))
    a.backward(c.backward(r2))
    for k in grads_once:
        np.testing.assert_allclose(a.grads[k], grads_once[k], rtol=1e-12, atol=1e-12)
    errors = gradcheck(loss, {"x": dx1, **{f"a.{k}": g for k, g in a.grads.items()}},
                       {"x": x, **{f"a.{k}": p for k, p in a.params.items()}})
    assert max(errors.values()) < TOL, errors


def test_whole_model_gradient_with_fusion_and_loss():
    """A small Sequential (BN+ReLU fused inside) under cross-entropy: input and all parameters."""
    rng = np.random.default_rng(21)
    model = nn.Sequential([
        nn.Conv2D(3, (3, 2), stride=2, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
        nn.DepthwiseConv2D(3, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU6(),
        nn.Conv2D(4, 1, use_bias=False), nn.GlobalAvgPool(), nn.Dense(3)], (7, 6, 1), rng=rng, dtype=np.float64)
    # biases before a BatchNorm, and a BN scale under a scale-invariant path, have exactly zero
    # gradient (pure rounding noise numerically): avoid both with no such biases and random betas
    for name in ("batchnorm1", "batchnorm4"):
        model[name].params["beta"][...] = rng.uniform(-0.5, 0.5, 3)
        model[name].params["gamma"][...] = rng.uniform(0.5, 1.5, 3) * 2
    x = rng.standard_normal((4, 7, 6, 1))
    labels = np.array([0, 1, 2, 1])
    ce = nn.SoftmaxCrossEntropy(label_smoothing=0.05)
    f = lambda: ce.forward(model(x, training=True), labels)  # noqa: E731
    f()
    assert model._steps[1][1] == "relu" and model._steps[3][1] == "relu6"  # fusion happened
    model.zero_grad()
    dx = model.backward(ce.backward(), input_grad=True)
    analytic = {"x": dx, **{n: g.copy() for n, _, g in model.parameters()}}
    errors = gradcheck(f, analytic, {"x": x, **{n: p for n, p, _ in model.parameters()}})
    assert max(errors.values()) < TOL, errors


def test_gradcheck_detects_a_wrong_gradient():
    rng = np.random.default_rng(0)
    layer = nn.Dense(3).build((4,), rng, np.float64)
    x = rng.standard_normal((2, 4))
    layer.forward(x)
    layer.zero_grad()
    layer.backward(np.ones((2, 3)))
    wrong = {"weight": layer.grads["weight"] * 1.01}
    errors = gradcheck(lambda: float(layer.forward(x).sum()), wrong, {"weight": layer.params["weight"]})
    assert errors["weight"] > 1e-3
    assert rel_error(np.ones(3), np.ones(3)) == 0.0


def test_pool_taps_gradient_reaches_the_tapped_layers():
    """GlobalAvgPool(taps=...) appends pooled earlier outputs (a fused BN+ReLU6 output and a conv
    output); their gradients flow back into the layers that made them, input included."""
    rng = np.random.default_rng(22)
    model = nn.Sequential([
        nn.Conv2D(3, (3, 2), stride=2, padding="same", use_bias=False, name="c1"), nn.BatchNorm(name="b1"),
        nn.ReLU6(name="r1"), nn.DepthwiseConv2D(3, padding="same", name="dw"), nn.Conv2D(4, 1, name="pw"),
        nn.ReLU(name="r2"), nn.GlobalAvgPool(name="pool", taps=["r1", "dw"]), nn.Dense(3, name="fc")],
        (7, 6, 1), rng=rng, dtype=np.float64)
    model["b1"].params["beta"][...] = rng.uniform(-0.5, 0.5, 3)
    assert model.output_shape == (3,) and model["pool"].output_shape((4, 3, 4)) == (4 + 3 + 3,)
    x = rng.standard_normal((4, 7, 6, 1))
    labels = np.array([0, 1, 2, 1])
    ce = nn.SoftmaxCrossEntropy()
    f = lambda: ce.forward(model(x, training=True), labels)  # noqa: E731
    f()
    emb = model(x, until="pool")
    np.testing.assert_allclose(emb[:, 4:7], model(x, until="r1").mean((1, 2)), rtol=1e-12)
    np.testing.assert_allclose(emb[:, 7:], model(x, until="dw").mean((1, 2)), rtol=1e-12)
    f()
    model.zero_grad()
    dx = model.backward(ce.backward(), input_grad=True)
    analytic = {"x": dx, **{n: g.copy() for n, _, g in model.parameters()}}
    errors = gradcheck(f, analytic, {"x": x, **{n: p for n, p, _ in model.parameters()}})
    assert max(errors.values()) < TOL, errors
    # the round trip through config keeps the taps
    again = nn.Sequential.from_config(model.config())
    assert again["pool"].taps == ("r1", "dw") and again.output_shape == (3,)


@pytest.mark.parametrize("taps, message", [
    (["fc"], "tap 'fc' is not an earlier layer"),
    (["b1"], "tap 'b1' is a BatchNorm fused with the ReLU after it; tap 'r1'"),
    ("r1", "taps must be a list of layer names"),
])
def test_pool_taps_refused(taps, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        nn.Sequential([nn.Conv2D(3, 3, name="c1"), nn.BatchNorm(name="b1"), nn.ReLU(name="r1"),
                       nn.GlobalAvgPool(name="pool", taps=taps), nn.Dense(2, name="fc")], (5, 5, 1))

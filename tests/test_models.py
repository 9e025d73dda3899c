"""Architectures: every one builds and runs, the default fits the device budget, and the budget
table agrees with the engine's own shape and MAC counts."""

import numpy as np
import pytest

from edgekws.errors import EdgekwsError
from edgekws.models import (ARCHITECTURES, BUDGET, DEFAULT_ARCH, arch_budget, architecture_dict, get_arch,
                            layers_from_architecture)
from edgekws.nn import BatchNorm, Conv2D, Dense, DepthwiseConv2D, GlobalAvgPool, ReLU, Sequential


def _model(name, n_classes=12):
    arch = architecture_dict(name, n_classes)
    return arch, Sequential(layers_from_architecture(arch), arch["input_shape"], rng=0)


def test_default_fits_the_budget_with_12_classes():
    assert DEFAULT_ARCH == "dscnn-l"
    b = arch_budget(DEFAULT_ARCH, 12)
    assert b.weight_bytes <= BUDGET["weight_bytes"] == 65536
    assert b.macs <= BUDGET["macs"] == 5_000_000
    assert b.activation_bytes <= BUDGET["activation_bytes"] == 32768
    assert b.fits() and b.int8_ready
    # the activation figure is the largest input + output pair, e.g. conv1: 49*40 + 25*20*48
    assert b.rows[0].activation_bytes == 49 * 40 + 25 * 20 * 48
    assert b.activation_bytes == max(r.activation_bytes for r in b.rows)
    # conv1: 48 * 10 * 4 int8 weights + 48 int32 biases from the folded BatchNorm
    assert b.rows[0].weight_bytes == 48 * 40 + 4 * 48 and "bn1" in b.rows[0].folded
    # the largest pair: block 2's depthwise, 25*20*48 in and 13*10*48 out
    assert b.activation_bytes == 25 * 20 * 48 + 13 * 10 * 48
    assert b.macs == 4_237_152 and b.weight_bytes == 30_624
    # the lighter "dscnn" (the default until session 18) fits too
    assert arch_budget("dscnn", 12).fits() and arch_budget("dscnn", 12).macs < b.macs


def test_default_is_the_five_layer_shape_with_an_embedding():
    arch, model = _model(DEFAULT_ARCH)
    kinds = [type(layer) for layer in model]
    assert kinds.count(Conv2D) == 4 and kinds.count(DepthwiseConv2D) == 3 and kinds.count(Dense) == 1
    assert set(kinds) <= {Conv2D, DepthwiseConv2D, BatchNorm, ReLU, GlobalAvgPool, Dense,
                          type(model["dropout"])}
    x = np.random.default_rng(0).standard_normal((2, 49, 40, 1)).astype(np.float32)
    assert model.forward(x).shape == (2, 12)
    emb = model.forward(x, until=arch["embedding"])
    assert emb.shape == (2, 96) and emb.dtype == np.float32
    assert model["conv1"].output_shape((49, 40, 1)) == (25, 20, 48)
    assert model["dw2"].output_shape((25, 20, 48)) == (13, 10, 48)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_builds_trains_a_step_and_has_a_budget(name):
    arch, model = _model(name, 5)
    x = np.random.default_rng(1).standard_normal((3, *arch["input_shape"])).astype(np.float32)
    y = model.forward(x, training=True)
    assert y.shape == (3, 5)
    model.zero_grad()
    model.backward(np.ones_like(y))
    assert any(np.abs(g).sum() > 0 for _, _, g in model.parameters())
    b = arch_budget(arch)
    assert b.macs == model.macs()  # folded layers cost nothing; compute layers match the engine
    assert b.rows[-1].output_shape == (5,)
    assert "total" in b.table() and "budget" in b.table()
    assert b.fits(), f"{name} is over the device budget:\n{b.table()}"
    # the architecture dict round-trips through JSON and rebuilds the same layers
    import json

    again = layers_from_architecture(json.loads(json.dumps(arch)))
    assert [layer.config() for layer in again] == arch["layers"]


def test_gru_is_flagged_as_not_int8_exportable():
    assert not arch_budget("gru").int8_ready
    assert all(arch_budget(n).int8_ready for n in ARCHITECTURES if n != "gru")


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(EdgekwsError, match="unknown architecture 'resnet'.*dscnn"):
        get_arch("resnet")
    with pytest.raises(EdgekwsError, match="cannot rebuild"):
        layers_from_architecture({"name": "x", "layers": [{"type": "Nope"}]})


def test_retrain_taps_lengthen_the_embedding_and_keep_the_logits():
    """The default is written with its pool also averaging block 3 and zero classifier weights
    for those values: same logits, a 192-value embedding; architectures without retrain taps (and
    a pool that has taps already) are left alone."""
    from edgekws.models import random_model, with_retrain_taps

    arch = architecture_dict(DEFAULT_ARCH, 12)
    model = random_model(DEFAULT_ARCH, 12, seed=3)
    state = model.state_dict()
    new_arch, new_state = with_retrain_taps(arch, state)
    assert [c.get("taps") for c in new_arch["layers"] if c["type"] == "GlobalAvgPool"] == [["relu3pw"]]
    assert "taps" not in next(c for c in arch["layers"] if c["type"] == "GlobalAvgPool")  # not mutated
    from edgekws.models import layers_from_architecture

    tapped = Sequential(layers_from_architecture(new_arch), new_arch["input_shape"])
    tapped.load_state_dict(new_state)
    x = np.random.default_rng(4).standard_normal((6, 49, 40, 1)).astype(np.float32)
    np.testing.assert_allclose(tapped.forward(x), model.forward(x), rtol=1e-5, atol=1e-5)
    emb = tapped.forward(x, until="embedding")
    assert emb.shape == (6, 192)
    np.testing.assert_allclose(emb[:, 96:], model.forward(x, until="relu3pw").mean((1, 2)), rtol=1e-5, atol=1e-6)
    assert arch_budget(new_arch).fits()
    assert with_retrain_taps(new_arch, new_state)[0] is new_arch
    from edgekws.models import as_written

    np.testing.assert_array_equal(as_written(model, arch).forward(x), tapped.forward(x))
    assert as_written(model, architecture_dict("dscnn-s", 12)) is model  # no retrain taps: itself
    small = architecture_dict("dscnn-s", 5)
    assert with_retrain_taps(small, {})[0] is small


def test_within_class_whitening_makes_each_words_spread_the_identity():
    """Unshrunk, z = W x + b has zero mean and identity covariance within the words; shrunk toward
    the diagonal it still has unit variance per dimension when the words are uncorrelated; a
    direction that never varies is raised to the floor instead of dividing by zero."""
    from edgekws.models import within_class_whitening

    rng = np.random.default_rng(5)
    mix = rng.standard_normal((6, 6))
    labels = np.repeat(np.arange(5), 400)
    x = rng.standard_normal((2000, 6)) @ mix + 10 * rng.standard_normal((5, 6))[labels]
    w, b = within_class_whitening(x, labels, shrink=0.0, floor=0.0)
    np.testing.assert_allclose(w, w.T, atol=1e-12)
    z = x @ w.T + b
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-9)
    r = z - np.stack([z[labels == c].mean(0) for c in range(5)])[labels]
    np.testing.assert_allclose(r.T @ r / len(r), np.eye(6), atol=1e-9)
    d = rng.standard_normal((2000, 6)) * [1, 2, 3, 4, 5, 6]
    w, _ = within_class_whitening(d, labels)                 # default shrink 0.1: nearly diagonal
    np.testing.assert_allclose(np.diag(w) * d.std(0), 1, atol=0.1)
    x[:, 2] = 7.0                                            # a dead dimension
    w, b = within_class_whitening(x, labels)
    assert np.isfinite(w).all() and np.abs(x @ w.T + b).max() < 1e3
    with pytest.raises(EdgekwsError, match=r"whitening: need embeddings \(N, E\) of at least 2 words"):
        within_class_whitening(x, np.zeros(len(x)))
    with pytest.raises(EdgekwsError, match=r"whitening: the clips of each word are all alike"):
        within_class_whitening(np.repeat(x[:5], 3, axis=0), np.repeat(np.arange(5), 3))


def test_whitening_layer_keeps_the_logits_and_becomes_the_embedding():
    """train --vocab's whitening: a Dense 'whiten' before the classifier, the classifier re-expressed
    on its output (the same logits), the embedding now the whitened one; the budget counts it."""
    from edgekws.models import layers_from_architecture, random_model, with_retrain_taps, with_whitening, \
        within_class_whitening

    arch, state = with_retrain_taps(architecture_dict(DEFAULT_ARCH, 12), random_model(DEFAULT_ARCH, 12, 3).state_dict())
    model = Sequential(layers_from_architecture(arch), arch["input_shape"])
    model.load_state_dict(state)
    x = np.random.default_rng(4).standard_normal((40, 49, 40, 1)).astype(np.float32)
    emb = model.forward(x, until="embedding")
    wm, b = within_class_whitening(emb, np.arange(40) % 5)
    new_arch, new_state = with_whitening(arch, state, wm, b)
    assert [c["name"] for c in new_arch["layers"]][-2:] == ["whiten", "classifier"]
    assert new_arch["embedding"] == "whiten" and arch["embedding"] == "embedding"   # not mutated
    white = Sequential(layers_from_architecture(new_arch), new_arch["input_shape"])
    white.load_state_dict(new_state)
    ref = model.forward(x)
    np.testing.assert_allclose(white.forward(x), ref, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(white.forward(x, until="whiten"), emb @ wm.T + b, rtol=1e-4, atol=1e-4)
    rows = {r.name: r for r in arch_budget(new_arch).rows}
    assert rows["whiten"].weight_bytes == 192 * 192 + 4 * 192 and rows["whiten"].macs == 192 * 192
    assert arch_budget(new_arch).weight_bytes == arch_budget(arch).weight_bytes + 192 * 192 + 4 * 192
    with pytest.raises(EdgekwsError, match="has a 'whiten' layer already"):
        with_whitening(new_arch, new_state, wm, b)
    with pytest.raises(EdgekwsError, match=r"a \(96, 96\) transform does not fit the classifier's 192 inputs"):
        with_whitening(arch, state, wm[:96, :96], b[:96])


def test_relu6_folds_into_its_op_in_the_budget_as_in_the_int8_pipeline():
    """quant.graph attaches ReLU6 to the op before it (act='relu6'), as ReLU: the budget must not count
    it as a layer of its own (it was marked 'int8/C no', with its own activation buffer)."""
    from edgekws import nn
    from edgekws.models import budget_of

    def layers(act):
        return [nn.Conv2D(8, 3, stride=2, padding="same", use_bias=False, name="conv"), nn.BatchNorm(name="bn"),
                act(name="act"), nn.GlobalAvgPool(name="pool"), nn.Dense(3, name="fc")]

    relu, relu6 = budget_of(layers(nn.ReLU), (49, 40, 1)), budget_of(layers(nn.ReLU6), (49, 40, 1))
    assert relu6.int8_ready and relu6.to_dict() == relu.to_dict()

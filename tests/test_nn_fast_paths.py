"""The engine's fast paths against plain references: the grid depthwise convolution against a
padded tap-by-tap reference over many geometries, BatchNorm's blocked statistics and fused ReLU
against numpy and the separate layers, thread-count independence, and work buffers reused from
call to call that never leak into results."""

import itertools

import numpy as np
import pytest

from edgekws import nn
from edgekws.nn import depthwise, padding, parallel


def depthwise_reference(x, w, b, stride, pads, dy):
    """Plain tap-by-tap depthwise convolution on an explicitly padded input, and its gradients."""
    (kh, kw, _), (sh, sw) = w.shape, stride
    (t, bo), (le, r) = pads
    xp = np.pad(x, ((0, 0), (t, bo), (le, r), (0, 0)))
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, x.shape[3])) + b
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i, j in itertools.product(range(kh), range(kw)):
        window = (slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
        y += xp[window] * w[i, j]
        dxp[window] += dy * w[i, j]
        dw[i, j] = np.einsum("nhwc,nhwc->c", xp[window], dy)
    dx = dxp[:, t:t + x.shape[1], le:le + x.shape[2]]
    return y, dx, dw, dy.sum((0, 1, 2))


GEOMETRIES = [  # kernel, stride, padding, per-example input (H, W, C)
    (3, 1, "same", (6, 5, 3)),
    (3, 1, "valid", (6, 5, 2)),
    ((3, 2), 2, "same", (7, 5, 2)),
    (3, (2, 1), "same", (7, 5, 2)),  # strided rows, unit column stride (the merged columns view)
    ((5, 3), (2, 3), "same", (9, 8, 2)),
    (3, 3, "valid", (10, 7, 1)),
    (2, 1, ((0, 1), (1, 0)), (3, 4, 2)),
    ((1, 3), (1, 2), ((4, 0), (0, 3)), (4, 6, 2)),  # pads wider than the kernel
    ((4, 1), 1, ((0, 3), (2, 2)), (5, 3, 3)),
]


@pytest.mark.parametrize("kernel,stride,pad,shape", GEOMETRIES, ids=[str(g) for g in GEOMETRIES])
def test_depthwise_matches_padded_reference(kernel, stride, pad, shape):
    rng = np.random.default_rng(len(str(kernel)) + shape[0])
    layer = nn.DepthwiseConv2D(kernel, stride, pad).build(shape, rng, np.float64)
    layer.params["bias"][...] = rng.standard_normal(shape[2])
    layer.need_input_grad = True
    x = rng.standard_normal((3, *shape))
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    pads, _ = padding.resolve(pad if isinstance(pad, str) else layer.padding, shape[:2],
                              layer.kernel_size, layer.stride)
    ref = depthwise_reference(x, layer.params["weight"], layer.params["bias"], layer.stride, pads, dy)
    for got, want in zip((y, dx, layer.grads["weight"], layer.grads["bias"]), ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_depthwise_layers_sharing_work_buffers_stay_exact():
    """Layers of one input shape but different stride, padding or kernel, interleaved, each
    checked against the reference: grid buffers are shared only by identical geometries."""
    rng = np.random.default_rng(7)
    layers = [nn.DepthwiseConv2D(k, s, p).build(shape, rng, np.float64)
              for shape, k, s, p in (((6, 6, 2), 3, 1, "same"), ((6, 6, 2), 3, 2, "same"), ((6, 6, 2), 3, 1, "valid"),
                                     ((6, 6, 2), 2, 2, "valid"), ((6, 6, 2), 3, 1, "same"),
                                     # the same output and top/left pads, other bottom/right pads: once
                                     # one buffer for both, laid out for one of them (dx off by 1.95)
                                     ((7, 9, 4), 3, 2, ((0, 0), (0, 1))), ((7, 9, 4), 3, 2, ((0, 1), (0, 0))))]
    for layer in layers * 2:
        layer.need_input_grad = True
        layer.zero_grad()
        x = rng.standard_normal((2, *layer.input_shape))
        y = layer.forward(x, training=True)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        pads, _ = padding.resolve(layer.padding, layer.input_shape[:2], layer.kernel_size, layer.stride)
        ref = depthwise_reference(x, layer.params["weight"], layer.params["bias"], layer.stride, pads, dy)
        for got, want in zip((y, dx, layer.grads["weight"], layer.grads["bias"]), ref):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _run(model, x):
    model.zero_grad()
    out = model(x, training=True)
    dx = model.backward(np.cos(out), input_grad=True)
    return [out, dx] + [g.copy() for _, _, g in model.parameters()]


def small_model():
    return nn.Sequential([nn.DepthwiseConv2D(3, padding="same", use_bias=True), nn.BatchNorm(), nn.ReLU(),
                          nn.DepthwiseConv2D((3, 2), stride=2, padding="same"), nn.BatchNorm(), nn.ReLU6(),
                          nn.GlobalAvgPool(), nn.Dense(3)], (9, 8, 4), rng=1)


def test_tiny_blocks_and_threads_give_the_same_bits(monkeypatch):
    """Many blocks (one or two examples each) on 1 or 2 threads: bit for bit the same result."""
    x = np.random.default_rng(2).standard_normal((7, 9, 8, 4)).astype(np.float32)
    runs = []
    old = nn.get_num_threads()
    try:
        for threads, block_bytes in ((1, 1 << 20), (1, 1), (2, 1), (2, 2000)):
            monkeypatch.setattr(depthwise, "_BLOCK_BYTES", block_bytes)
            monkeypatch.setattr(parallel, "_BLOCK_BYTES", block_bytes)
            nn.set_num_threads(threads)
            runs.append(_run(small_model(), x))
    finally:
        nn.set_num_threads(old)
    for a, b in zip(runs[1], runs[2]):  # same blocks, 1 vs 2 threads
        np.testing.assert_array_equal(a, b)
    for run in runs[::3]:  # other blockings: same up to float32 summation order
        for a, b in zip(runs[1], run):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_more_threads_raises_the_count_for_a_block_only_and_never_lowers_it():
    old = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        with parallel.more_threads(3):
            assert nn.get_num_threads() == 3
        assert nn.get_num_threads() == 1
        nn.set_num_threads(2)
        with parallel.more_threads(1):
            assert nn.get_num_threads() == 2  # never fewer than the caller set
        with pytest.raises(KeyError), parallel.more_threads(4):
            raise KeyError("inside")
        assert nn.get_num_threads() == 2  # restored after an error too
    finally:
        nn.set_num_threads(old)


def test_reused_work_buffers_never_leak_between_calls(monkeypatch):
    """Batches of changing size through the same model match fresh models, and earlier outputs
    are left alone by later calls."""
    monkeypatch.setattr(depthwise, "_BLOCK_BYTES", 3000)  # blocks of 3 examples, then the rest
    rng = np.random.default_rng(3)
    model = small_model()
    batches = [rng.standard_normal((n, 9, 8, 4)).astype(np.float32) for n in (5, 2, 7, 5)]
    results = [_run(model, x) for x in batches]
    kept = [[a.copy() for a in r] for r in results]
    for x, got, still in zip(batches, results, kept):
        for a, b, c in zip(got, _run(small_model(), x), still):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(a, b)


def test_batchnorm_statistics_stay_accurate_far_from_zero(monkeypatch):
    """float32 data with mean 1000 and std 1, cut into many blocks: the batch mean and variance
    match float64 numpy closely (a one-pass E[x^2] - E[x]^2 would lose all digits)."""
    monkeypatch.setattr(parallel, "_BLOCK_BYTES", 4000)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((40, 6, 5, 8)) + 1000 + np.arange(8)).astype(np.float32)
    bn = nn.BatchNorm(momentum=1.0).build(x.shape[1:], rng, np.float32)
    bn.forward(x, training=True)
    flat = x.reshape(-1, 8).astype(np.float64)
    np.testing.assert_allclose(bn.buffers["running_mean"], flat.mean(0), rtol=1e-7)
    np.testing.assert_allclose(bn.buffers["running_var"], flat.var(0, ddof=1), rtol=1e-4)


@pytest.mark.parametrize("act", [nn.ReLU, nn.ReLU6])
@pytest.mark.parametrize("training", [True, False])
def test_fused_activation_is_bit_exact_in_float32(act, training):
    """BatchNorm + ReLU/ReLU6 run fused by Sequential give the same float32 bits as the two layers
    run one after the other."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 5, 4, 8)) * 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    model = nn.Sequential([nn.BatchNorm(), act()], x.shape[1:], rng=0)
    model.layers[0].params["beta"][...] = rng.uniform(-2, 2, 8)
    model.layers[0].params["gamma"][...] = rng.uniform(0.5, 4, 8)
    fused = [model(x, training=training), model.backward(dy, input_grad=True)]
    fused += [g.copy() for _, _, g in model.parameters()]
    model.zero_grad()
    bn, relu = model.layers
    bn.activation = None
    y = relu.forward(bn.forward(x, training), training)
    bn.need_input_grad = True
    separate = [y, bn.backward(relu.backward(dy))] + [g.copy() for _, _, g in model.parameters()]
    for a, b in zip(fused, separate):
        np.testing.assert_array_equal(a, b)

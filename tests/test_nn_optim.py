"""Optimizers, gradient clipping, schedules, bit-exact resume; PyTorch as an optional second opinion."""

import math

import numpy as np
import pytest

from edgekws import nn


def one_param(value, grad):
    p = np.array(value, dtype=np.float64)
    return [("w.weight", p, np.array(grad, dtype=np.float64))], p


def test_sgd_momentum_and_nesterov_by_hand():
    g = np.array([[1.0, -2.0]])
    for nesterov in (False, True):
        params, p = one_param([[0.5, 0.5]], g)
        opt = nn.SGD(params, lr=0.1, momentum=0.9, nesterov=nesterov)
        expect, v = p.copy(), np.zeros_like(p)
        for step in range(3):
            opt.step()
            v = g if step == 0 else 0.9 * v + g
            expect -= 0.1 * (g + 0.9 * v if nesterov else v)
            np.testing.assert_allclose(p, expect, rtol=1e-14)


def test_adam_adamw_and_l2_by_hand():
    g = np.array([[0.3, -1.0]])
    for cls, wd in ((nn.Adam, 0.0), (nn.Adam, 0.1), (nn.AdamW, 0.1)):
        params, p = one_param([[1.0, 2.0]], g)
        opt = cls(params, lr=0.01, weight_decay=wd)
        expect, m, v = p.copy(), 0.0, 0.0
        for t in range(1, 4):
            opt.step()
            gt = g + wd * expect if cls is nn.Adam else g
            if cls is nn.AdamW:
                expect *= 1 - 0.01 * wd
            m = 0.9 * m + 0.1 * gt
            v = 0.999 * v + 0.001 * gt * gt
            expect -= 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            np.testing.assert_allclose(p, expect, rtol=1e-12)


def test_weight_decay_skips_biases_by_default():
    b = np.ones(3)
    opt = nn.SGD([("d.bias", b, np.zeros(3))], lr=0.1, weight_decay=0.5)
    opt.step()
    np.testing.assert_array_equal(b, np.ones(3))


def test_clip_grad_norm():
    params = [("a", np.zeros(2), np.array([3.0, 0.0])), ("b", np.zeros(1), np.array([4.0]))]
    assert nn.clip_grad_norm(params, 1.0) == pytest.approx(5.0)
    total = math.sqrt(sum(float((g ** 2).sum()) for _, _, g in params))
    assert total == pytest.approx(1.0, rel=1e-5)
    assert nn.clip_grad_norm(params, 10.0) == pytest.approx(1.0, rel=1e-5)  # below: untouched
    # a diverging step: float32 squares overflowed, the norm came out inf and every gradient 0
    big = [(k, np.zeros(1, np.float32), np.array([3e19], np.float32)) for k in "abcd"]
    assert nn.clip_grad_norm(big, 1.0) == pytest.approx(6e19, rel=1e-6)
    np.testing.assert_allclose([g[0] for _, _, g in big], 0.5, rtol=1e-5)


def test_schedules():
    assert [nn.warmup(s, 1.0, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert nn.cosine(0, 1.0, 100) == 1.0 and nn.cosine(100, 1.0, 100, min_lr=0.1) == pytest.approx(0.1)
    assert nn.cosine(50, 1.0, 100) == pytest.approx(0.5)
    assert nn.cosine(1, 1.0, 100, warmup_steps=10) == pytest.approx(0.2)
    assert nn.cosine(10, 1.0, 100, warmup_steps=10) == 1.0
    assert [nn.step_decay(s, 1.0, 10, 0.5) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="step"):
        nn.cosine(-1, 1.0, 10)


def _model(seed):
    return nn.Sequential([nn.Conv2D(4, 3, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
                          nn.GlobalAvgPool(), nn.Dropout(0.2), nn.Dense(3)], (6, 5, 1), rng=seed)


@pytest.mark.parametrize("make_opt", [lambda p: nn.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                      lambda p: nn.AdamW(p, lr=0.01)], ids=["sgd", "adamw"])
def test_resume_is_bit_exact(make_opt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6, 5, 1)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    ce = nn.SoftmaxCrossEntropy()

    def run(model, opt, steps, start):
        for s in range(start, start + steps):
            opt.lr = nn.cosine(s, 0.05, 10, warmup_steps=2)
            model.zero_grad()
            ce.forward(model(x, training=True), y)
            model.backward(ce.backward())
            nn.clip_grad_norm(model.parameters(), 1.0)
            opt.step()

    straight = _model(1)
    run(straight, make_opt(straight.parameters()), 6, 0)
    first = _model(1)
    opt = make_opt(first.parameters())
    run(first, opt, 3, 0)
    saved = (first.state_dict(), opt.state_dict(), first.random_state())
    resumed = _model(99)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved[0])
    resumed.set_random_state(saved[2])
    opt2 = make_opt(resumed.parameters())
    opt2.load_state_dict(saved[1])
    run(resumed, opt2, 3, 3)
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v)


def test_pytorch_second_opinion():
    """The same small DS-CNN in PyTorch (float64): logits, loss, all gradients, one Adam step."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    model = nn.Sequential([nn.Conv2D(4, (5, 4), stride=2, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
                           nn.DepthwiseConv2D(3, padding="same", use_bias=False), nn.BatchNorm(), nn.ReLU(),
                           nn.Conv2D(4, 1, use_bias=False), nn.BatchNorm(), nn.ReLU(), nn.GlobalAvgPool(),
                           nn.Dense(3)], (9, 8, 1), rng=rng, dtype=np.float64)
    x = rng.standard_normal((5, 9, 8, 1))
    labels = rng.integers(0, 3, 5)
    t = {n: torch.tensor(p.copy(), requires_grad=True) for n, p, _ in model.parameters()}

    def bn(h, name):
        return F.relu(F.batch_norm(h, None, None, t[f"{name}.gamma"], t[f"{name}.beta"], training=True, eps=1e-5))

    h = torch.tensor(x).permute(0, 3, 1, 2)
    h = F.pad(h, (1, 1, 2, 2))  # "same" padding as (left, right, top, bottom)
    h = F.conv2d(h, t["conv2d0.weight"].permute(0, 3, 1, 2), stride=2)
    h = bn(h, "batchnorm1")
    h = F.conv2d(F.pad(h, (1, 1, 1, 1)), t["depthwiseconv2d3.weight"].permute(2, 0, 1)[:, None], groups=4)
    h = bn(h, "batchnorm4")
    h = bn(F.conv2d(h, t["conv2d6.weight"].permute(0, 3, 1, 2)), "batchnorm7")
    logits = h.mean(dim=(2, 3)) @ t["dense10.weight"].T + t["dense10.bias"]
    loss_t = F.cross_entropy(logits, torch.tensor(labels))
    loss_t.backward()
    ce = nn.SoftmaxCrossEntropy()
    ours = model(x, training=True)
    np.testing.assert_allclose(ours, logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert ce.forward(ours, labels) == pytest.approx(loss_t.item(), rel=1e-12)
    model.backward(ce.backward())
    for n, _, g in model.parameters():
        np.testing.assert_allclose(g, t[n].grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=n)
    opt_t = torch.optim.Adam(list(t.values()), lr=0.01)
    opt_t.step()
    nn.Adam(model.parameters(), lr=0.01).step()
    for n, p, _ in model.parameters():
        np.testing.assert_allclose(p, t[n].detach().numpy(), rtol=1e-10, atol=1e-10, err_msg=n)

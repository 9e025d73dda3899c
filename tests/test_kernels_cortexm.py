"""The int8 kernels on every code path against the numpy integer reference, bit for bit.

firmware/src/kernels.c has a DSP path (SXTB16 / SMLAD, Cortex-M4) and a plain C path (Cortex-M3,
host, Raspberry Pi), special paths for pointwise convolutions, windows inside or at the edge of
the input, zero point -128, "lean" layers (every shift > 32, all-of-int8 clamp, foldable bias)
and the rest. Seeded random cases cover them all (odd channel and pixel counts, channel counts
that are not multiples of 4, windows in the padding, saturating biases, shifts on both sides of
32, multiplier 0, batch > 1) and run through tools/qemu_run.py's kernel test program: on the host
with ASan + UBSan, and under QEMU on the Cortex-M4F (DSP path and -DEKWS_NO_DSP) and the
Cortex-M3 when arm-none-eabi-gcc and qemu-system-arm are installed. The requantization rule's
32-bit fast form (shift > 32) is checked against fixedpoint.py on edge values and ties.
"""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekws.quant.fixedpoint import requantize_scalar
from edgekws.export.golden import random_case
from edgekws.quant.qmodel import layer_forward

ROOT = Path(__file__).resolve().parents[1]
ARM_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm", "make")
HAVE_ARM = all(shutil.which(t) for t in ARM_TOOLS)
HAVE_CC = any(shutil.which(c) for c in ("cc", "gcc", "clang"))
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _qemu_run():
    spec = importlib.util.spec_from_file_location("qemu_run", ROOT / "tools" / "qemu_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _layer(rng, op, in_shape, cout=0, kernel=(1, 1), stride=(1, 1), pads=((0, 0), (0, 0)), in_zp=-128,
           out_zp=-128, act=(-128, 127), shifts=(34, 40), bias_range=(-5000, 5000), batch=1, name="k"):
    """One random layer and input: (QLayer, x), drawn by the golden vectors' generator."""
    q, x, _, _ = random_case(rng, name, op, in_shape, cout, kernel, stride, pads, in_zp, out_zp, act,
                             shift_range=(shifts[0], shifts[1] + 1), bias_range=bias_range, batch=batch)
    return q, x


def kernel_cases(seed: int = 7):
    rng = np.random.default_rng(seed)
    same = ((1, 1), (1, 1))
    specs = [
        # pointwise (matrix product path): channel counts around multiples of 4 and 8, odd pixels, odd cout
        ("conv", (13, 10, 16), dict(cout=24)),
        ("conv", (3, 5, 19), dict(cout=7, in_zp=-100, out_zp=40, act=(-100, 60))),
        ("conv", (1, 3, 5), dict(cout=1, in_zp=0)),
        ("conv", (2, 2, 12), dict(cout=5, shifts=(20, 40), in_zp=3)),
        ("conv", (1, 1, 1), dict(cout=2, in_zp=127)),
        ("conv", (3, 3, 8), dict(cout=6, batch=2)),
        # general convolutions (two windows side by side, zero point -128 = flipped bytes or not)
        ("conv", (49, 40, 1), dict(cout=8, kernel=(10, 4), stride=(2, 2), pads=((4, 5), (1, 1)))),
        ("conv", (12, 9, 1), dict(cout=3, kernel=(10, 4), stride=(2, 2), pads=((4, 5), (1, 2)), batch=2)),
        ("conv", (5, 7, 3), dict(cout=5, kernel=(3, 2), stride=(2, 1), pads=((1, 1), (0, 1)), in_zp=-7)),
        ("conv", (6, 5, 2), dict(cout=4, kernel=(3, 3), stride=(1, 2), pads=same, in_zp=127, out_zp=-128)),
        ("conv", (4, 4, 3), dict(cout=3, kernel=(2, 2), in_zp=5, shifts=(1, 3))),
        ("conv", (7, 6, 4), dict(cout=9, kernel=(3, 3), stride=(1, 1), pads=same, act=(-128, 0))),
        ("conv", (3, 3, 5), dict(cout=2, kernel=(5, 5), stride=(1, 1), pads=((2, 2), (2, 2)), in_zp=0)),
        ("conv", (2, 2, 1), dict(cout=3, kernel=(3, 3), stride=(3, 3), pads=((3, 3), (3, 3)))),  # windows in the padding
        ("conv", (9, 8, 7), dict(cout=8, kernel=(3, 3), stride=(2, 2), pads=same, shifts=(31, 34))),
        ("conv", (5, 5, 4), dict(cout=2, kernel=(1, 1), stride=(2, 2))),  # 1x1 with a stride: window path
        ("conv", (5, 5, 2), dict(cout=3, kernel=(3, 3), stride=(2, 2), pads=same)),  # odd pixel count
        # depthwise: 3x3 inside and at the edges, channel tails, other window sizes
        ("depthwise", (13, 10, 24), dict(kernel=(3, 3), pads=same)),
        ("depthwise", (25, 20, 16), dict(kernel=(3, 3), stride=(2, 2), pads=((1, 1), (0, 1)))),
        ("depthwise", (6, 5, 5), dict(kernel=(3, 3), stride=(2, 2), pads=same, in_zp=127, out_zp=-5)),
        ("depthwise", (3, 4, 37), dict(kernel=(3, 3), pads=same, shifts=(6, 9), out_zp=0)),
        ("depthwise", (1, 1, 8), dict(kernel=(3, 3), pads=same, in_zp=0, out_zp=0)),
        ("depthwise", (7, 6, 7), dict(kernel=(5, 3), pads=((2, 2), (1, 1)), act=(-128, 6), batch=2)),
        ("depthwise", (4, 4, 6), dict(kernel=(2, 2), stride=(2, 2), shifts=(32, 34))),
        ("depthwise", (2, 2, 4), dict(kernel=(3, 3), stride=(3, 3), pads=((3, 3), (3, 3)))),
        # average pooling
        ("avgpool", (13, 10, 24), dict(kernel=(13, 10), stride=(13, 10))),
        ("avgpool", (5, 4, 3), dict(kernel=(2, 2), stride=(2, 2), pads=((0, 1), (0, 0)), shifts=(32, 33))),
        ("avgpool", (7, 5, 6), dict(kernel=(7, 5), stride=(7, 5), in_zp=100, out_zp=100)),
        ("avgpool", (49, 40, 1), dict(kernel=(2, 2), stride=(2, 2), pads=((0, 1), (0, 0)))),
        # dense: batch 1 (zero point in the loop) and batch > 1 (matrix product path)
        ("dense", (1, 1, 24), dict(cout=5, out_zp=71)),
        ("dense", (1, 1, 7), dict(cout=5, in_zp=127)),
        ("dense", (1, 1, 33), dict(cout=3, shifts=(1, 2))),
        ("dense", (1, 1, 70), dict(cout=12, batch=3)),
        ("dense", (1, 1, 1), dict(cout=1)),
    ]
    cases = []
    for i, (op, shape, kw) in enumerate(specs):
        q, x = _layer(rng, op, shape, name=f"case{i}", **kw)
        cases.append((q, x, layer_forward(q, x)))
    # edge values: saturating biases, multiplier 0, shift 32 / 33 boundaries
    q, x = _layer(rng, "conv", (4, 3, 6), cout=4, kernel=(3, 3), pads=same, name="saturating",
                  bias_range=(INT32_MAX - 20000, INT32_MAX))
    q.bias[1] = INT32_MIN
    q.multiplier[2] = 0
    q.shift[:] = [33, 32, 62, 1]
    cases.append((q, x, layer_forward(q, x)))
    q, x = _layer(rng, "conv", (3, 4, 8), cout=3, name="saturating_pointwise", bias_range=(-2**31, 2**31 - 1))
    q.bias[0] = INT32_MAX
    cases.append((q, x, layer_forward(q, x)))
    q, x = _layer(rng, "depthwise", (4, 4, 5), kernel=(3, 3), pads=same, name="saturating_depthwise",
                  bias_range=(INT32_MAX - 1000, INT32_MAX))
    q.bias[3] = INT32_MIN
    q.multiplier[0] = 0
    cases.append((q, x, layer_forward(q, x)))
    return cases


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return _qemu_run().kernel_program(kernel_cases(), tmp_path_factory.mktemp("kernels"))


def _check(r, n):
    assert r["status"] == 0 and r["ok"] == [True] * n, r["stdout"][-3000:]


@pytest.mark.skipif(not HAVE_CC, reason="needs a host C compiler")
def test_kernels_on_the_host_with_sanitizers(program):
    r = _qemu_run().run_kernel_program(program, "host")
    _check(r, len(kernel_cases()))


@pytest.mark.skipif(not HAVE_ARM, reason="needs gcc-arm-none-eabi and qemu-system-arm")
@pytest.mark.parametrize("board,flags", [("an386", ""), ("an386", "-DEKWS_NO_DSP"), ("an385", "")])
def test_kernels_on_cortex_m(program, board, flags):
    r = _qemu_run().run_kernel_program(program, board, extra_cflags=flags)
    _check(r, len(kernel_cases()))


def test_requantization_fast_form_matches_python():
    from edgekws.export.cruntime import requantize_c

    rng = np.random.default_rng(11)
    accs = [0, 1, -1, 2, -2, 3, -3, INT32_MAX, INT32_MIN, 2**30, -(2**30), 12345, -12345]
    accs += rng.integers(INT32_MIN, INT32_MAX, 20, endpoint=True).tolist()
    rows = []
    for shift in (31, 32, 33, 34, 35, 40, 47, 62):
        for m in (0, 1, 3, 2**30, 1518500250, 2**31 - 1):
            for acc in accs:
                for bias in (0, 7, -7, INT32_MAX):
                    rows.append((acc, bias, m, shift, -128, -128, 127))
                    rows.append((acc, bias, m, shift, 3, -100, 100))
        # exact ties (p = (2j + 1) * 2^(shift-1) for multiplier 2^k) round away from zero
        for m_exp in (0, 1, 5, 30):
            unit = 1 << max(shift - 1 - m_exp, 0)
            if shift - 1 - m_exp >= 0 and unit < 2**31:
                for j in (-3, -2, -1, 0, 1, 2):
                    acc = (2 * j + 1) * unit
                    if INT32_MIN <= acc <= INT32_MAX:
                        rows.append((acc, 0, 1 << m_exp, shift, 0, -128, 127))
    got = [requantize_c(*r) for r in rows]
    want = [requantize_scalar(*r) for r in rows]
    bad = [(r, g, w) for r, g, w in zip(rows, got, want) if g != w]
    assert not bad, bad[:5]

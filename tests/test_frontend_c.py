"""The C frontend (firmware/) against the numpy integer frontend, bit for bit; C tests and sanitizers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekws.errors import AudioError, EdgekwsError
from edgekws.features import FeatureConfig, compute_features
from edgekws.features import signals

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
HAVE_CC = shutil.which("cc") is not None or shutil.which("gcc") is not None

pytestmark = pytest.mark.skipif(not HAVE_CC, reason="no C compiler")

CONFIGS = [
    FeatureConfig(),
    FeatureConfig(preemphasis=0.97),
    FeatureConfig(fft_size=256, window_ms=16.0, hop_ms=10.0, num_bands=24, low_hz=60.0, high_hz=8000.0),
]


@pytest.fixture(scope="module")
def cfrontend():
    from edgekws.features.cfrontend import CFrontend

    return CFrontend


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 3000),
    level=st.sampled_from([0, 1, 3, 100, 3000, 32767, 40000]),
    which=st.integers(0, len(CONFIGS) - 1),
)
def test_c_equals_numpy_random_audio(cfrontend, seed, n, level, which):
    cfg = CONFIGS[which]
    rng = np.random.default_rng(seed)
    x = np.clip(np.round(rng.standard_normal(n) * level), -32768, 32767).astype(np.int16)
    fe = cfrontend(cfg)
    np.testing.assert_array_equal(fe.push(x), compute_features(x, cfg))


def test_c_equals_numpy_on_speech_and_edge_cases_streaming(cfrontend):
    rng = np.random.default_rng(7)
    speech = signals.speech_like(rng, 1.0, -3.0)
    clips = [
        speech,
        signals.speech_like(rng, 1.0, -30.0),
        signals.clipped(speech, 8.0),
        signals.square(3000.0, 0.3),
        signals.extreme_noise(rng, 0.3),
        np.full(5000, -32768, np.int16),
    ]
    for cfg in CONFIGS:
        fe = cfrontend(cfg)
        for x in clips:
            fe.reset()
            expected = compute_features(x, cfg)
            out, pos = [], 0
            while pos < x.size:  # random chunking, including empty pushes
                n = int(rng.integers(0, 1500))
                out.append(fe.push(x[pos : pos + n]))
                pos += n
            np.testing.assert_array_equal(np.concatenate(out), expected)


@pytest.mark.parametrize(
    "cfg",
    [
        FeatureConfig(fft_size=64, window_ms=4.0, hop_ms=2.0, num_bands=8),  # 32-point FFT: radix 2, 4, 4
        FeatureConfig(fft_size=128, window_ms=8.0, hop_ms=4.0, num_bands=16),  # radix 4, 4, 4
        FeatureConfig(fft_size=1024, window_ms=64.0),
        FeatureConfig(fft_size=2048, window_ms=100.0, hop_ms=50.0),  # radix 2, then five radix-4 stages
    ],
    ids=["64", "128", "1024", "2048"],
)
def test_c_equals_numpy_other_fft_sizes(cfrontend, cfg):
    from edgekws.firmware import load_library

    lib = load_library(["-DEKWS_FRONTEND_MAX_FFT=2048"])
    rng = np.random.default_rng(cfg.fft_size)
    x = np.concatenate([signals.speech_like(rng, 0.6, -6.0), signals.extreme_noise(rng, 0.2), np.zeros(3000, np.int16)])
    np.testing.assert_array_equal(cfrontend(cfg, lib=lib).push(x), compute_features(x, cfg))


def test_c_frontend_errors(cfrontend):
    with pytest.raises(EdgekwsError, match="invalid configuration"):
        cfrontend(FeatureConfig(fft_size=1024))  # above EKWS_FRONTEND_MAX_FFT of the default build
    with pytest.raises(AudioError, match="int16"):
        cfrontend().push(np.zeros(10, np.float32))


def _make(target: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    return subprocess.run(
        ["make", "-C", str(FIRMWARE), target, f"BUILD={tmp_path / 'host'}", f"SAN_BUILD={tmp_path / 'san'}"],
        capture_output=True,
        text=True,
    )


def test_make_test(tmp_path):
    proc = _make("test", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all passed" in proc.stdout
    assert (tmp_path / "host" / "libekws.a").is_file()


def test_make_sanitize(tmp_path):
    probe = subprocess.run(
        ["cc", "-fsanitize=address,undefined", "-x", "c", "-", "-o", str(tmp_path / "probe")],
        input="int main(void){return 0;}",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip("compiler has no ASan/UBSan runtime")
    proc = _make("sanitize", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all passed" in proc.stdout


def test_cortex_m4_build_matches_golden_under_qemu(tmp_path):
    """The frontend cross-built for Cortex-M4 reproduces every golden case bit for bit on QEMU's
    mps2-an386 and reports instructions per hop (skipped without the ARM toolchain or QEMU)."""
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    tool = FIRMWARE.parent / "tools" / "qemu_count.py"
    proc = subprocess.run([sys.executable, str(tool), "--hops", "5", "--build", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "golden: all cases bit-exact" in proc.stdout
    median = int(proc.stdout.split("| median")[1].split("|")[1])
    assert 10_000 < median < 200_000  # instructions per 20 ms hop (64k when written)

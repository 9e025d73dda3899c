"""firmware/examples/host: the command-line keyword spotter (WAV + model.bin -> label and int8
logits) built with make, run on a clip and a blob made here from a tiny quantized bundle; its
logits must equal numpy's int8_forward on the same features; bad inputs fail with a message."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgekws.audio import write_wav  # noqa: E402
from edgekws.features import compute_features  # noqa: E402
from edgekws.quant import int8_forward, quantize_bundle  # noqa: E402
from quant_helpers import FC, features, make_bundle  # noqa: E402

HOST = Path(__file__).resolve().parents[1] / "firmware" / "examples" / "host"
pytestmark = pytest.mark.skipif(not (shutil.which("cc") and shutil.which("make")), reason="needs cc and make")


def _build(*args) -> None:
    subprocess.run(["make", "-s", "-C", str(HOST), *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("host")
    bundle, _ = make_bundle(root / "model", n_classes=4, seed=5)
    qm = quantize_bundle(bundle, features(32, seed=6), log=lambda *a: None)
    out = root / "c"
    subprocess.run([sys.executable, "-m", "edgekws", "export", str(bundle.path), "--c", str(out)],
                   check=True, capture_output=True, text=True)
    _build()
    return root, bundle, qm, out


def _run(*args):
    return subprocess.run([str(HOST / "build" / "kws"), *map(str, args)], capture_output=True, text=True)


def _parse(stdout: str):
    lines = dict(line.split(" ", 1) for line in stdout.strip().splitlines())
    return lines["label"].split(), np.array([int(v) for v in lines["logits"].split()], np.int8)


@pytest.mark.parametrize("seconds", [1.0, 0.6, 1.5])
def test_logits_equal_numpy_int8_forward(setup, seconds):
    root, _, qm, out = setup
    rng = np.random.default_rng(int(seconds * 10))
    n = int(seconds * 16000)
    t = np.arange(n) / 16000.0
    audio = np.round((0.3 * np.sin(2 * np.pi * 800 * t) + 0.05 * rng.standard_normal(n)) * 32767).astype(np.int16)
    wav = root / f"clip{n}.wav"
    write_wav(wav, audio)
    first = np.zeros(16000, np.int16)
    first[:min(n, 16000)] = audio[:16000]
    expect = int8_forward(qm, compute_features(first[None], FC))[0]
    r = _run(out / "model.bin", wav)
    assert r.returncode == 0, r.stderr
    label, logits = _parse(r.stdout)
    np.testing.assert_array_equal(logits, expect)
    assert label == [str(int(np.argmax(expect)))]


def test_label_names_from_the_generated_header(setup):
    root, bundle, qm, out = setup
    _build(f"DATA={out}")
    wav = root / "silence.wav"
    write_wav(wav, np.zeros(8000, np.int16))
    r = subprocess.run([str(HOST / "build" / "labels" / "kws"), str(out / "model.bin"), str(wav)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    label, logits = _parse(r.stdout)
    k = int(np.argmax(int8_forward(qm, compute_features(np.zeros((1, 16000), np.int16), FC))[0]))
    assert label == [str(k), bundle.labels[k]]


def test_bad_blob_and_bad_wav_fail_with_a_message(setup):
    root, _, _, out = setup
    wav = root / "ok.wav"
    write_wav(wav, np.zeros(16000, np.int16))
    blob = bytearray((out / "model.bin").read_bytes())
    blob[200] ^= 0x55
    (root / "corrupt.bin").write_bytes(bytes(blob))
    (root / "notwav.wav").write_bytes(b"this is not audio at all, just some text\n" * 4)
    write_wav(root / "rate.wav", np.zeros(8000, np.int16), sr=8000)
    cases = [((root / "corrupt.bin", wav), "not a valid edgekws model blob"),
             ((root / "missing.bin", wav), "cannot read"),
             ((out / "model.bin", root / "notwav.wav"), "not a WAV file"),
             ((out / "model.bin", root / "rate.wav"), "16000 Hz"),
             ((out / "model.bin",), "usage")]
    for args, message in cases:
        r = _run(*args)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
        assert r.stdout == ""


def test_blob_larger_than_the_static_arena_is_refused(setup):
    root, _, _, out = setup
    _build("BUILD=build/tiny-arena", "EXTRA_CFLAGS=-DEKWS_HOST_ARENA_BYTES=64")
    wav = root / "ok.wav"
    write_wav(wav, np.zeros(16000, np.int16))
    r = subprocess.run([str(HOST / "build" / "tiny-arena" / "kws"), str(out / "model.bin"), str(wav)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "arena" in r.stderr and r.stdout == ""

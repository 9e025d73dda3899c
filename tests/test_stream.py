"""Streaming detection in Python: the integer detector's rules on hand-made logits, the
step-by-step detector equal to the vectorized one, identical detections from the numpy, onnx and
C engines (batch, live chunks), robustness (short, silent, clipped, DC, mid-frame endings), the
listen / eval-stream commands and threshold tuning on a tiny trained model."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from edgekws.audio import write_wav  # noqa: E402
from edgekws.bundle import Bundle  # noqa: E402
from edgekws.cli import main  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.features.signals import speech_like  # noqa: E402
from edgekws.quant import quantize_bundle  # noqa: E402
from edgekws.stream.detector import (Detector, StreamConfig, detect_steps, exp_lut, fire,  # noqa: E402
                                     posteriors_q15, smooth_q15)
from edgekws.stream.evalstream import build_command_stream, score, speech_end  # noqa: E402
from edgekws.stream.pipeline import StreamingDetector, StreamSetup, detect_audio  # noqa: E402
from quant_helpers import features, make_bundle  # noqa: E402

# Low thresholds: the random test model is unsure, and these make it fire now and then.
TEST_STREAM = StreamConfig(hop_every=2, smooth=2, refractory=5, thresholds={"w0": 900, "w1": 2000, "w2": 2300})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    b, _ = make_bundle(tmp_path_factory.mktemp("stream") / "m", seed=5)
    quantize_bundle(b, features(64, seed=6), log=lambda *a: None)
    b.update(stream=TEST_STREAM.to_dict())
    return b


@pytest.fixture(scope="module")
def setup(bundle):
    return StreamSetup.from_bundle(bundle)


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(0)
    return np.concatenate([speech_like(rng, 1.0) for _ in range(8)])


def keys(dets):
    return [(d.label, d.frame, d.score_q15) for d in dets]


# ---- the detector's rules ----------------------------------------------------------------------

def test_exp_lut_and_posteriors():
    lut = exp_lut(0.1)
    assert lut.dtype == np.uint16 and lut[0] == 65535 and np.all(np.diff(lut.astype(int)) <= 0)
    assert lut[10] == round(65535 * np.exp(-1.0))
    p = posteriors_q15(np.array([[10, 10, -128]], np.int8), lut)
    assert p.tolist() == [[16384, 16384, 0]]
    with pytest.raises(EdgekwsError, match="output scale must be a positive number"):
        exp_lut(0.0)


def test_fire_thresholds_ties_refractory():
    s = np.array([[100, 200], [300, 300], [400, 100], [500, 900], [10, 10], [700, 10]])
    thr = np.array([300, 300])
    # step 1: tie -> lower index; steps 2-3 silent (refractory 2); step 5 fires again
    assert fire(s, thr, 2) == [(1, 0, 300), (5, 0, 700)]
    assert fire(s, thr, 0) == [(1, 0, 300), (2, 0, 400), (3, 1, 900), (5, 0, 700)]
    assert fire(s, np.array([-1, 300]), 0) == [(1, 1, 300), (3, 1, 900)]  # class 0 disabled
    assert fire(s, np.array([32769, 40000]), 0) == []


def test_smoothing_counts_steps_before_the_first_as_zero():
    p = np.array([[30000], [30000], [0], [3]])
    assert smooth_q15(p, 3).ravel().tolist() == [10000, 20000, 20000, 10001]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(0, 7), st.integers(2, 6))
def test_step_by_step_detector_equals_vectorized(seed, smooth, refractory, k):
    rng = np.random.default_rng(seed)
    logits = rng.integers(-128, 128, (60, k)).astype(np.int8)
    logits[rng.random(60) < 0.3, 0] = 127
    lut = exp_lut(rng.uniform(0.02, 0.5))
    thr = rng.integers(-1, 32769, k)
    det = Detector(lut, thr, smooth, refractory)
    live = [(t, *hit) for t, x in enumerate(logits) if (hit := det.step(x)) is not None]
    assert live == detect_steps(logits, lut, thr, smooth, refractory)


# ---- engines agree -----------------------------------------------------------------------------

def test_engines_give_identical_detections(setup, audio):
    want = detect_audio(setup, audio, "numpy")
    assert len(want) >= 2  # the test would be vacuous without detections
    assert keys(detect_audio(setup, audio, "onnx")) == keys(want)
    assert keys(detect_audio(setup, audio, "c")) == keys(want)
    d = want[0]
    fc = setup.feature_config
    assert d.time == (d.frame * fc.hop_len + fc.window_len) / fc.sample_rate


@pytest.mark.parametrize("engine", ["numpy", "c"])
def test_live_chunks_equal_batch(setup, audio, engine):
    want = keys(detect_audio(setup, audio, "numpy"))
    live = StreamingDetector(setup, engine)
    rng = np.random.default_rng(1)
    got, i = [], 0
    while i < len(audio):
        n = int(rng.integers(0, 2500))
        got += live.push(audio[i:i + n])
        i += n
    assert keys(got) == want
    live.reset()
    assert keys(live.push(audio)) == want


@pytest.mark.parametrize("name, make", [
    ("empty", lambda r: np.zeros(0, np.int16)),
    ("one sample", lambda r: np.array([1000], np.int16)),
    ("shorter than a window", lambda r: speech_like(r, 0.02)),
    ("half a second", lambda r: speech_like(r, 0.5)),
    ("silence", lambda r: np.zeros(48000, np.int16)),
    ("clipping", lambda r: np.where(np.sin(np.arange(40000) / 7.0) > 0, 32767, -32768).astype(np.int16)),
    ("dc", lambda r: np.full(40000, 20000, np.int16)),
    ("ends mid-frame", lambda r: speech_like(r, 2.0)[:32000 - 123]),
])
def test_robust_inputs_all_engines_agree(setup, name, make):
    x = make(np.random.default_rng(2))
    want = keys(detect_audio(setup, x, "numpy"))
    assert keys(detect_audio(setup, x, "onnx")) == want
    assert keys(detect_audio(setup, x, "c")) == want
    fc = setup.feature_config
    used = 0 if len(x) < fc.window_len else (fc.num_frames(len(x)) - 1) * fc.hop_len + fc.window_len
    assert keys(detect_audio(setup, x[:used], "numpy")) == want  # unused tail samples change nothing


def test_bad_audio_is_refused(setup):
    with pytest.raises(EdgekwsError, match=r"expected mono \(n,\) int16 audio, got float32"):
        detect_audio(setup, np.zeros(100, np.float32))


# ---- bundle settings ---------------------------------------------------------------------------

def test_stream_settings_roundtrip_and_errors(bundle, tmp_path):
    cfg = StreamConfig.from_bundle(bundle)
    assert (cfg.hop_every, cfg.smooth, cfg.refractory, cfg.thresholds) == (2, 2, 5, TEST_STREAM.thresholds)
    assert cfg.threshold_array(bundle.labels).tolist() == [-1, -1, 900, 2000, 2300]
    b2, _ = make_bundle(tmp_path / "m2")
    b2.update(stream={"hop_every": 4, "smooth": 99, "refractory": 1, "thresholds": {}})
    with pytest.raises(EdgekwsError, match=r"smooth must be in \[1, 16\], got 99"):
        StreamConfig.from_bundle(b2)
    b2.update(stream={"hop_every": 4, "smooth": 2, "refractory": 1, "thresholds": {"nope": 1}})
    with pytest.raises(EdgekwsError, match=r"stream thresholds name unknown labels \['nope'\]"):
        StreamConfig.from_bundle(b2)
    b2.update(stream=None)
    assert StreamConfig.from_bundle(b2).thresholds == {"w0": 26214, "w1": 26214, "w2": 26214}


# ---- commands ----------------------------------------------------------------------------------

def test_listen_file_all_engines_identical(bundle, audio, tmp_path, capsys):
    wav = tmp_path / "long.wav"
    write_wav(wav, audio)
    outs = []
    for engine in ("numpy", "onnx", "c"):
        assert main(["listen", str(bundle.path), "--file", str(wav), "--engine", engine, "--json"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] == outs[2]
    rows = [json.loads(line) for line in outs[0].splitlines()]
    assert len(rows) >= 2 and set(rows[0]) == {"label", "index", "score", "score_q15", "frame", "time"}
    assert main(["listen", str(bundle.path), "--file", str(wav)]) == 0
    assert "detection(s), engine numpy" in capsys.readouterr().err


def test_listen_errors(bundle, tmp_path, capsys):
    assert main(["listen", str(bundle.path), "--file", str(tmp_path / "missing.wav")]) == 2
    assert f"edgekws listen: error: {tmp_path / 'missing.wav'}: no such file" in capsys.readouterr().err
    b2, _ = make_bundle(tmp_path / "float_only")
    write_wav(tmp_path / "a.wav", np.zeros(100, np.int16))
    assert main(["listen", str(b2.path), "--file", str(tmp_path / "a.wav")]) == 2
    assert "not quantized yet (run: edgekws quantize" in capsys.readouterr().err


# ---- streaming evaluation ----------------------------------------------------------------------

def test_score_counts_hits_false_accepts_and_latency():
    events = [(16000, 32000, 24000, "yes"), (64000, 80000, 72000, "no")]
    dets = [(1.6, "yes"), (1.7, "yes"), (3.0, "no"), (4.6, "no"), (9.0, "yes")]
    m = score(dets, events, seconds=3600.0 + 2.0)
    # 1.6 s hits "yes"; 1.7 s is a duplicate, 3.0 s the wrong word, 9.0 s outside: 3 false accepts
    assert (m["hits"], m["false_accepts"], m["hit_rate"]) == (2, 3, 1.0)
    assert m["non_command_hours"] == 1.0 and m["false_accepts_per_hour"] == 3.0
    assert m["latency_ms_median"] == 100.0


def test_command_stream_is_seeded_and_marks_speech():
    clip = np.zeros(16000, np.int16)
    clip[4000:8000] = 5000
    assert speech_end(clip) == 8000
    cmds = [(clip, "yes"), (clip, "no")]
    a1, e1 = build_command_stream(cmds, [np.zeros(16000)], [np.ones(8000) * 0.01], np.random.default_rng(3))
    a2, e2 = build_command_stream(cmds, [np.zeros(16000)], [np.ones(8000) * 0.01], np.random.default_rng(3))
    assert np.array_equal(a1, a2) and e1 == e2
    assert sorted(e[3] for e in e1) == ["no", "yes"] and all(e[2] == e[0] + 8000 for e in e1)


def test_export_pi_folder(bundle, tmp_path, capsys):
    out = tmp_path / "pi"
    assert main(["export", str(bundle.path), "--target", "pi", "--out", str(out)]) == 0
    assert "Raspberry Pi folder" in capsys.readouterr().out
    for name in ("run.sh", "README.txt", "requirements.txt", "model/manifest.json", "model/model.int8.onnx",
                 "python/edgekws/stream/pipeline.py", "firmware/src/pipeline.c"):
        assert (out / name).is_file(), name
    assert "edgekws listen" in (out / "run.sh").read_text() and "libportaudio2" in (out / "README.txt").read_text()
    Bundle.load(out / "model")  # a verified bundle
    assert main(["export", str(bundle.path)]) == 2
    assert "nothing to do; pass --onnx, --c [DIR] and/or --target cortex-m4|pi" in capsys.readouterr().err


def _tone_dataset(root):
    """Speech Commands layout: commands w0-w2 and unknown 'cat' as tone bursts, a noise file,
    speakers 0-1 validation and 2-3 test (list files)."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000.0
    lists = {"val": [], "test": []}
    for word, f0 in {"w0": 400, "w1": 900, "w2": 1500, "cat": 2500}.items():
        (root / word).mkdir(parents=True)
        for s in range(4):
            env = (t >= 0.2) & (t < 0.6)
            x = 0.3 * env * np.sin(2 * np.pi * f0 * rng.uniform(0.95, 1.05) * t) + 0.003 * rng.standard_normal(16000)
            name = f"spk{s}_nohash_0.wav"
            write_wav(root / word / name, np.round(x * 32767).astype(np.int16))
            lists["val" if s < 2 else "test"].append(f"{word}/{name}")
    (root / "validation_list.txt").write_text("\n".join(lists["val"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav", np.round(0.05 * rng.standard_normal(48000) * 32767).astype(np.int16))
    return root


def test_eval_stream_tunes_and_stores_settings(tmp_path, capsys):
    b, _ = make_bundle(tmp_path / "m", seed=5)
    quantize_bundle(b, features(64, seed=6), log=lambda *a: None)
    data = _tone_dataset(tmp_path / "data")
    args = ["eval-stream", str(b.path), str(data), "--tune", "--engine", "numpy", "--negative-minutes", "0.5", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    m = r["metrics"]
    assert m["commands"] == 6 and 0 <= m["hit_rate"] <= 1 and m["stream_seconds"] > 30
    assert r["tuning"]["validation"]["false_accepts_per_hour"] <= 1.0
    stored = Bundle.load(b.path).manifest["stream"]
    assert stored["thresholds"] == r["config"]["thresholds"] and stored["tuning"]["target_false_accepts_per_hour"] == 1.0
    assert main(args + ["--noise", "3"]) == 2
    assert "--noise '3': expected LO,HI with 0 <= LO <= HI <= 10" in capsys.readouterr().err

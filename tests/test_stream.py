"""Streaming detection in Python: the integer detector's rules on hand-made logits, the
step-by-step detector equal to the vectorized one, identical detections from the numpy, onnx and
C engines (batch, live chunks), robustness (short, silent, clipped, DC, mid-frame endings), the
listen / eval-stream commands and threshold tuning on a tiny trained model."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from edgekws.audio import write_wav  # noqa: E402
from edgekws.bundle import Bundle  # noqa: E402
from edgekws.cli import main  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.features import FeatureConfig  # noqa: E402
from edgekws.features.signals import speech_like, tone  # noqa: E402
from edgekws.quant import quantize_bundle  # noqa: E402
from edgekws.stream.detector import (Detector, StreamConfig, detect_steps, exp_lut, fire,  # noqa: E402
                                     posteriors_q15, smooth_q15)
from edgekws.stream.engines import ModelEngine  # noqa: E402
from edgekws.stream.evalstream import (Event, Streams, stream_logits, build_command_stream, build_negative_stream,  # noqa: E402
                                       evaluate_streams, score, speech_end, speech_rms, speech_span, tune)
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


def test_every_engine_refuses_features_numpy_refuses(setup):
    """The onnx and c engines cast int16 features to int8 (200 -> -56) and took transposed
    (N, bands, frames) windows by their size alone: logits of other features, without a word."""
    from edgekws.stream.engines import make_engine

    x = features(3)
    t, f = x.shape[1:]
    for name in ("numpy", "onnx", "c"):
        engine = make_engine(name, setup.qm)
        np.testing.assert_array_equal(engine.logits(x), make_engine("numpy", setup.qm).logits(x))
        assert engine.logits(x[:0]).shape == (0, setup.qm.num_classes)   # the C model raised ValueError
        with pytest.raises(EdgekwsError, match="features must be int8, got int16"):
            engine.logits(x.astype(np.int16))
        with pytest.raises(EdgekwsError, match=f"features of shape \\({f}, {t}\\) per example, model expects"):
            engine.logits(np.ascontiguousarray(x.transpose(0, 2, 1)))


def test_the_c_engine_names_its_class_limit():
    """A model of more classes than the C detector holds failed with "invalid configuration"."""
    from edgekws.quant import quantize_model
    from quant_helpers import FC, make_model

    qm = quantize_model(make_model("dscnn-s", n_classes=40), features(8), FC.input_scale, FC.input_zero_point)
    labels = ["_silence_", "_unknown_"] + [f"w{i}" for i in range(38)]
    setup = StreamSetup(qm, labels, FC, StreamConfig(thresholds={w: 1 for w in labels[2:]}))
    audio = np.zeros(16000, np.int16)
    assert isinstance(detect_audio(setup, audio, "numpy"), list)   # numpy has no such limit
    with pytest.raises(EdgekwsError, match="the C stream detector handles at most 32 classes .* this model has 40"):
        detect_audio(setup, audio, "c")


def test_export_cortex_m4_refuses_more_classes_than_the_c_detector_holds(tmp_path, capsys):
    """A 40-class model exported a project whose firmware failed at boot with "invalid configuration"."""
    from retrain_helpers import quantized_bundle

    from edgekws.cli import main

    b = quantized_bundle(tmp_path / "m", n_classes=40)
    out = tmp_path / "fw"
    assert main(["export", str(b.path), "--target", "cortex-m4", "--out", str(out)]) == 2
    assert ("the C stream detector handles at most 32 classes (EKWS_DETECTOR_MAX_CLASSES, "
            "firmware/include/ekws/detector.h); this model has 40: train the microcontroller's model on fewer "
            "words (--words), or use --target pi") in capsys.readouterr().err
    assert not out.exists()
    assert main(["export", str(b.path), "--onnx", "--c", str(tmp_path / "c"), "--target", "cortex-m4", "--out", str(out)]) == 2
    assert not (tmp_path / "c").exists() and not list(b.path.glob("*.onnx"))   # refused before any export
    from edgekws.export.targets import write_cortex_m_project

    with pytest.raises(EdgekwsError, match="handles at most 32 classes"):   # the Python API too
        write_cortex_m_project(StreamSetup.from_bundle(b), out)
    assert not out.exists()


@pytest.mark.parametrize("engine", ["numpy", "c"])
def test_live_chunks_equal_batch(setup, audio, engine):
    want = keys(detect_audio(setup, audio, "numpy", end_silence=0))
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
    live.reset()  # the end of a stream: flush() hears what detect_audio hears after a recording
    assert keys(live.push(audio) + live.flush()) == keys(detect_audio(setup, audio, "numpy"))


def test_settings_changed_after_a_detector_is_built_do_not_reach_it(setup, audio):
    """numpy read hop_every on every push (0 crashed it) while C had copied it: two engines gave
    different detections for one setup. Both keep the settings they were built with."""
    import copy

    mine = copy.deepcopy(setup)
    want = keys(detect_audio(mine, audio, "numpy", end_silence=0))
    live = {e: StreamingDetector(mine, e) for e in ("numpy", "c")}
    mine.config.hop_every = 0
    for engine, det in live.items():
        assert keys(det.push(audio)) == want, engine


def test_a_command_at_the_very_end_of_a_recording_is_heard(setup, audio):
    """detect_audio hears a recording end in 1 s of silence (as `listen --file`): a word cut right
    after it is spoken still fires. Some cut of the test audio has a detection only that way."""
    fc = setup.feature_config
    tail = np.zeros(fc.sample_rate, np.int16)
    gained = 0
    for cut in range(8000, len(audio), 4000):
        x = audio[:cut]
        with_end = keys(detect_audio(setup, x, "numpy"))
        assert with_end == keys(detect_audio(setup, np.concatenate([x, tail]), "numpy", end_silence=0))
        assert with_end == keys(detect_audio(setup, x, "c"))
        exact = keys(detect_audio(setup, x, "numpy", end_silence=0))
        assert with_end[:len(exact)] == exact   # the silence only adds what the recording's end completes
        gained += len(with_end) > len(exact)
    assert gained >= 1
    with pytest.raises(EdgekwsError, match=r"end_silence: must be a number of seconds in \[0, 60\], got -1"):
        detect_audio(setup, audio, end_silence=-1)


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
    want = keys(detect_audio(setup, x, "numpy", end_silence=0))
    assert keys(detect_audio(setup, x, "onnx", end_silence=0)) == want
    assert keys(detect_audio(setup, x, "c", end_silence=0)) == want
    fc = setup.feature_config
    used = 0 if len(x) < fc.window_len else (fc.num_frames(len(x)) - 1) * fc.hop_len + fc.window_len
    assert keys(detect_audio(setup, x[:used], "numpy", end_silence=0)) == want  # unused tail samples change nothing
    ended = keys(detect_audio(setup, x, "numpy"))   # and with the silence after the recording
    assert keys(detect_audio(setup, x, "onnx")) == ended and keys(detect_audio(setup, x, "c")) == ended


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
    with pytest.raises(EdgekwsError, match=r"m2: manifest 'stream' setting smooth must be in \[1, 16\], got 99"):
        StreamConfig.from_bundle(b2)
    for value, message in ((0.5, "have a value of the wrong type"), (True, "have a value of the wrong type"),
                           (40000, r"m2: manifest 'stream' thresholds \{'w0': 40000\} are not Q15 posteriors: "
                                   r"each is an integer in 1..32768 \(16384 = 0.5\); leave a command out to disable it"),
                           (-5, r"thresholds \{'w0': -5\} are not Q15 posteriors")):
        b2.update(stream={"hop_every": 4, "smooth": 2, "refractory": 1, "thresholds": {"w0": value}})
        with pytest.raises(EdgekwsError, match=message):   # a hand edit is refused, never coerced
            StreamConfig.from_bundle(b2)
    b2.update(stream={"hop_every": 4, "smooth": 2, "refractory": 1, "thresholds": {"nope": 1}})
    with pytest.raises(EdgekwsError, match=r"m2: manifest 'stream' thresholds name unknown labels \['nope'\]"):
        StreamConfig.from_bundle(b2)
    b2.update(stream={"hop_every": 4, "smooth": 2, "thresholds": {}})
    with pytest.raises(EdgekwsError, match=r"manifest 'stream' settings lack 'refractory': they must be an object"):
        StreamConfig.from_bundle(b2)
    with pytest.raises(EdgekwsError, match=r"manifest 'stream' must be an object, got str"):
        b2.update(stream="fast")   # refused before it is stored (a hand edit is refused by from_bundle)
    b2.manifest["stream"] = "fast"
    with pytest.raises(EdgekwsError, match=r"manifest 'stream' settings have a value of the wrong type"):
        StreamConfig.from_bundle(b2)
    b2.update(stream=None)
    default = StreamConfig.from_bundle(b2)  # a bundle without settings: the defaults
    assert default.thresholds == {"w0": 26214, "w1": 26214, "w2": 26214}
    assert (default.hop_every, default.smooth, default.refractory) == (2, 8, 25)


def test_settings_assigned_after_from_bundle_are_checked_where_they_are_used(bundle, audio):
    from dataclasses import replace

    setup = StreamSetup.from_bundle(bundle)
    setup = replace(setup, config=StreamConfig(thresholds={"w0": 0.8}))   # 0.8 once became 0: fired on silence
    for use in (lambda: detect_audio(setup, np.zeros(32000, np.int16)), lambda: StreamingDetector(setup)):
        with pytest.raises(EdgekwsError, match=r"thresholds \{'w0': 0.8\} are not Q15 posteriors"):
            use()
    with pytest.raises(EdgekwsError, match=r"flush: seconds must be a number in \[0, 60\], got -1"):
        StreamingDetector(StreamSetup.from_bundle(bundle)).flush(-1)


def test_stream_setup_takes_a_bundle_or_its_path(bundle, audio):
    by_path = StreamSetup.from_bundle(str(bundle.path))
    assert keys(detect_audio(by_path, audio)) == keys(detect_audio(StreamSetup.from_bundle(bundle), audio))


@pytest.mark.parametrize("config, message", [
    (StreamConfig(thresholds={"w0": 0.8}), r"thresholds \{'w0': 0.8\} are not Q15 posteriors: each is an integer"),
    (StreamConfig(thresholds={"w0": 50000}), r"thresholds \{'w0': 50000\} are not Q15 posteriors"),
    (StreamConfig(thresholds={"W0": 20000}), r"thresholds name unknown labels \['W0'\] \(labels: _silence_, "),
    (StreamConfig(hop_every=2.5), r"'stream' setting hop_every must be an integer, got 2.5"),
    (StreamConfig(smooth=8.0), r"'stream' setting smooth must be an integer, got 8.0"),
    (StreamConfig(refractory=True), r"'stream' setting refractory must be an integer, got True"),
])
def test_stream_settings_made_in_python_are_checked_as_the_manifest_is(bundle, config, message):
    """A StreamConfig built in Python is refused where the same values in a manifest are (a float
    threshold of 0.8 once became 0 and fired on silence)."""
    with pytest.raises(EdgekwsError, match=message):
        StreamSetup.from_bundle(bundle, config)


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
    events = [Event(16000, 24000, "yes"), Event(64000, 72000, "no"), Event(120000, 128000, "_unknown_")]
    dets = [(1.6, "yes"), (1.7, "yes"), (5.0, "yes"), (4.6, "no"), (6.0, "no"), (8.0, "yes"), (30.0, "no")]
    m = score(dets, events, seconds=3600.0 + 2 * 1.5)
    # 1.6 s hits "yes" (latency 100 ms), 1.7 s repeats it; 4.6 s hits "no" (latency 100 ms); 5.0 s is
    # the wrong word; 6.0 s is after the "no" window (it ends 1 s after the word, at 5.5 s): noise;
    # 8.0 s follows the unknown word; 30 s is noise
    assert (m["hits"], m["hit_rate"], m["false_accepts"]) == (2, 1.0, 5)
    assert m["false_accepts_by_kind"] == {"wrong_word": 1, "repeat": 1, "unknown_word": 1, "noise": 2}
    assert m["non_command_hours"] == 1.0 and m["false_accepts_per_hour"] == 5.0
    assert m["false_accepts_per_hour_upper95"] == pytest.approx(10.51, abs=0.01)  # Poisson, 5 events
    assert m["latency_ms_median"] == 100.0
    assert m["false_accept_clips"] == 2   # the "no" clip heard as "yes", the unknown word heard as "yes"
    neg = score([], events, 3603.0, [(10.0, "yes")], [], 3600.0)
    assert neg["false_accepts_by_kind"]["noise"] == 1 and neg["non_command_hours"] == 2.0
    assert neg["false_accept_clips"] == 0  # noise is no clip


def test_false_accepts_from_one_clip_said_twice_count_one_source():
    # the same unknown clip (index 3) in the command stream and twice in the negative stream
    events = [Event(16000, 24000, "yes", "yes", 0), Event(64000, 72000, "_unknown_", "book", 3)]
    negative = [Event(16000, 20000, "_unknown_", "book", 3), Event(96000, 100000, "_unknown_", "book", 3),
                Event(160000, 164000, "_unknown_", "cat", 5)]
    m = score([(1.6, "yes"), (4.8, "on")], events, 3603.0, [(1.5, "on"), (6.5, "on")], negative, 3600.0)
    assert m["false_accepts_by_kind"]["unknown_word"] == 3 and m["top_confusions"] == {"book -> on": 3}
    assert m["false_accept_clips"] == 1
    m = score([], events, 3603.0, [(1.5, "on"), (10.5, "on")], negative, 3600.0)
    assert m["false_accept_clips"] == 2   # book and cat
    unnamed = [Event(16000, 24000, "_unknown_", "a"), Event(64000, 72000, "_unknown_", "b")]  # no clip index
    assert score([(1.6, "on"), (4.6, "on")], unnamed, 3603.0)["false_accept_clips"] == 2


def test_speech_span():
    clip = np.zeros(16000, np.int16)
    clip[4000:12000] = (2000 + 1000 * np.sin(np.arange(8000) / 3.0)).astype(np.int16)
    assert speech_span(clip) == (4000, 12000) and speech_end(clip) == 12000
    clip[100:200] = 20  # far below the word: not speech
    assert speech_span(clip) == (4000, 12000)
    assert speech_span(np.zeros(16000, np.int16)) == (0, 16000)


# ---- streams with known words, a perfect model -------------------------------------------------

TONES = {"w0": 600.0, "w1": 1500.0, "w2": 3500.0, "_unknown_": 5500.0}


def _band(freq):
    from edgekws.features import FeatureConfig, compute_features

    f = compute_features(tone(freq, 1.0, 8000.0).astype(np.int16)[None], FeatureConfig())[0]
    return int(np.argmax(f[20:30].mean(axis=0)))


class ToneOracle(ModelEngine):
    """A perfect model of tone words: a class whose tone lies wholly inside the window (not in its
    first or last frames) gets logit 100, everything else -100, _silence_ when no tone is inside.
    The tone of _unknown_ also raises w0 to posterior `leak` (a confusable unknown word); with `weak`,
    w1's own tone gives w1 only that posterior (the rest goes to _unknown_: a command heard poorly)."""

    name = "oracle"

    def __init__(self, labels, leak=0.0, scale=0.1, weak=None):
        super().__init__(SimpleNamespace(input_shape=(49, 40), num_classes=len(labels), output_scale=scale))
        self.labels, self.leak, self.scale, self.weak = labels, leak, scale, weak
        self.bands = {labels.index(w): _band(f) for w, f in TONES.items()}

    def logits(self, windows):
        w = windows.reshape(len(windows), 49, 40).astype(np.int64)
        out = np.full((len(w), len(self.labels)), -100, np.int64)
        out[:, 0] = 100
        for k, b in self.bands.items():
            active = w[:, :, b] > 40
            inside = active[:, 3:-3].any(axis=1) & ~active[:, :3].any(axis=1) & ~active[:, -3:].any(axis=1)
            out[inside] = -100
            out[inside, k] = 100
            if self.labels[k] == "_unknown_" and self.leak >= 1:  # the unknown word sounds like w0
                out[inside, k], out[inside, 2] = -100, 100
            elif self.labels[k] == "_unknown_" and self.leak:
                out[inside, 2] = 100 + int(round(np.log(self.leak / (1 - self.leak)) / self.scale))
            if self.labels[k] == "w1" and self.weak is not None:
                out[inside, 1] = 100 + int(round(np.log((1 - self.weak) / self.weak) / self.scale))
        return np.clip(out, -128, 127).astype(np.int8)


def _tone_word(freq, rng):
    clip = np.zeros(16000)
    at = 160 * int(rng.integers(13, 56))  # on the 10 ms grid of speech_span
    clip[at:at + 4800] = tone(freq, 0.3, rng.uniform(4000, 9000))
    return clip.astype(np.int16)


def _oracle_streams(seed, negative_seconds, snr=(15.0, 25.0)):
    rng = np.random.default_rng(seed)
    commands = [(_tone_word(TONES[w], rng), w) for w in ("w0", "w1", "w2") for _ in range(8)]
    unknowns = [(_tone_word(TONES["_unknown_"], rng), "hum") for _ in range(6)]
    noises = [rng.standard_normal(48000).astype(np.float32) * 0.1]
    level = speech_rms([c for c, _ in commands])
    audio, events = build_command_stream(commands, unknowns, noises, rng, snr, level)
    neg, neg_events = build_negative_stream(unknowns, noises, negative_seconds, rng, snr, level)
    return Streams(audio, events, neg, neg_events), level


def _oracle_setup(leak=0.0, weak=None):
    labels = ["_silence_", "_unknown_", "w0", "w1", "w2"]
    engine = ToneOracle(labels, leak, weak=weak)
    cfg = StreamConfig(hop_every=2, smooth=3, refractory=25, thresholds={w: 26000 for w in labels[2:]})
    return StreamSetup(engine.qm, labels, FeatureConfig(), cfg), engine


def test_streams_are_seeded_with_words_where_the_events_say_and_noise_at_the_snr():
    (a1, e1, n1, ne1), level = _oracle_streams(3, 20.0)
    (a2, e2, n2, ne2), _ = _oracle_streams(3, 20.0)
    assert np.array_equal(a1, a2) and e1 == e2 and np.array_equal(n1, n2) and ne1 == ne2
    assert sorted(e.label for e in e1 if e.label != "_unknown_") == ["w0"] * 8 + ["w1"] * 8 + ["w2"] * 8
    assert len(ne1) >= 4 and all(e.label == "_unknown_" for e in ne1) and len(n1) == 20 * 16000
    for e in e1 + ne1:
        assert e.end - e.start == 4800  # the tone, found where the event says
    # between words: noise at 15-25 dB below the speech level (per 5 s segment, cross-faded)
    quiet = np.ones(len(a1), bool)
    for e in e1:
        quiet[e.start - 800:e.end + 800] = False
    rms = np.sqrt(np.mean(a1[quiet].astype(np.float64) ** 2))
    assert level * 10 ** (-25 / 20) < rms < level * 10 ** (-15 / 20)
    rng = np.random.default_rng(3)
    clean, events = build_command_stream([(_tone_word(600.0, rng), "w0")], [], [], rng, None, 3000.0)
    e = events[0]
    assert clean[e.start:e.end].any() and not clean[:e.start].any() and not clean[e.end:].any()


def test_known_words_give_exactly_their_detections_on_every_engine_path():
    streams, _ = _oracle_streams(4, 30.0)
    setup, oracle = _oracle_setup()
    dets = detect_audio(setup, streams.command_audio, oracle)
    commands = [e for e in streams.events if e.label != "_unknown_"]
    assert [d.label for d in dets] == [e.label for e in commands]  # one detection per word, in order
    for d, e in zip(dets, commands):
        assert e.end / 16000 <= d.time <= e.end / 16000 + 0.3
    live = StreamingDetector(setup, oracle)  # the live path with the same oracle
    got = []
    for i in range(0, len(streams.command_audio), 1234):
        got += live.push(streams.command_audio[i:i + 1234])
    assert keys(got + live.flush()) == keys(dets)
    m = evaluate_streams(setup, *streams, engine=oracle)
    assert (m["hits"], m["commands"], m["false_accepts"]) == (24, 24, 0)
    assert 0 < m["latency_ms_median"] < 300


def test_tuner_meets_its_false_accept_target_on_its_tuning_data():
    streams, _ = _oracle_streams(5, 60.0)
    setup, oracle = _oracle_setup(leak=0.6)  # the unknown word scores 0.6 on w0
    setup.config.thresholds = {w: int(0.5 * 32768) for w in ("w0", "w1", "w2")}
    before = evaluate_streams(setup, *streams, engine=oracle)
    assert before["false_accepts_by_kind"]["unknown_word"] >= 10  # the leak fires at threshold 0.5
    rec = tune(setup, *streams, target_fa_per_hour=60.0, engine=oracle)
    thr = setup.config.thresholds["w0"] / 32768
    assert 0.6 < thr and set(setup.config.thresholds) == {"w0", "w1", "w2"}
    assert rec["allowed_false_accepts"] == int(0.5 * 60.0 * rec["validation"]["non_command_hours"])
    after = evaluate_streams(setup, *streams, engine=oracle)
    assert after == {**rec["validation"], "stream_seconds": after["stream_seconds"]}
    assert after["false_accepts"] <= rec["allowed_false_accepts"] and after["hit_rate"] == 1.0
    assert before["top_confusions"] == {"hum -> w0": before["false_accepts"]}
    said = {e.clip for e in (*streams.events, *streams.negative_events) if e.label == "_unknown_"}
    assert before["false_accept_clips"] == len(said) == 6  # every one of the 6 unknown clips fired
    setup, oracle = _oracle_setup(leak=1.0)  # now every threshold that detects a command also fires on it
    with pytest.raises(EdgekwsError, match="every smoothing and threshold gives more than 0 false accept"):
        tune(setup, *streams, target_fa_per_hour=1.0, engine=oracle, smooth_choices=(1, 2))


def test_tuner_gives_each_command_its_own_threshold_halfway_to_its_own_limit():
    """The unknown word leaks 0.6 into w0, w1 is heard at posterior 0.5: one shared threshold must
    stay above 0.6 and loses every w1; per-command thresholds keep w0 above the leak and let w1 in."""
    from edgekws.stream.evalstream import THRESHOLD_GRID

    streams, _ = _oracle_streams(5, 60.0)
    setup, oracle = _oracle_setup(leak=0.6, weak=0.5)
    logits = stream_logits(setup, streams, oracle)
    shared = tune(setup, *streams, target_fa_per_hour=60.0, logits=logits, shrink=0.0, smooth_choices=(1, 3))
    q = shared["shared_threshold"]
    assert 0.6 < q / 32768 < 0.7 and set(setup.config.thresholds.values()) == {q}
    assert shared["validation"]["hits"] == 16 and shared["validation"]["false_accepts"] == 0  # no w1
    rec = tune(setup, *streams, target_fa_per_hour=60.0, logits=logits, smooth_choices=(1, 3))  # shrink 0.5
    thr = setup.config.thresholds
    own = int(THRESHOLD_GRID.min())  # nothing leaks into w1 or w2: their own limit is the grid's bottom
    assert rec["shrink"] == 0.5 and rec["shared_threshold"] == q
    assert thr["w0"] == q and thr["w1"] == thr["w2"] == round(q - 0.5 * (q - own)) < 0.5 * 32768
    assert rec["validation"]["hits"] == 24 and rec["validation"]["false_accepts"] == 0
    assert evaluate_streams(setup, *streams, logits=logits)["hits"] == 24  # what the bundle will do
    with pytest.raises(EdgekwsError, match=r"^--shrink: must be a number in \[0, 1\], got 2"):
        tune(setup, *streams, logits=logits, shrink=2)


def test_export_pi_folder(bundle, tmp_path, capsys):
    import os
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "b"                  # a bundle that also holds its C arrays (export --c), listed
    shutil.copytree(bundle.path, copy)     # in its manifest: the Pi's copy of it must load all the same
    assert main(["export", str(copy), "--c"]) == 0
    assert any(name.startswith("c/") for name in Bundle.load(copy).files)
    out = tmp_path / "pi"
    assert main(["export", str(copy), "--target", "pi", "--out", str(out)]) == 0
    assert "Raspberry Pi folder" in capsys.readouterr().out
    for name in ("run.sh", "README.txt", "requirements.txt", "model/manifest.json", "model/model.int8.onnx",
                 "python/edgekws/stream/pipeline.py", "firmware/src/pipeline.c"):
        assert (out / name).is_file(), name
    assert "edgekws listen" in (out / "run.sh").read_text() and "libportaudio2" in (out / "README.txt").read_text()
    Bundle.load(out / "model")  # a verified bundle
    # README.txt's step 5 with --engine c: the folder's python/ finds the folder's firmware/ by itself
    env = {k: v for k, v in os.environ.items() if k != "EDGEKWS_FIRMWARE_DIR"}
    found = subprocess.run([sys.executable, "-c", "from edgekws.firmware import firmware_dir; print(firmware_dir())"],
                           cwd=out, env={**env, "PYTHONPATH": "python"}, capture_output=True, text=True)
    assert found.returncode == 0 and Path(found.stdout.strip()) == (out / "firmware").resolve(), found.stderr
    assert main(["export", str(bundle.path)]) == 2
    assert "nothing to do; pass --onnx, --c [DIR] and/or --target cortex-m4|pi" in capsys.readouterr().err
    # requirements with the floors that run the int8 graph (onnxruntime 1.19-1.23 cannot: ConvInteger);
    # run.sh takes the folder's venv by itself (a new shell, or a moved folder, has none activated)
    reqs = (out / "requirements.txt").read_text().split()
    assert "onnxruntime>=1.24" in reqs and all(">=" in r for r in reqs)
    run_sh = (out / "run.sh").read_text()
    assert '[ -x "$HERE/venv/bin/python3" ] && PY="$HERE/venv/bin/python3"' in run_sh and 'exec "$PY" -m edgekws' in run_sh
    fake_venv = out / "venv" / "bin"
    fake_venv.mkdir(parents=True)
    (fake_venv / "python3").write_text("#!/bin/sh\necho venv-python \"$@\"\n")
    (fake_venv / "python3").chmod(0o755)
    ran = subprocess.run(["sh", str(out / "run.sh"), "--json"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert ran.stdout.startswith("venv-python -m edgekws listen ") and ran.stdout.strip().endswith("--json")
    # exporting again keeps the venv README.txt had the user make there (it was deleted with the folder)
    assert main(["export", str(copy), "--target", "pi", "--out", str(out)]) == 0
    assert (fake_venv / "python3").is_file() and (out / "model" / "manifest.json").is_file()
    # `--out .`: README.txt names the folder, not an empty string
    here = tmp_path / "kws-here"
    here.mkdir()
    monkey_cwd = os.getcwd()
    try:
        os.chdir(here)
        assert main(["export", str(copy), "--target", "pi", "--out", "."]) == 0
    finally:
        os.chdir(monkey_cwd)
    assert "scp -r kws-here pi@" in (here / "README.txt").read_text()


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
    args = ["eval-stream", str(b.path), str(data), "--tune", "--engine", "numpy", "--negative-minutes", "0.5",
            "--hop-every", "3", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    m = r["metrics"]
    assert m["commands"] == 6 and 0 <= m["hit_rate"] <= 1 and m["stream_seconds"] > 30
    assert r["tuning"]["validation"]["false_accepts_per_hour"] <= 1.0
    stored = Bundle.load(b.path).manifest["stream"]
    assert stored["thresholds"] == r["config"]["thresholds"] and stored["tuning"]["target_false_accepts_per_hour"] == 1.0
    assert (stored["hop_every"], stored["refractory"]) == (3, 17)  # 1 s of 60 ms steps
    assert main(args[:-1] + ["--snr", "clean"]) == 0
    assert "hop every 3 frames" in capsys.readouterr().out
    assert main(args + ["--snr", "3"]) == 2
    assert "--snr '3': expected LO,HI in dB" in capsys.readouterr().err
    assert main(args[:-1] + ["--snr", "clean", "--shrink", "0"]) == 0  # one shared threshold
    assert len(set(Bundle.load(b.path).manifest["stream"]["thresholds"].values())) == 1
    assert Bundle.load(b.path).manifest["stream"]["tuning"]["shrink"] == 0.0
    assert main(args + ["--shrink", "1.5"]) == 2
    assert "--shrink: must be a number in [0, 1], got 1.5" in capsys.readouterr().err
    assert main(args + ["--target-fa", "inf"]) == 2
    assert "--target-fa must be a finite number >= 0, got inf" in capsys.readouterr().err
    assert main(args[:-3] + ["--hop-every", "100000"]) == 2
    assert "--hop-every: must be in [1, 1000], got 100000" in capsys.readouterr().err
    # a split that cannot be evaluated is found before the tuning is saved: the stored settings stay
    before = Bundle.load(b.path).manifest["stream"]
    (data / "testing_list.txt").write_text("")
    assert main(args[:-1] + ["--hop-every", "2", "--target-fa", "50"]) == 2
    assert "no command clips in the test split" in capsys.readouterr().err
    assert Bundle.load(b.path).manifest["stream"] == before


def test_eval_stream_on_every_clip_of_ones_own_recordings(tmp_path, capsys):
    """A person's recordings share one speaker id, so they sit in one split: --tune-split all and
    --split all build the streams from every clip; the default says how to get there."""
    b, _ = make_bundle(tmp_path / "m", seed=5)
    quantize_bundle(b, features(64, seed=6), log=lambda *a: None)
    data = _tone_dataset(tmp_path / "data")
    (data / "validation_list.txt").write_text("")                     # nothing in val
    args = ["eval-stream", str(b.path), str(data), "--tune", "--engine", "numpy", "--negative-minutes", "0.5",
            "--snr", "clean", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no command clips in the val split (your own recordings share one speaker id" in err
    assert "use --split all / --tune-split all" in err
    assert main(args + ["--tune-split", "all", "--split", "all"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["metrics"]["commands"] == 12 and r["split"] == "all" and r["tuning"]["split"] == "all"
    assert r["tuning"]["validation"]["commands"] == 12
    assert main(args + ["--tune-split", "test"]) == 0                 # tune on test, report test: 6 clips
    r = json.loads(capsys.readouterr().out)
    assert r["metrics"]["commands"] == 6 and r["tuning"]["validation"]["commands"] == 6


def test_listen_hears_a_command_at_the_very_end_of_a_file(tmp_path, capsys):
    """A 1 s clip that is one command: the stream once ended with the word still in the window and
    the smoothed score never rose; listen --file now hears the file as if silence followed it."""
    pytest.importorskip("pyopenjtalk")
    from edgekws.audio import read_wav
    from edgekws.synth import synthesize_dataset

    out = tmp_path / "ja"
    synthesize_dataset(out, "ja", words="stop", speakers=2, engines="espeak,openjtalk", seed=3, jobs=1,
                       unknown_per_speaker=0, noise_seconds=0.0)
    wav = out / "stop" / "ojt0000_nohash_0.wav"
    from pathlib import Path

    model = str(Path(__file__).resolve().parents[1] / "data" / "fixtures" / "base-ja")
    setup = StreamSetup.from_bundle(Bundle.load(model))
    audio = read_wav(wav, dtype="int16")
    assert audio.size == 16000 and detect_audio(setup, audio, end_silence=0) == []
    assert [d.label for d in detect_audio(setup, audio)] == ["stop"]   # the API hears it as listen does
    live = StreamingDetector(setup)
    assert live.push(audio) == [] and [d.label for d in live.flush()] == ["stop"]
    assert main(["listen", model, "--file", str(wav), "--json"]) == 0
    assert [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()] == ["stop"]

"""edgekws.voicenorm: each voice's average embedding moved onto the training clips' average, in
int8 arithmetic for int8 embeddings and in float for float ones."""

from __future__ import annotations

import numpy as np
import pytest

from edgekws.errors import EdgekwsError
from edgekws.voicenorm import normalize, normalized, offset_of, offsets, reference, voiced


def _emb(rows):
    return np.array(rows, np.int8)


def test_reference_is_the_mean_of_clips_with_a_speaker():
    emb = _emb([[10, 0], [20, 4], [-100, 100]])
    np.testing.assert_array_equal(reference(emb, ["a", "b", ""]), [15.0, 2.0])
    np.testing.assert_array_equal(voiced(["a", "", None]), [True, False, False])


def test_offset_rounds_half_up_in_int32():
    ref = np.array([0.0, 0.0, 0.0, 0.0])
    clips = _emb([[1, -1, 2, 3], [2, -2, 3, 3]])        # means 1.5, -1.5, 2.5, 3
    np.testing.assert_array_equal(offset_of(clips, ref), [2, -1, 3, 3])
    assert offset_of(clips, ref).dtype == np.int32


def test_each_clip_leaves_itself_out():
    """Speaker a: three clips; each one's offset is the mean of the two others less the reference."""
    emb = _emb([[0, 6], [3, 0], [6, 3], [9, 9]])
    spk = np.array(["a", "a", "a", "b"], dtype=object)
    ref = np.array([1.0, 1.0])
    off = offsets(emb, spk, ref, others=10)
    np.testing.assert_array_equal(off[0], np.floor([(3 + 6) / 2 - 1 + 0.5, (0 + 3) / 2 - 1 + 0.5]))
    np.testing.assert_array_equal(off[1], [2, 4])       # mean of clips 0, 2: (3, 4.5) - 1 -> 2, 4 (3.5 up)
    np.testing.assert_array_equal(off[2], [1, 2])       # mean of clips 0, 1: (1.5, 3) - 1 -> 1 (0.5 up), 2
    np.testing.assert_array_equal(off[3], [0, 0])       # b's only clip: nothing heard before it
    np.testing.assert_array_equal(normalize(emb, off), emb.astype(np.int32) - off)


def test_at_most_others_clips_are_drawn_and_the_seed_fixes_them():
    rng = np.random.default_rng(3)
    emb = rng.integers(-100, 100, (12, 5)).astype(np.int8)
    spk = np.array(["a"] * 12, dtype=object)
    ref = np.zeros(5)
    off = offsets(emb, spk, ref, others=1, seed=4)
    for i in range(12):      # each offset is exactly one other clip (no rounding with one clip)
        hits = [j for j in range(12) if j != i and np.array_equal(off[i], emb[j].astype(np.int32))]
        assert hits, i
    np.testing.assert_array_equal(off, offsets(emb, spk, ref, others=1, seed=4))
    assert not np.array_equal(off, offsets(emb, spk, ref, others=1, seed=5))
    full = offsets(emb, spk, ref, others=11)
    np.testing.assert_array_equal(full, offsets(emb, spk, ref, others=100))   # all 11 others either way


def test_silence_takes_a_speakers_offset_and_saturates():
    emb = _emb([[100, -100], [120, -120], [5, -5]])
    spk = np.array(["a", "a", ""], dtype=object)
    off = offsets(emb, spk, np.array([200.0, -200.0]), others=10)
    np.testing.assert_array_equal(off, [[-80, 80], [-100, 100], [-80, 80]])   # silence: a's (first clip's)
    out = normalize(emb, off)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, [[127, -128], [127, -128], [85, -85]])   # 180 / 220 clamp


def test_a_voice_moved_away_is_brought_back():
    """Two words; every other voice moves its clips by +9 or -9 along the line between the words. A
    nearest-mean rule learned from one voice misreads a word of the voices moved the other way; after
    the normalization it reads them all."""
    rng = np.random.default_rng(0)
    words = np.array([[20, 0, 0, 0], [0, 20, 0, 0]], float)
    emb, lab, spk = [], [], []
    for v in range(8):
        shift = (1 if v % 2 == 0 else -1) * np.array([9.0, -9.0, 0, 0])
        for w in range(2):
            for _ in range(3):
                emb.append(words[w] + shift + rng.normal(0, 1, 4))
                lab.append(w)
                spk.append(f"v{v}")
    emb = np.clip(np.round(emb), -128, 127).astype(np.int8)
    lab, spk = np.array(lab), np.array(spk, dtype=object)

    def accuracy(x):
        shots = spk == "v0"
        means = np.stack([x[shots & (lab == w)].astype(float).mean(0) for w in range(2)])
        pred = np.argmin(((x[~shots, None, :].astype(float) - means) ** 2).sum(-1), 1)
        return np.mean(pred == lab[~shots])

    ref = reference(emb, spk)
    np.testing.assert_allclose(ref, [10, 10, 0, 0], atol=0.5)
    assert accuracy(emb) < 0.8
    assert accuracy(normalized(emb, spk, ref, others=5)) == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: reference(np.zeros((2, 3), np.int16), ["a", "b"]), "embeddings must be int8 or float (N, E)"),
    (lambda: reference(np.zeros((2, 3), np.int8), ["a"]), "2 embeddings but 1 speaker ids"),
    (lambda: reference(np.zeros((2, 3), np.int8), ["", ""]), "no clip with a speaker id"),
    (lambda: offsets(np.zeros((2, 3), np.int8), ["a", "a"], np.zeros(3), others=0), "clips per voice must be an integer >= 1, got 0"),
    (lambda: offsets(np.zeros((2, 3), np.int8), ["a", "a"], np.zeros(4)), "reference of shape (4,), embeddings of 3"),
    (lambda: normalize(np.zeros((2, 3), np.int8), np.zeros((2, 4), np.int32)), "embeddings (2, 3) and offsets (2, 4) differ"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(EdgekwsError, match="voice normalization") as e:
        call()
    assert message in str(e.value)


def test_float_embeddings_are_moved_without_rounding():
    emb = np.array([[0.25, 1.0], [0.75, 3.0], [9.0, 9.0]], np.float32)
    spk = np.array(["a", "a", ""], dtype=object)
    ref = reference(emb, spk)
    np.testing.assert_allclose(ref, [0.5, 2.0])
    off = offsets(emb, spk, ref)
    assert off.dtype == np.float32
    np.testing.assert_allclose(off, [[0.25, 1.0], [-0.25, -1.0], [0.25, 1.0]])
    np.testing.assert_allclose(normalize(emb, off), [[0.0, 0.0], [1.0, 4.0], [8.75, 8.0]])


# ---- the firmware's voice normalization (ekws_model_embed / ekws_voice_offset / ekws_model_invoke_voice)

@pytest.mark.parametrize("arch", ["dscnn-s", "whitened"])
def test_c_embedding_offset_and_moved_logits_equal_numpy(arch):
    """The C runtime's embedding is the numpy backbone's, its voice offset offset_of's (float32
    reference), and its logits with the offset the numpy classifier on normalize()'s embedding."""
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel, voice_offset_c
    from edgekws.quant import quantize_model
    from edgekws.quant.qmodel import layer_forward
    from edgekws.retrain.core import Backbone
    from quant_helpers import FC, features, make_model, make_whitened_model

    model = make_whitened_model(seed=2) if arch == "whitened" else make_model(arch, seed=3)
    qm = quantize_model(model, features(32, seed=4), FC.input_scale, FC.input_zero_point)
    c = CModel(model_blob(qm))
    x = features(12, seed=5)
    emb = Backbone.from_quantized(qm).embed(x)
    assert c.embedding_size == emb.shape[1]
    np.testing.assert_array_equal(c.embed_int8(x), emb)
    ref = (emb.astype(np.float64).mean(0) + np.random.default_rng(6).normal(0, 20, emb.shape[1])).astype(np.float32)
    spk = np.array(["a"] * 6 + ["b"] * 6, dtype=object)
    offs = offsets(emb, spk, ref.astype(np.float64), others=3, seed=7)
    for i in (0, 7):   # a voice's offset from some of its clips, as the device computes it
        np.testing.assert_array_equal(voice_offset_c(emb[[j for j in range(12) if spk[j] == spk[i] and j != i][:3]], ref),
                                      offset_of(emb[[j for j in range(12) if spk[j] == spk[i] and j != i][:3]],
                                                ref.astype(np.float64)))
    offs[3] += 300    # saturates every value of one example
    want = layer_forward(qm.layers[-1], normalize(emb, offs))
    np.testing.assert_array_equal(c.logits_voice_int8(x, offs), want)
    np.testing.assert_array_equal(c.logits_voice_int8(x, np.zeros_like(offs)), c.logits_int8(x))


def test_c_voice_offset_rounds_half_up_and_refuses_bad_input():
    from edgekws.export.cruntime import voice_offset_c

    e = np.array([[1, -1, 2, 3, 0], [2, -2, 3, 3, 0]], np.int8)   # means 1.5, -1.5, 2.5, 3, 0
    ref = np.array([0, 0, 0, 0.25, -0.5], np.float32)
    np.testing.assert_array_equal(voice_offset_c(e, ref), [2, -1, 3, 3, 1])
    np.testing.assert_array_equal(voice_offset_c(e, ref), offset_of(e, ref.astype(np.float64)))
    for bad in (np.float32("nan"), np.float32(2e6)):
        with pytest.raises(EdgekwsError, match="ekws_voice_offset failed: argument out of range"):
            voice_offset_c(e, np.array([0, 0, 0, 0, bad], np.float32))
    with pytest.raises(EdgekwsError, match="ekws_voice_offset failed"):
        voice_offset_c(e[:0], ref)


def test_c_voice_invoke_refuses_offsets_of_another_size():
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel
    from edgekws.quant import quantize_model
    from quant_helpers import FC, features, make_model

    qm = quantize_model(make_model("dscnn-s", seed=3), features(8, seed=4), FC.input_scale, FC.input_zero_point)
    c = CModel(model_blob(qm))
    x = features(2, seed=5)
    with pytest.raises(EdgekwsError, match=r"C model: offsets of shape \(2, 3\), expected \(2, "):
        c.logits_voice_int8(x, np.zeros((2, 3), np.int32))


# ---- the product: reference in the bundle, calibrate --method norm, streams in every engine -------

def _key(dets):
    return [(d.frame, d.index, d.score_q15) for d in dets]


def _golden_offset(setup, seed=5):
    from edgekws.voicenorm import embedding_size

    rng = np.random.default_rng(seed)
    return rng.integers(-40, 41, embedding_size(setup.qm)).tolist()


def test_a_stream_with_a_voice_offset_detects_the_same_in_every_engine():
    """numpy (batch and step by step), onnx (the offset in the graph) and the C pipeline
    (ekws_pipeline_set_voice_offset) hear the moved embedding alike; the offset changes what fires."""
    from edgekws.stream.cpipeline import CPipeline
    from edgekws.stream.golden import pipeline_case
    from edgekws.stream.pipeline import StreamingDetector, detect_audio, run_logits
    from edgekws.voicenorm import int8_voice_logits

    setup, audio, plain = pipeline_case(seconds=3.0)
    setup.config.voice_offset = _golden_offset(setup)
    want = _key(detect_audio(setup, audio, "numpy", end_silence=0))
    assert want and want != _key(plain)
    assert _key(detect_audio(setup, audio, "onnx", end_silence=0)) == want
    live = StreamingDetector(setup, "numpy")
    got = []
    for i in range(0, len(audio), 777):
        got += live.push(audio[i:i + 777])
    assert _key(got) == want
    c = CPipeline(setup)
    assert _key(c.push(audio)) == want
    c.reset()
    assert _key(c.push(audio)) == want
    # each step's logits are the model's on its window with the embedding moved
    logits, _ = run_logits(setup, audio, setup.engine("numpy"))
    from edgekws.stream.pipeline import heard_frames, step_windows, stream_features

    windows, _ = step_windows(heard_frames(stream_features(audio, setup.feature_config), 0), setup.window_frames,
                              setup.config.hop_every)
    np.testing.assert_array_equal(logits, int8_voice_logits(setup.qm, np.ascontiguousarray(windows),
                                                            setup.config.voice_offset))
    for engine in ("onnx", "c"):
        np.testing.assert_array_equal(run_logits(setup, audio, setup.engine(engine))[0], logits)


def test_the_voice_offset_setting_is_checked():
    from edgekws.stream.detector import StreamConfig
    from edgekws.stream.golden import pipeline_case

    setup, _, _ = pipeline_case()
    size = len(_golden_offset(setup))
    cfg = StreamConfig.default(setup.labels)
    assert "voice_offset" not in cfg.to_dict()
    cfg.voice_offset = [1] * size
    assert cfg.to_dict()["voice_offset"] == [1] * size
    for bad, message in (("12", "must be a list of whole numbers"), ([0.5] * size, "a list with other values"),
                         ([2 ** 31] * size, "a list with other values"), ([], "a list with other values")):
        cfg.voice_offset = bad
        with pytest.raises(EdgekwsError, match=f"'stream' setting voice_offset {message}" if message.startswith("must")
                           else "voice_offset must be a list of whole numbers .* got " + message):
            cfg.check()
    cfg.voice_offset, cfg.voice_shift = [0] * size, 2
    with pytest.raises(EdgekwsError, match="voice_shift and voice_offset: a voice is calibrated one way or the other"):
        cfg.check()
    setup.config.voice_offset = [0] * (size + 1)
    with pytest.raises(EdgekwsError, match=f"voice_offset .*: {size + 1} values for the model's embedding of {size}"):
        setup.check()


def test_quantize_and_retrain_store_the_reference_and_adapt_does_not(tmp_path):
    from edgekws.adapt import adapt
    from edgekws.bundle import Bundle
    from edgekws.quant import quantize_bundle
    from edgekws.retrain import Backbone, retrain
    from edgekws.retrain.core import dataset_speakers
    from edgekws.voicenorm import stored_reference
    from quant_helpers import make_bundle
    from retrain_helpers import tone_dataset

    data = tone_dataset(tmp_path / "data", words=("w0", "w1", "w2"), speakers=4, takes=1)
    b, _ = make_bundle(tmp_path / "m")
    quantize_bundle(b, data, log=lambda *a: None)
    b = Bundle.load(b.path)
    ref = stored_reference(b)
    feats, labels, names, spk = dataset_speakers(data, ["w0", "w1", "w2"], "train")
    emb = Backbone.from_bundle(b).embed(feats)
    rec = b.manifest["quantization"]["voice_reference"]
    voiced_clips = np.array([lab != names.index("_silence_") for lab in labels])
    assert rec["clips"] == int(voiced_clips.sum()) < len(labels)           # `_silence_` cuts have no voice
    np.testing.assert_allclose(ref, emb[voiced_clips].mean(0), atol=5e-5)   # rounded to 4 decimals
    head = retrain(b, data, tmp_path / "head", shots=2, epochs=1, log=None)
    hrec = head.manifest["quantization"]["voice_reference"]
    assert hrec["source"] == "the retraining examples" and 0 < hrec["clips"] <= 2 * 4
    new = adapt(b, data, tmp_path / "adapted", log=lambda *a: None)
    assert stored_reference(new) is None
    b.update(quantization={**b.manifest["quantization"], "voice_reference": {"values": ["x"]}})
    from edgekws.errors import BundleError

    with pytest.raises(BundleError, match="voice_reference must hold 'values', a list of numbers"):
        stored_reference(Bundle.load(b.path))


def test_calibrate_norm_measures_saves_and_refuses(tmp_path, capsys):
    import json

    from edgekws.adapt import clip_paths
    from edgekws.bundle import Bundle
    from edgekws.cli import main
    from edgekws.export.cruntime import voice_offset_c
    from edgekws.featcache import load_clips
    from edgekws.features import FeatureConfig, compute_features
    from edgekws.quant import quantize_bundle
    from edgekws.retrain import Backbone
    from edgekws.stream.detector import StreamConfig
    from edgekws.voicenorm import stored_reference
    from quant_helpers import make_bundle
    from retrain_helpers import tone_dataset

    data = tone_dataset(tmp_path / "data", words=("w0", "w1", "w2"), speakers=4, takes=1)
    voice = tone_dataset(tmp_path / "voice", words=("w0", "w1", "w2"), speakers=1, takes=3, seed=7)
    b, _ = make_bundle(tmp_path / "m")
    quantize_bundle(b, data, log=lambda *a: None)
    m = str(b.path)
    assert main(["calibrate", m, str(voice), "--method", "norm", "--json"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    paths = clip_paths(voice)
    fc = FeatureConfig.from_dict(Bundle.load(m).manifest["feature_config"])
    emb = Backbone.from_bundle(Bundle.load(m)).embed(compute_features(load_clips(paths, fc.sample_rate, fc.sample_rate), fc))
    ref = stored_reference(Bundle.load(m))
    want = np.floor(emb.astype(np.float64).mean(0) - ref + 0.5).astype(np.int32)
    assert result["offset"] == want.tolist() and result["n_clips"] == len(paths) == 12 and not result["saved"]
    assert result["method"] == "norm" and result["reference"] == "the bundle's"
    np.testing.assert_array_equal(voice_offset_c(emb, ref), want)
    assert "note: 12 recordings" not in out.err and "--save stores it" in out.err
    assert main(["calibrate", m, str(voice), "--method", "norm", "--engine", "c", "--save"]) == 0
    assert "stored in the bundle's stream settings (voice_offset)" in capsys.readouterr().out
    assert StreamConfig.from_bundle(Bundle.load(m)).voice_offset == want.tolist()
    # --voice-ref DATA: the reference from DATA's train split (the stored one came from the same clips)
    assert main(["calibrate", m, str(voice), "--method", "norm", "--voice-ref", str(data), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reference"] == f"the train split of {data}"
    assert np.abs(np.array(again["offset"]) - want).max() <= 1
    # a band shift replaces the offset, and the offset a shift
    assert main(["calibrate", m, str(voice), "--save"]) == 0
    assert "the voice_offset of --method norm is replaced" in capsys.readouterr().out
    cfg = StreamConfig.from_bundle(Bundle.load(m))
    assert cfg.voice_offset is None
    # re-quantizing drops the offset (it was in the old embedding's units)
    assert main(["calibrate", m, str(voice), "--method", "norm", "--save"]) == 0
    capsys.readouterr()
    lines = []
    quantize_bundle(Bundle.load(m), data, log=lines.append)
    assert "its voice_offset is removed" in lines[-1] and StreamConfig.from_bundle(Bundle.load(m)).voice_offset is None
    # refusals
    for args, message in (
            (["--method", "norm", "--max-shift", "2"], "--max-shift is for --method shift"),
            (["--voice-ref", str(data)], "--voice-ref is for --method norm"),
            (["--method", "norm", "--engine", "float"], "--method norm runs on the int8 model"),
            (["--method", "norm", "--voice-ref", str(tmp_path / "nope")], "not a dataset folder")):
        assert main(["calibrate", m, str(voice), *args]) == 2
        assert message in capsys.readouterr().err
    old = Bundle.load(m)
    old.update(quantization={k: v for k, v in old.manifest["quantization"].items() if k != "voice_reference"})
    assert main(["calibrate", m, str(voice), "--method", "norm"]) == 2
    assert "has no voice reference (quantized before edgekws stored one): quantize it again, or pass the " \
           "training dataset with --voice-ref DATA" in capsys.readouterr().err
    f, _ = make_bundle(tmp_path / "f")
    assert main(["calibrate", str(f.path), str(voice), "--method", "norm"]) == 2
    assert "not quantized; voice normalization moves the int8 embedding" in capsys.readouterr().err


def test_the_exported_example_sets_the_bundles_voice_offset():
    from edgekws.export.targets import example_data_sources
    from edgekws.firmware import firmware_dir
    from edgekws.stream.golden import pipeline_case

    setup, audio, _ = pipeline_case()
    files = example_data_sources(setup, audio)
    assert "#define EKWS_EXAMPLE_VOICE_OFFSET_LEN 0u" in files["ekws_example_data.h"]
    setup.config.voice_offset = _golden_offset(setup)
    files = example_data_sources(setup, audio)
    n = len(setup.config.voice_offset)
    assert f"#define EKWS_EXAMPLE_VOICE_OFFSET_LEN {n}u" in files["ekws_example_data.h"]
    assert f"const int32_t ekws_example_voice_offset[{n}] = {{\n    {', '.join(map(str, setup.config.voice_offset[:16]))}," \
        in files["ekws_example_data.c"]
    main_c = (firmware_dir() / "examples" / "cortex-m" / "main.c").read_text()
    assert "ekws_pipeline_set_voice_offset(&pipe, EKWS_EXAMPLE_VOICE_OFFSET_LEN ? ekws_example_voice_offset : NULL" in main_c


def test_extreme_offsets_saturate_alike_in_every_engine():
    """Offsets near the int32 limits: embedding - offset is taken in 64 bits everywhere (numpy, the C
    runtime, the ONNX graph), so each value saturates instead of wrapping."""
    from edgekws.stream.engines import make_engine
    from edgekws.stream.golden import pipeline_case
    from edgekws.voicenorm import embedding_size
    from quant_helpers import features

    setup, _, _ = pipeline_case()
    size = embedding_size(setup.qm)
    big = 2 ** 31 - 1
    offset = np.array([big, -big, 0, 5] * (size // 4) + [0] * (size % 4), np.int64)
    x = features(4, 8)
    want = make_engine("numpy", setup.qm, None, offset).logits(x)
    for name in ("c", "onnx"):
        np.testing.assert_array_equal(make_engine(name, setup.qm, None, offset).logits(x), want)
    emb_moved = normalize(np.array([[127, -128, 3, 4]], np.int8), np.array([[-big, big, 0, 5]], np.int64))
    np.testing.assert_array_equal(emb_moved, [[127, -128, 3, -1]])

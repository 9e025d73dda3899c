"""eval / predict / load_model: metrics by hand, the exact JSON format, the CLI, engine slots,
and refusal of corrupt bundles."""

import json
import shutil

import numpy as np
import pytest

from edgekws import evaluate as ev
from edgekws.audio import read_wav
from edgekws.bundle import Bundle
from edgekws.cli import main
from edgekws.errors import BundleError, EdgekwsError
from edgekws.train import NO_AUGMENT, train
from test_train import TINY, make_tiny_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    data = make_tiny_dataset(root / "data")
    # a model that surely learned the tones (eval is the subject): 0.875-0.94 on the test clips for seeds
    # 3-6 without augmentation, where the speech augmentations leave seven epochs 0.31-1.0 by seed
    bundle = train(data, root / "model", **{**TINY, **NO_AUGMENT})
    return data, bundle


def test_metrics_by_hand():
    m = ev.metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5) and m["n"] == 5 and m["labels"] == ["a", "b", "c"]
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "n": 2}
    assert m["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "n": 2}
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "n": 1}
    assert "confusion" in ev.format_metrics(m)


def test_eval_cli_json_has_exactly_the_documented_keys(trained, tmp_path, capsys):
    data, bundle = trained
    out = tmp_path / "m.json"
    assert main(["eval", str(bundle.path), str(data), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert {"accuracy", "n", "labels", "per_class", "confusion"} <= set(m)
    assert set(m) - {"accuracy", "n", "labels", "per_class", "confusion"} <= {"int8"}
    assert m["labels"] == ["_silence_", "_unknown_", "yes", "no"]
    assert isinstance(m["accuracy"], float) and isinstance(m["n"], int) and m["n"] == 4 * 4
    assert all(set(v) == {"precision", "recall", "n"} for v in m["per_class"].values())
    assert np.array(m["confusion"]).sum() == m["n"]
    assert m["accuracy"] >= 0.75  # a 7-epoch model on 4 classes: well above chance (0.25)
    assert "accuracy" in capsys.readouterr().out
    # a rerun refreshes the earlier result; a file that is not one is left alone
    assert main(["eval", str(bundle.path), str(data), "--json", str(out)]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("important")
    assert main(["eval", str(bundle.path), str(data), "--json", str(notes)]) == 2
    assert (f"--json {notes}: exists and is not an earlier result of this command; choose another file or "
            "remove it") in capsys.readouterr().err
    assert notes.read_text() == "important"
    # `--json -`: stdout is the JSON alone (the tables go to stderr), so it pipes into a JSON reader
    assert main(["eval", str(bundle.path), str(data), "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == m and "accuracy" in captured.err
    stored = Bundle.load(bundle.path).read_json("metrics.json")  # eval records into the bundle
    assert stored["float"] == {k: v for k, v in m.items() if k != "int8"} and stored["split"] == "test"


def test_eval_of_a_read_only_bundle_still_reports(trained, tmp_path, capsys, monkeypatch):
    from edgekws.fileio import OutputError

    data, bundle = trained

    def refuse(self, name, obj):
        raise OutputError(f"{self.path / name}: cannot write (Read-only file system)")

    monkeypatch.setattr(Bundle, "write_json", refuse)
    out = tmp_path / "m.json"
    assert main(["eval", str(bundle.path), str(data), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "accuracy" in captured.out and json.loads(out.read_text())["n"] == 16
    assert captured.err == (f"edgekws eval: note: metrics not kept in the bundle: {bundle.path / 'metrics.json'}: "
                            "cannot write (Read-only file system)\n")
    assert main(["eval", str(bundle.path), str(data), "--json", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a folder; give a file name" in capsys.readouterr().err


def test_a_closed_pipe_keeps_the_json_file(trained, tmp_path, monkeypatch):
    """`edgekws eval M D --json F | head -1`: the reader closing stdout ended eval with status 0 before
    F was written (and without the bundle's metrics.json); the files now come before the tables."""
    import sys

    from test_cli_args import ClosedPipe

    data, bundle = trained

    (bundle.path / "metrics.json").unlink()
    out = tmp_path / "m.json"
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["eval", str(bundle.path), str(data), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["n"] == 16 and np.array(m["confusion"]).sum() == 16
    assert json.loads((bundle.path / "metrics.json").read_text())["float"]["accuracy"] == m["accuracy"]


def test_eval_json_is_never_written_into_the_data_and_engines_add_up(trained, tmp_path, capsys, monkeypatch):
    data, bundle = trained
    wav = sorted((data / "yes").glob("*.wav"))[0]
    before = wav.read_bytes()
    assert main(["eval", str(bundle.path), str(data), "--json", str(wav)]) == 2
    assert "never overwrites a recording" in capsys.readouterr().err and wav.read_bytes() == before
    assert main(["eval", str(bundle.path), str(data), "--json", str(data / "m.json")]) == 2
    assert f"is inside the input folder DATA {data}" in capsys.readouterr().err
    assert not (data / "m.json").exists()
    # a second eval with another engine keeps the first one's results for the same split and data
    monkeypatch.setitem(ev.ENGINES, "twin", ev.ENGINES["float"])
    assert main(["eval", str(bundle.path), str(data), "--engine", "float"]) == 0
    assert main(["eval", str(bundle.path), str(data), "--engine", "twin"]) == 0
    stored = Bundle.load(bundle.path).read_json("metrics.json")
    assert stored["twin"] == stored["float"] and stored["split"] == "test"
    assert main(["eval", str(bundle.path), str(data), "--engine", "twin", "--split", "val"]) == 0
    stored = Bundle.load(bundle.path).read_json("metrics.json")   # another split: a fresh record
    assert stored["split"] == "val" and "float" not in stored
    # the same relative name from another folder is other data: a fresh record, with the full path
    for sub in ("a", "b"):
        shutil.copytree(data, tmp_path / sub / "data")
    monkeypatch.chdir(tmp_path / "a")
    assert main(["eval", str(bundle.path), "data", "--engine", "float"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    assert main(["eval", str(bundle.path), "data", "--engine", "twin"]) == 0
    stored = Bundle.load(bundle.path).read_json("metrics.json")
    assert stored["dataset"] == str(tmp_path / "b" / "data") and "float" not in stored
    capsys.readouterr()


def test_predict_cli_prints_label_and_confidence(trained, capsys, tmp_path):
    data, bundle = trained
    wavs = sorted((data / "yes").glob("spk1*.wav")) + sorted((data / "no").glob("spk1*.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    assert main(["predict", str(bundle.path), *map(str, wavs)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(wavs)
    got = [line.split("\t") for line in lines]
    assert all(0.0 <= float(c) <= 1.0 for _, _, c in got)
    km = ev.load_model(bundle.path)  # the CLI says what the Python API says
    for (name, lab, conf), w in zip(got, wavs):
        (want, p), = km.classify(read_wav(w, dtype="int16"))
        assert name == str(w) and lab == want and float(conf) == pytest.approx(p, abs=6e-4)
    assert sum(lab == w.parent.name for (_, lab, _), w in zip(got, wavs)) >= 0.5 * len(wavs)
    assert main(["predict", str(bundle.path), str(bad), str(wavs[0]), "--top", "2"]) == 2
    out = capsys.readouterr()  # the bad file's error on stderr, the good file's line in the table
    assert len(out.out.splitlines()) == 1 and out.out.startswith(f"{wavs[0]}\t{got[0][1]}\t{got[0][2]}\t")
    assert out.err.startswith(f"edgekws predict: error: {bad}")


def test_load_model_predicts_int16_and_float_audio(trained):
    data, bundle = trained
    km = ev.load_model(bundle.path)
    x = read_wav(next((data / "no").glob("spk10*.wav")), dtype="int16")
    p = km.predict(x)
    assert p.shape == (1, 4) and np.isclose(p.sum(), 1.0)
    np.testing.assert_allclose(km.predict(x.astype(np.float32) / 32768.0), p, atol=1e-6)
    two = km.predict(np.stack([x, x]))
    assert two.shape == (2, 4) and np.allclose(two[0], two[1])
    assert km.classify(x)[0][0] in km.labels
    long = np.concatenate([np.zeros(8000, np.int16), x, np.zeros(8000, np.int16)])  # centre-cropped
    assert km.predict(long).shape == (1, 4)
    emb = km.engine.embed_features(km.features(x))
    assert emb.shape == (1, 24)
    with pytest.raises(EdgekwsError, match="unknown engine"):
        ev.load_model(bundle.path, engine="nope")


@pytest.mark.parametrize("audio, message", [
    (lambda x: np.stack([x, x], 1), r"audio of shape \(16000, 2\) looks like \(samples, channels\); pass mono"),
    (lambda x: x.astype(np.float64), r"float audio must be in \[-1, 1\], got samples up to \d+ \(int16 values\?"),
    (lambda x: np.full(16000, np.nan), "float audio holds NaN or infinite samples"),
    (lambda x: np.zeros(0, np.int16), r"audio is empty \(shape \(1, 0\)\)"),
])
def test_audio_that_would_give_a_silent_wrong_answer_is_refused(trained, audio, message):
    """Each of these once returned a confident label: stereo as 16000 two-sample clips, int16
    values in a float array clipped to full scale, NaN as silence, nothing as silence."""
    data, bundle = trained
    km = ev.load_model(bundle.path)
    x = read_wav(next((data / "no").glob("spk10*.wav")), dtype="int16")
    with pytest.raises(EdgekwsError, match=message):
        km.predict(audio(x))
    km.predict(x.astype(np.float32) / 32768.0 * 1.5)  # a little over full scale still classifies


def test_a_registered_engine_gets_its_own_eval_column(trained, monkeypatch):
    data, bundle = trained

    class Fake:  # an engine as the quantization module provides it
        def __init__(self, b):
            self.inner = ev.FloatNetwork(b)

        @staticmethod
        def available(b):
            return True

        def logits_features(self, feats):
            return self.inner.logits_features(feats)

    monkeypatch.setitem(ev.ENGINES, "fake", Fake)
    result = ev.evaluate(bundle, data, split="val")
    assert result["fake"] == result["float"] and result["split"] == "val"


def test_corrupt_or_foreign_bundles_are_refused(trained, tmp_path):
    import shutil

    _, bundle = trained
    copy = tmp_path / "copy"
    shutil.copytree(bundle.path, copy)
    w = copy / "weights.npz"
    raw = w.read_bytes()
    w.write_bytes(raw[:-10])
    with pytest.raises(BundleError, match="corrupt or truncated"):
        ev.load_model(copy)
    assert main(["predict", str(copy), "x.wav"]) == 2
    w.write_bytes(raw)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version"):
        ev.load_model(copy)


def test_eval_refuses_a_dataset_with_other_words(trained, tmp_path):
    data, bundle = trained
    with pytest.raises(EdgekwsError):
        ev.evaluate(bundle, data / "yes")


def test_the_python_api_takes_folder_paths_and_refuses_features_of_another_dtype():
    """KeywordModel("folder") raised AttributeError; the float engine took uint8 features (q + 128) as
    int8 codes and changed answers, where the int8 engines refuse them; detect_audio and
    StreamingDetector wanted a StreamSetup only; Detector(smooth=0) raised IndexError."""
    from pathlib import Path

    from edgekws.stream.detector import Detector, exp_lut
    from edgekws.stream.pipeline import StreamingDetector, detect_audio

    fixture = str(Path(__file__).resolve().parents[1] / "data" / "fixtures" / "base-ja")
    model = ev.KeywordModel(fixture, "float")
    feats = np.random.default_rng(0).integers(-128, 128, (2, 49, 40)).astype(np.int8)
    want = ev.KeywordModel(Bundle.load(fixture), "float").predict_features(feats)
    np.testing.assert_array_equal(model.predict_features(feats), want)
    for bad in (feats.astype(np.uint8), feats.astype(np.float32)):
        with pytest.raises(EdgekwsError, match="float model: features must be int8"):
            model.predict_features(bad)
    from edgekws.stream.pipeline import StreamSetup

    audio = (np.sin(np.arange(16000) / 3) * 8000).astype(np.int16)
    assert detect_audio(fixture, audio) == detect_audio(StreamSetup.from_bundle(fixture), audio)
    assert StreamingDetector(fixture).setup.labels == Bundle.load(fixture).labels
    with pytest.raises(EdgekwsError, match="stream: a StreamSetup or a model bundle folder, got int"):
        detect_audio(5, audio)
    for kw, message in (({"smooth": 0}, "smooth must be an integer in \\[1, 16\\]"),
                        ({"smooth": 1.7}, "smooth must be"), ({"refractory": -5}, "refractory must be")):
        args = {"smooth": 2, "refractory": 0, **kw}
        with pytest.raises(EdgekwsError, match=message):
            Detector(exp_lut(0.1), np.array([1, 2]), **args)


# ---- voice normalization (edgekws/voicenorm.py) ----------------------------------------------

def _quantized_copy(bundle, tmp_path):
    from edgekws.quant import quantize_bundle
    from quant_helpers import features

    shutil.copytree(bundle.path, tmp_path / "q")
    b = Bundle.load(tmp_path / "q")
    quantize_bundle(b, features(32, 1), log=lambda *a: None)
    return b


def test_the_split_network_is_the_whole_network(trained, tmp_path):
    """Embedding then classifier gives the engine's own logits: float to rounding, int8 exactly."""
    from edgekws.quant import Int8Network
    from edgekws.voicenorm import SplitNetwork
    from quant_helpers import features

    _, bundle = trained
    x = features(6, 2)
    net = ev.FloatNetwork(bundle)
    split = SplitNetwork(net, "float")
    np.testing.assert_allclose(split.classify(split.embed(x)), net.logits_features(x), rtol=1e-5, atol=1e-5)
    qnet = Int8Network(_quantized_copy(bundle, tmp_path))
    qsplit = SplitNetwork(qnet, "int8")
    emb = qsplit.embed(x)
    assert emb.dtype == np.int8
    np.testing.assert_array_equal(qsplit.classify(emb), qnet.logits_features(x))
    with pytest.raises(EdgekwsError, match="voice normalization: engine 'c' is not supported"):
        SplitNetwork(object(), "c")


def test_eval_voice_norm_moves_each_speaker_by_its_offset(trained, tmp_path, capsys):
    """The float column is the classifier on each clip's embedding less its speaker's offset (the
    other clips' mean less the train split's mean); the JSON names the setting; metrics.json keeps
    the plain figures."""
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays
    from edgekws.features import FeatureConfig
    from edgekws.voicenorm import SplitNetwork, normalized, reference

    data, bundle = trained
    b = _quantized_copy(bundle, tmp_path)
    result = ev.evaluate(b, data, split="test", voice_norm=2, voice_ref=data)
    assert result["voice_norm"] == 2 and result["voice_ref"] == str(data) and {"float", "int8"} <= set(result)
    ds = load_dataset(data, b.labels[2:])
    cache = FeatureCache(default_cache_dir(data), FeatureConfig.from_dict(b.manifest["feature_config"]))
    arrays = {s: split_arrays(ds, s, cache, seed=0) for s in ("train", "test")}
    spk = {s: np.array([c.speaker if c.path else "" for c in a.clips], dtype=object) for s, a in arrays.items()}
    for name, engine in (("float", ev.FloatNetwork(b)), ("int8", ev.ENGINES["int8"](b))):
        net = SplitNetwork(engine, name)
        ref = reference(net.embed(arrays["train"].features), spk["train"])
        emb = normalized(net.embed(arrays["test"].features), spk["test"], ref, others=2, seed=0)
        assert result[name] == ev.metrics(arrays["test"].labels, net.classify(emb).argmax(1), b.labels)
        if name == "int8":   # without --voice-ref: the stored reference
            from edgekws.voicenorm import stored_reference

            emb = normalized(net.embed(arrays["test"].features), spk["test"], stored_reference(b), others=2, seed=0)
            got = ev.evaluate(b, data, split="test", engines=["int8"], voice_norm=2)
            assert got["int8"] == ev.metrics(arrays["test"].labels, net.classify(emb).argmax(1), b.labels)
    out = tmp_path / "vn.json"
    before = b.read_json("metrics.json") if b.has("metrics.json") else None
    assert main(["eval", str(b.path), str(data), "--voice-norm", "2", "--json", str(out)]) == 0   # ref: the bundle's data
    m = json.loads(out.read_text())
    assert m["voice_norm"] == 2 and m["accuracy"] == result["float"]["accuracy"]
    assert "voice norm 2" in capsys.readouterr().out
    assert (b.read_json("metrics.json") if b.has("metrics.json") else None) == before


@pytest.mark.parametrize("extra, message", [
    (["--voice-ref", "DATA"], "--voice-ref: only with --voice-norm N"),
    (["--voice-norm", "3", "--voice-search", "1"], "voice normalization (--voice-norm) does not combine with"),
    (["--voice-norm", "3", "--voice-ref", "MISSING"], "--voice-ref MISSING: not a dataset folder"),
])
def test_eval_voice_norm_refuses_what_it_cannot_do(trained, tmp_path, capsys, extra, message):
    data, bundle = trained
    extra = [str(data) if e == "DATA" else str(tmp_path / "missing") if e == "MISSING" else e for e in extra]
    message = message.replace("MISSING", str(tmp_path / "missing"))
    assert main(["eval", str(bundle.path), str(data), *extra]) == 2
    assert message in capsys.readouterr().err


def test_eval_voice_norm_needs_the_training_data(trained, tmp_path):
    """A bundle whose training data is gone (moved to another machine) asks for --voice-ref."""
    data, bundle = trained
    shutil.copytree(bundle.path, tmp_path / "m")
    b = Bundle.load(tmp_path / "m")
    b.manifest["training"]["dataset"] = str(tmp_path / "gone")
    with pytest.raises(EdgekwsError) as e:
        ev.evaluate(b, data, split="val", voice_norm=2)
    assert str(e.value) == (f"voice normalization: the training voices' average needs the model's training "
                            f"dataset, not found: {tmp_path / 'gone'}; pass it with --voice-ref DATA")
    assert ev.evaluate(b, data, split="val", voice_norm=2, voice_ref=data)["voice_ref"] == str(data)
    # the int8 engine alone takes the reference the bundle stores (as calibrate --method norm does)
    q = _quantized_copy(b, tmp_path / "q")
    q.manifest["training"]["dataset"] = str(tmp_path / "gone")
    result = ev.evaluate(q, data, split="val", engines=["int8"], voice_norm=2)
    assert result["voice_ref"] == "the bundle's voice_reference (int8)" and "int8" in result
    with pytest.raises(EdgekwsError, match="needs the model's training dataset"):
        ev.evaluate(q, data, split="val", voice_norm=2)                         # float too: it needs the data


def test_eval_voice_norm_leaves_out_engines_it_does_not_run_on_unless_asked(trained, monkeypatch):
    data, bundle = trained

    class Fake:   # an engine the bundle has (as int8-f32head for a retrained head in float32)
        def __init__(self, b):
            pass

        @staticmethod
        def available(b):
            return True

    monkeypatch.setitem(ev.ENGINES, "fake", Fake)
    result = ev.evaluate(bundle, data, split="val", voice_norm=2)
    assert "float" in result and "fake" not in result
    with pytest.raises(EdgekwsError, match="voice normalization: engine 'fake' is not supported"):
        ev.evaluate(bundle, data, split="val", engines="float,fake", voice_norm=2)

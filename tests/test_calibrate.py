"""Voice calibration (`edgekws calibrate`, edgekws.evaluate.calibrate_shift / VoiceShift,
ekws_model_calibrate_shift, ekws_pipeline_set_voice_shift): the shift chosen by hand, the int8 choice
equal to the firmware's, shifted clips and streams equal in every engine, the stream setting stored
and checked, and the command's errors."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgekws import evaluate as ev  # noqa: E402
from edgekws.bundle import Bundle  # noqa: E402
from edgekws.cli import main  # noqa: E402
from edgekws.errors import BundleError, EdgekwsError  # noqa: E402
from edgekws.stream.detector import StreamConfig  # noqa: E402
from quant_helpers import features  # noqa: E402
from retrain_helpers import quantized_bundle, tone_dataset  # noqa: E402


class BandDetector:
    """A float engine sure of "yes" when band 2 is the loudest of the clip's first frame, unsure otherwise."""

    def logits_features(self, x):
        z = np.zeros((len(x), 4))
        z[:, 2] = np.where(x[:, 0].astype(np.int64).argmax(1) == 2, 5.0, 0.5)
        return z


def test_calibration_chooses_the_shift_where_the_model_is_surest():
    x = np.full((6, 3, 10), -100, np.int8)
    x[:4, 0, 5] = 100          # four clips loudest at band 5: heard at band 2 when moved by +3
    x[4:, 0, 1] = 100          # two loudest at band 1: at band 2 when moved by -1
    shift, scores = ev.calibrate_shift(BandDetector(), x, 4)
    assert shift == 3 and list(scores) == ev.search_order(4)
    sure, unsure = 1 / (1 + 3 * np.exp(-5.0)), np.exp(0.5) / (np.exp(0.5) + 3)
    assert scores[3] == pytest.approx((4 * sure + 2 * unsure) / 6)
    assert scores[-1] == pytest.approx((2 * sure + 4 * unsure) / 6)
    assert scores[0] == pytest.approx(unsure)
    assert ev.calibrate_shift(BandDetector(), x, 2)[0] == -1      # +3 out of reach
    assert ev.calibrate_shift(BandDetector(), x[:1, :, :4], 0) == (0, {0: pytest.approx(unsure)})
    flat = np.zeros((2, 3, 10), np.int8)                          # every shift the same: the first, 0
    assert ev.calibrate_shift(BandDetector(), flat, 3)[0] == 0


@pytest.mark.parametrize("bad, message", [
    (dict(features=np.zeros((0, 3, 10), np.int8)), "voice calibration: no clips"),
    (dict(max_shift=ev.MAX_VOICE_SEARCH + 1), r"--max-shift\): must be a whole number of bands in \[0, 8\], got 9"),
    (dict(max_shift=-1), r"--max-shift\): must be a whole number of bands in \[0, 8\], got -1"),
    (dict(max_shift=True), r"got True"),
    (dict(max_shift=5, features=np.zeros((1, 3, 5), np.int8)), "±5 bands is as wide as the 5 bands"),
    (dict(features=np.zeros((3, 10), np.int8)), r"features must be \(N, T, F\), got shape \(3, 10\)"),
])
def test_calibration_refuses_bad_arguments(bad, message):
    args = {"features": np.zeros((2, 3, 10), np.int8), "max_shift": 2, **bad}
    with pytest.raises(EdgekwsError, match=message):
        ev.calibrate_shift(BandDetector(), args["features"], args["max_shift"])


@pytest.fixture(scope="module")
def qbundle(tmp_path_factory):
    return quantized_bundle(tmp_path_factory.mktemp("cal") / "m", n_classes=5, seed=2)


def voice_like_windows(n, seed):
    """Random windows whose upper or lower bands are quiet: the models below then prefer shifts."""
    x = features(n, seed)
    x[: n // 2, :, 24:] = -128
    x[n // 2:, :, :10] = -128
    return x


def test_int8_calibration_is_the_firmwares_choice_bit_for_bit(qbundle):
    from edgekws.quant import CNetwork, Int8Network

    numpy_engine, c_engine = Int8Network(qbundle), CNetwork(qbundle)
    moved = 0
    for seed in range(4):
        x = voice_like_windows(6 + seed, seed)
        for k in (0, 1, 3, 6):
            for part in (x, x[:3], x[3:]):
                shift, scores = ev.calibrate_shift(numpy_engine, part, k)
                assert c_engine.calibrate_shift(part, k) == (shift, scores[shift]), (seed, k)
                assert ev.calibrate_shift(c_engine, part, k) == (shift, scores)   # through C logits too
                moved += shift != 0
    assert moved >= 3, "the calibrations never moved: the test would not see a wrong shift"
    with pytest.raises(EdgekwsError, match="features must be int8"):
        c_engine.cmodel.calibrate_shift(np.zeros((1, 49, 40), np.int16), 1)


def test_a_voice_shift_hears_every_clip_moved_in_every_engine(qbundle):
    x = voice_like_windows(5, 9)
    for engine in ("float", "int8", "c"):
        plain = ev.KeywordModel(qbundle, engine).engine
        for s in (-3, 2):
            km = ev.KeywordModel(qbundle, engine, voice_shift=s)
            assert np.array_equal(km.engine.logits_features(x), plain.logits_features(ev.shift_bands(x, s)))
    # with a search too: the voice first, then the search around it (the C engine's own search)
    for engine in ("int8", "c"):
        searched = ev.KeywordModel(qbundle, engine, voice_search=1, voice_shift=2).engine.logits_features(x)
        want = ev.VoiceSearch(ev.KeywordModel(qbundle, engine).engine, 1).logits_features(ev.shift_bands(x, 2))
        assert np.array_equal(searched, want)
    with pytest.raises(EdgekwsError, match=r"voice shift \(--voice-shift\): must be a whole number of bands in "
                                           r"\[-8, 8\], got 9"):
        ev.KeywordModel(qbundle, "int8", voice_shift=9)


def test_a_stream_with_a_voice_shift_detects_the_same_in_every_engine():
    from edgekws.stream.cpipeline import CPipeline
    from edgekws.stream.golden import pipeline_case
    from edgekws.stream.pipeline import StreamingDetector, detect_audio

    setup, audio, plain = pipeline_case(seconds=3.0)
    key = lambda dets: [(d.frame, d.index, d.score_q15) for d in dets]  # noqa: E731
    setup.config.voice_shift = 3
    want = key(detect_audio(setup, audio, "numpy", end_silence=0))
    assert want and want != key(plain)             # the shift changes what is heard
    assert key(detect_audio(setup, audio, "onnx", end_silence=0)) == want
    step = StreamingDetector(setup, "numpy")
    got = []
    for i in range(0, len(audio), 555):
        got += step.push(audio[i:i + 555])
    assert key(got) == want
    c = CPipeline(setup)
    assert key(c.push(audio)) == want
    c.reset()                                          # reset keeps the setting
    assert key(c.push(audio)) == want
    setup.config.voice_shift = 40
    with pytest.raises(EdgekwsError, match=r"setting voice_shift must be a whole number of bands in \[-8, 8\], got 40"):
        detect_audio(setup, audio, "numpy")
    setup.config.voice_shift = 8
    setup.feature_config = dataclasses.replace(setup.feature_config, num_bands=8)   # a frontend of 8 bands
    with pytest.raises(EdgekwsError, match="voice_shift 8 .*must be smaller than the 8 bands of a frame"):
        setup.check()


def test_the_stream_setting_is_stored_only_when_set_and_checked_on_load(qbundle, tmp_path):
    cfg = StreamConfig.default(qbundle.labels)
    assert "voice_shift" not in cfg.to_dict()        # bundles without calibration stay as they were
    cfg.voice_shift = -2
    assert cfg.to_dict()["voice_shift"] == -2
    b = quantized_bundle(tmp_path / "b", n_classes=5, seed=2)
    b.update(stream=cfg.to_dict())
    assert StreamConfig.from_bundle(Bundle.load(b.path)).voice_shift == -2
    for bad, message in ((0.5, "have a value of the wrong type"),
                         (9, r"voice_shift must be a whole number of bands in \[-8, 8\], got 9")):
        b.update(stream={**cfg.to_dict(), "voice_shift": bad})
        with pytest.raises(BundleError, match=message):
            StreamConfig.from_bundle(Bundle.load(b.path))


def test_the_calibrate_command_measures_saves_and_refuses(qbundle, tmp_path, capsys):
    voice = tone_dataset(tmp_path / "voice", speakers=2, takes=1)      # 8 word clips + a noise file (skipped)
    b = quantized_bundle(tmp_path / "b", n_classes=5, seed=2)
    assert main(["calibrate", str(b.path), str(voice), "--max-shift", "3", "--json"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["n_clips"] == 8 and result["engine"] == "int8" and not result["saved"]
    assert list(result["scores"]) == [str(s) for s in ev.search_order(3)]
    assert "--save stores it" in out.err and "note: 8 recordings; 20-40 give a surer choice" in out.err
    assert "stream" not in Bundle.load(b.path).manifest
    assert main(["calibrate", str(b.path), str(voice), "--save", "--engine", "c"]) == 0
    out = capsys.readouterr().out
    shift = StreamConfig.from_bundle(Bundle.load(b.path)).voice_shift
    assert shift == result["shift"] and f"voice shift {shift:+d} bands from 8 recording(s)" in out
    assert "stored in the bundle's stream settings" in out
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((voice / "alpha").glob("*.wav")) + sorted((voice / "beta").glob("*.wav")):
        (few / f"{p.parent.name}_{p.name}").write_bytes(p.read_bytes())
    assert main(["calibrate", str(b.path), str(few)]) == 2
    assert "4 WAV file(s); calibrating needs at least 5 recordings of the voice" in capsys.readouterr().err
    float_only = tmp_path / "f"
    from quant_helpers import make_bundle

    make_bundle(float_only)
    assert main(["calibrate", str(float_only), str(voice), "--save"]) == 2
    assert "not quantized; the stream setting is for the int8 model" in capsys.readouterr().err
    assert main(["calibrate", str(b.path), str(voice), "--save", "--engine", "float"]) == 2
    assert "--save with --engine float: the stream setting is for the int8 model" in capsys.readouterr().err
    tuned = StreamConfig.from_bundle(Bundle.load(b.path))
    tuned.tuning, tuned.voice_shift = {"fa_per_hour": 0.5}, shift + 1       # thresholds tuned at another shift
    Bundle.load(b.path).update(stream=tuned.to_dict())
    assert main(["calibrate", str(b.path), str(voice), "--save"]) == 0
    assert "tune them again (edgekws eval-stream MODEL DATA --tune)" in capsys.readouterr().out
    again = StreamConfig.from_bundle(Bundle.load(b.path))
    assert again.voice_shift == shift and "tune the thresholds again" in again.tuning["note"]
    again.tuning, again.voice_shift = {"note": "defaults, not tuned"}, shift + 1   # as retrain leaves them
    Bundle.load(b.path).update(stream=again.to_dict())
    assert main(["calibrate", str(b.path), str(voice), "--save"]) == 0
    assert "tune them again" not in capsys.readouterr().out          # nothing was tuned
    with pytest.raises(SystemExit):
        main(["calibrate", str(b.path), str(voice), "--max-shift", "9"])
    assert "must be at most 8 bands, got 9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(b.path), str(voice), "--voice-shift", "-9"])
    assert "must be in [-8, 8] bands, got -9" in capsys.readouterr().err


def test_the_exported_example_sets_the_bundles_voice_shift():
    from edgekws.export.targets import example_data_sources
    from edgekws.stream.golden import pipeline_case

    setup, audio, _ = pipeline_case()
    setup.config.voice_shift = -2
    header = example_data_sources(setup, audio)["ekws_example_data.h"]
    assert "#define EKWS_EXAMPLE_VOICE_SHIFT (-2)\n" in header
    from edgekws.firmware import firmware_dir

    main_c = (firmware_dir() / "examples" / "cortex-m" / "main.c").read_text()
    assert "ekws_pipeline_set_voice_shift(&pipe, EKWS_EXAMPLE_VOICE_SHIFT)" in main_c


@pytest.mark.parametrize("calibration", ["voice_shift", "voice_offset"])
def test_adapt_and_retrain_do_not_carry_a_calibration_to_the_model_they_write(tmp_path, capsys, calibration):
    """The shift or offset was measured on the old model; the adapted statistics and a new head learned
    the clips as they are: the new bundle starts uncalibrated, and says so."""
    from edgekws.adapt import adapt
    from edgekws.retrain.core import kept_stream_settings
    from edgekws.voicenorm import embedding_size
    from quant_helpers import make_bundle

    base, _ = make_bundle(tmp_path / "base")
    cfg = StreamConfig.default(base.labels)
    voice = tone_dataset(tmp_path / "voice", speakers=2, takes=2)
    if calibration == "voice_shift":
        cfg.voice_shift = 3
    else:
        from edgekws.quant import load_quantized, quantize_bundle

        quantize_bundle(base, features(64, 3), log=lambda *a: None)
        cfg.voice_offset = [2] * embedding_size(load_quantized(base))
    base.update(stream=cfg.to_dict())
    kept = kept_stream_settings(Bundle.load(base.path), base.labels)
    assert calibration not in kept and "voice calibration is not kept" in kept["tuning"]["note"]
    lines = []
    new = adapt(base, voice, tmp_path / "adapted", log=lines.append)
    kept = StreamConfig.from_bundle(new)
    assert kept.voice_shift == 0 and kept.voice_offset is None and new.manifest["stream"]["smooth"] == cfg.smooth
    assert "its voice calibration is not copied: calibrate the new model again" in lines[-1]
    from edgekws.retrain import retrain

    lines.clear()
    head = retrain(new, voice, tmp_path / "head", words=["alpha", "beta"], shots=2, epochs=1, log=lines.append)
    assert StreamConfig.from_bundle(head).voice_shift == 0 and not any("voice calibration" in x for x in lines)
    new.update(stream=cfg.to_dict())                                  # a calibrated base
    lines.clear()
    head = retrain(new, voice, tmp_path / "head2", words=["alpha", "beta"], shots=2, epochs=1, log=lines.append)
    kept = StreamConfig.from_bundle(head)
    assert kept.voice_shift == 0 and kept.voice_offset is None
    assert "voice calibration is not kept (the head learned the clips as they are)" in lines[-1]


def test_a_streaming_detector_keeps_the_shift_it_was_built_with():
    from edgekws.stream.golden import pipeline_case
    from edgekws.stream.pipeline import StreamingDetector, detect_audio

    setup, audio, _ = pipeline_case(seconds=3.0)
    key = lambda dets: [(d.frame, d.index, d.score_q15) for d in dets]  # noqa: E731
    setup.config.voice_shift = 2
    want = key(detect_audio(setup, audio, "numpy", end_silence=0))
    live = StreamingDetector(setup, "numpy")
    setup.config.voice_shift = -2        # settings changed later need a new detector (as in C)
    assert key(live.push(audio)) == want

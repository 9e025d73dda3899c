"""Voice search (edgekws.evaluate.VoiceSearch, `eval/predict --voice-search K`): the integer band
shift, the choice of shift by hand, parity of the engines under search, and the argument errors."""

import json

import numpy as np
import pytest

from edgekws import evaluate as ev
from edgekws.bundle import Bundle
from edgekws.cli import main
from edgekws.errors import EdgekwsError
from quant_helpers import features
from retrain_helpers import quantized_bundle

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def test_shift_bands_moves_the_band_axis_and_repeats_the_edge_bands():
    x = np.arange(2 * 3 * 6, dtype=np.int8).reshape(2, 3, 6)
    up = ev.shift_bands(x, 2)             # band b reads band b + 2: the spectrum moves down
    assert up.dtype == np.int8 and up.shape == x.shape
    assert up[1, 2].tolist() == [x[1, 2, 2], x[1, 2, 3], x[1, 2, 4], x[1, 2, 5], x[1, 2, 5], x[1, 2, 5]]
    down = ev.shift_bands(x, -1)
    assert down[0, 1].tolist() == [x[0, 1, 0], x[0, 1, 0], x[0, 1, 1], x[0, 1, 2], x[0, 1, 3], x[0, 1, 4]]
    assert np.array_equal(ev.shift_bands(x, 0), x) and ev.shift_bands(x, 0) is not x
    assert np.array_equal(ev.shift_bands(x, 9), np.repeat(x[..., -1:], 6, axis=-1))
    assert ev.search_order(0) == [0] and ev.search_order(2) == [0, -1, 1, -2, 2]


class PeakEngine:
    """Logits from where a clip's loudest band is: "yes" wins by 3 at band 2, by 1 at band 3, "no" by 2
    at band 5; elsewhere `_unknown_` wins by 1. Counts its calls."""

    def __init__(self):
        self.calls = 0

    def logits_features(self, x):
        self.calls += 1
        peak = x.astype(np.int64).sum(1).argmax(1)
        z = np.zeros((len(x), 4), np.float32)
        z[:, 1] = 1.0
        z[peak == 2, 2] = 4.0
        z[peak == 3, 2] = 2.0
        z[peak == 5, 3] = 3.0
        return z


def clip_with_peak(band, bands=8):
    x = np.zeros((1, 4, bands), np.int8)
    x[0, :, band] = 100
    return x


def test_the_answer_is_taken_where_a_command_stands_out_most():
    eng = PeakEngine()
    vs = ev.VoiceSearch(eng, LABELS, 2)
    x = np.concatenate([clip_with_peak(b) for b in (4, 2, 6, 7, 1)])
    z, shift = vs.search(x)
    assert eng.calls == 5                                     # one inference per shift, the batch at once
    # peak 4: band 2 reads it at shift +2 ("yes" by 3), band 3 at +1 (by 1), band 5 at -1 ("no" by 2): +2
    # peak 2: "yes" by 3 unshifted; peak 6: band 5 reads it at +1 ("no"; +4 would be needed for "yes");
    # peak 7: bands 5-7 read it at +2, the first of them is the peak ("no"); peak 1: band 2 reads it at -1
    assert shift.tolist() == [2, 0, 1, 2, -1]
    assert z.argmax(1).tolist() == [2, 2, 3, 3, 2]
    assert np.array_equal(z[0], [0, 1, 4, 0])
    # a clip where no shift finds a command keeps its unshifted logits (ties go to no shift)
    z, shift = ev.VoiceSearch(PeakEngine(), LABELS, 1).search(clip_with_peak(0))
    assert shift.tolist() == [0] and z.argmax(1).tolist() == [1]


def test_ties_go_to_the_earlier_shift_of_the_search_order():
    class Flat:
        def logits_features(self, x):
            return np.tile(np.float32([0, 0, 1, 0]), (len(x), 1))

    z, shift = ev.VoiceSearch(Flat(), LABELS, 3).search(features(3))
    assert shift.tolist() == [0, 0, 0]
    # without _silence_/_unknown_ labels the score is the best command logit alone
    vs = ev.VoiceSearch(PeakEngine(), ["a", "b", "c", "d"], 2)
    assert vs.commands.tolist() == [0, 1, 2, 3] and not len(vs.other)
    assert vs.search(clip_with_peak(3))[1].tolist() == [1]    # "yes" at 4 (band 2) beats 2 (band 3)
    assert vs.search(clip_with_peak(0))[1].tolist() == [0]    # every shift gives 1 (index 1): no shift


def test_a_tie_between_lower_and_higher_goes_to_the_lower_shift():
    class Middle:   # "yes" leads by 0.5 when band 4 reads band 3 or 5 (shift -1 or +1), else trails
        def logits_features(self, x):
            v = x[:, 0, 4].astype(np.int64)
            z = np.zeros((len(x), 4), np.float32)
            z[:, 1] = 0.5
            z[np.abs(v - 4) == 1, 2] = 1.0
            return z

    x = np.tile(np.arange(8, dtype=np.int8), (2, 3, 1))      # band b holds the value b
    z, shift = ev.VoiceSearch(Middle(), LABELS, 2).search(x)
    assert shift.tolist() == [-1, -1] and z.argmax(1).tolist() == [2, 2]
    with pytest.raises(EdgekwsError, match=r"voice search: ±8 bands is as wide as the 8 bands of the features"):
        ev.VoiceSearch(Middle(), LABELS, 8).search(x)
    with pytest.raises(EdgekwsError, match=r"voice search: features must be \(N, T, F\), got shape \(3, 8\)"):
        ev.VoiceSearch(Middle(), LABELS, 1).search(x[0])
    z4, shift4 = ev.VoiceSearch(Middle(), LABELS, 2).search(x[..., None])   # (N, T, F, 1) as (N, T, F)
    assert shift4.tolist() == [-1, -1]


@pytest.mark.parametrize("bad", [-1, 9, 1.5, True, "2", None])
def test_a_bad_number_of_bands_is_refused(bad):
    with pytest.raises(EdgekwsError, match=r"voice search \(--voice-search\): must be a whole number of bands "
                                           r"in \[0, 8\], got"):
        ev.VoiceSearch(PeakEngine(), LABELS, bad)


def test_no_command_labels_is_refused():
    with pytest.raises(EdgekwsError, match="voice search: the model has no command labels"):
        ev.VoiceSearch(PeakEngine(), ["_silence_", "_unknown_"], 2)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return quantized_bundle(tmp_path_factory.mktemp("vs") / "model", n_classes=5, seed=4)


def test_search_over_a_real_network_answers_with_the_logits_of_the_chosen_shift(bundle):
    x = features(24, seed=9)
    for engine in ("float", "int8"):
        plain = ev.KeywordModel(bundle, engine).engine
        km = ev.KeywordModel(bundle, engine, voice_search=2)
        z, shift = km.engine.search(x)
        assert set(shift.tolist()) <= {-2, -1, 0, 1, 2}
        for s in set(shift.tolist()):
            rows = shift == s
            assert np.array_equal(z[rows], plain.logits_features(ev.shift_bands(x, s))[rows])
        scores = {s: plain.logits_features(ev.shift_bands(x, s)).astype(np.float64) for s in range(-2, 3)}
        best = np.max([sc[:, 2:].max(1) - sc[:, :2].max(1) for sc in scores.values()], axis=0)
        assert np.array_equal(z[:, 2:].max(1) - z[:, :2].max(1), best.astype(z.dtype))
        assert np.array_equal(ev.KeywordModel(bundle, engine, voice_search=0).engine.logits_features(x),
                              plain.logits_features(x))


def test_the_numpy_int8_and_c_engines_search_alike(bundle):
    x = features(16, seed=11)
    zi, si = ev.KeywordModel(bundle, "int8", voice_search=3).engine.search(x)
    zc, sc = ev.KeywordModel(bundle, "c", voice_search=3).engine.search(x)
    assert np.array_equal(si, sc) and np.array_equal(zi, zc)


def test_eval_and_predict_take_voice_search(tmp_path, capsys):
    from test_train import make_tiny_dataset
    from edgekws.train import NO_AUGMENT, train
    from test_train import TINY

    data = make_tiny_dataset(tmp_path / "data")
    b = train(data, tmp_path / "model", **TINY, **NO_AUGMENT)
    out = tmp_path / "m.json"
    assert main(["eval", str(b.path), str(data), "--voice-search", "1", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["voice_search"] == 1 and m["n"] == 16
    km = ev.load_model(b.path, voice_search=1)
    want = ev.evaluate(b, data, engines="float", voice_search=1)
    assert want["voice_search"] == 1 and want["float"]["accuracy"] == m["accuracy"]
    out_err = capsys.readouterr()
    assert "voice search ±1" in out_err.out and "not kept in the bundle's metrics.json" in out_err.err
    assert not Bundle.load(b.path).has("metrics.json")            # the bundle's metrics stay unsearched
    assert main(["eval", str(b.path), str(data)]) == 0
    plain = Bundle.load(b.path).read_json("metrics.json")
    assert main(["eval", str(b.path), str(data), "--voice-search", "2"]) == 0
    assert Bundle.load(b.path).read_json("metrics.json") == plain and "voice_search" not in plain
    wav = sorted((data / "yes").glob("*.wav"))[0]
    assert main(["predict", str(b.path), str(wav), "--voice-search", "1"]) == 0
    label, conf = capsys.readouterr().out.strip().split("\t")[1:3]
    from edgekws.audio import read_wav

    (want_label, p), = km.classify(read_wav(wav, dtype="int16"))
    assert label == want_label and float(conf) == pytest.approx(p, abs=6e-4)
    for argv, message in ((["eval", str(b.path), str(data), "--voice-search", "9"], "must be at most 8 bands, got 9"),
                          (["predict", str(b.path), str(wav), "--voice-search", "-1"], "must be 0 or more, got -1")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == \
            f"edgekws {argv[0]}: error: argument --voice-search: {message}"


def test_the_firmware_search_refuses_what_it_cannot_do(bundle):
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel
    from edgekws.quant import load_quantized

    cm = CModel(model_blob(load_quantized(bundle)))
    x = features(2, seed=12)
    q, shifts = cm.search_int8(x, 0, 2)        # no shift: one plain inference
    assert np.array_equal(q, cm.logits_int8(x)) and shifts.tolist() == [0, 0]
    with pytest.raises(EdgekwsError, match="C model: features must be int8, got int16"):
        cm.search_int8(x.astype(np.int16), 1, 2)              # refused as logits_int8 refuses it, not cast
    q, shifts = cm.search_int8(x[:0], 1, 2)                   # no windows: no logits
    assert q.shape == (0, 5) and shifts.shape == (0,)
    for max_shift, n_other in ((40, 2), (2, 5)):   # a shift of every band; no command class left
        with pytest.raises(EdgekwsError, match="ekws_model_invoke_search failed: "):
            cm.search_int8(x, max_shift, n_other)

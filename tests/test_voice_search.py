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


def test_warp_time_reads_the_clip_faster_or_slower_around_its_middle_in_integers():
    x = np.array([[[-128], [0], [100], [127], [7]]], np.int8)            # (1, T=5, F=1)
    assert np.array_equal(ev.warp_time(x, 256), x) and ev.warp_time(x, 256) is not x
    # rate 0.5 (128): frame t reads 2 + (t - 2) / 2: positions 1, 1.5, 2, 2.5, 3 (halves round up)
    assert ev.warp_time(x, 128)[0, :, 0].tolist() == [0, 50, 100, 114, 127]
    # rate 2 (512): positions -2, 0, 2, 4, 6, clamped to the edge frames
    assert ev.warp_time(x, 512)[0, :, 0].tolist() == [-128, -128, 100, 7, 7]
    # 0.9 (230) by hand: frame 0 reads 2 - 2 * 230/256 = 0.203125 = 104/512 of the way from -128 to 0
    assert ev.warp_time(x, 230)[0, 0, 0] == int(np.floor(-128 + 128 * 104 / 512 + 0.5)) == -102
    # every value is the rounded linear reading; an even frame count has odd 1/512 weights too
    for y in (features(3, seed=4), np.random.default_rng(5).integers(-128, 128, (4, 6, 3)).astype(np.int8)):
        for r in ev.SEARCH_RATES_Q8 + (128, 300, 511):
            t = y.shape[1]
            pos = np.clip((t - 1) / 2 + (np.arange(t) - (t - 1) / 2) * r / 256, 0, t - 1)
            i0 = np.floor(pos).astype(int)
            i1 = np.minimum(i0 + 1, t - 1)
            w = (pos - i0)[None, :, None]
            want = np.floor(y[:, i0].astype(float) * (1 - w) + y[:, i1].astype(float) * w + 0.5)
            got = ev.warp_time(y, r)
            assert got.dtype == np.int8 and np.array_equal(got, want), (t, r)
    assert ev.SEARCH_RATES_Q8 == (256, 230, 284, 205, 320)     # 1, 0.9, 1/0.9, 0.8, 1.25 in Q8
    import re

    from edgekws.firmware import firmware_dir

    header = (firmware_dir() / "include" / "ekws" / "model.h").read_text()
    macro = re.search(r"#define EKWS_SEARCH_RATES_Q8 \{([^}]*)\}", header).group(1)
    assert tuple(int(v) for v in macro.split(",")) == ev.SEARCH_RATES_Q8            # the firmware's order
    assert int(re.search(r"#define EKWS_MAX_RATE_SEARCH (\d+)u", header).group(1)) == ev.MAX_RATE_SEARCH
    assert ev.search_grid(1) == [(256, 0), (256, -1), (256, 1)]
    assert (ev.search_name(2), ev.search_name(0, 1), ev.search_name(3, 1)) == \
        ("voice search ±2", "rate search 1", "voice search ±3, rate search 1")
    assert ev.search_grid(0, 2) == [(256, 0), (230, 0), (284, 0), (205, 0), (320, 0)]
    assert ev.search_grid(1, 1)[3:6] == [(230, 0), (230, -1), (230, 1)]


def test_rate_search_answers_at_the_rate_where_the_model_is_surest():
    class Onset:   # "yes" by 3 when the clip's loudest frame is frame 2 of 9, else _unknown_ by 1
        def logits_features(self, x):
            z = np.zeros((len(x), 4), np.float32)
            z[:, 1] = 1.0
            z[x.astype(np.int64).sum(2).argmax(1) == 2, 2] = 4.0
            return z

    x = np.full((3, 9, 4), -100, np.int8)
    x[0, 2] = 100    # heard as it is
    x[1, 1] = 100    # read faster (1.25: frame 2 reads 4 - 2 * 1.25 = 1.5, the loudest), not at 0.9 / 1/0.9
    x[2, 8] = 100    # never at frame 2 within these rates
    z, shift, rate = ev.VoiceSearch(Onset(), 0, 2).search(x)
    assert rate.tolist() == [256, 320, 256] and shift.tolist() == [0, 0, 0]
    assert z.argmax(1).tolist() == [2, 2, 1]
    assert ev.VoiceSearch(Onset(), 0, 1).search(x)[2].tolist() == [256, 256, 256]   # 0.9 / 1/0.9 do not reach it
    x[1, :] = 0                                    # a flat clip: every rate ties, the clip as it is wins
    assert ev.VoiceSearch(Onset(), 1, 2).search(x)[2][1] == 256
    for bad in (3, -1, 1.0, True):
        with pytest.raises(EdgekwsError, match=r"rate search \(--rate-search\): must be a whole number of levels in \[0, 2\], got "):
            ev.VoiceSearch(Onset(), 0, bad)


def test_search_spread_is_one_over_the_largest_probability_in_float_and_as_the_firmware_in_int8():
    z = np.array([[0.0, 1.0, 3.0, -2.0], [5.0, 5.0, 5.0, 5.0]])
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.allclose(ev.search_spread(z), 1 / p.max(1))
    q = np.array([[-128, 127, 0, 127], [10, 20, 30, 40], [5, 5, 5, 5]], np.int8)
    got = ev.search_spread(q, np.float32(0.05))
    assert got.dtype == np.float32
    d = q.astype(np.float64) - q.max(1, keepdims=True)
    assert np.allclose(got, np.exp(0.05 * d).sum(1), rtol=1e-6)   # int8 differences, no wrap at -128 - 127
    assert got[2] == np.float32(4.0)
    from edgekws.retrain.headmath import expf     # the sum in class order, float32, as search_spread in C
    e = expf(np.float32(0.05) * d[1].astype(np.float32))
    assert got[1] == ((e[0] + e[1]) + e[2]) + e[3]


class PeakEngine:
    """Logits from where a clip's loudest band is: "yes" wins by 4 at band 2 and by 2 at band 3, "no" by
    3 at band 5, `_unknown_` by 6 at band 7; elsewhere `_unknown_` leads everything by 1. Counts its calls."""

    def __init__(self):
        self.calls = 0

    def logits_features(self, x):
        self.calls += 1
        peak = x.astype(np.int64).sum(1).argmax(1)
        z = np.zeros((len(x), 4), np.float32)
        z[:, 1] = 1.0
        z[peak == 2, 2] = 5.0
        z[peak == 3, 2] = 3.0
        z[peak == 5, 3] = 4.0
        z[peak == 7, 1] = 6.0
        return z


def clip_with_peak(band, bands=8):
    x = np.zeros((1, 4, bands), np.int8)
    x[0, :, band] = 100
    return x


def test_the_answer_is_taken_where_the_model_is_surest_whatever_the_class():
    eng = PeakEngine()
    vs = ev.VoiceSearch(eng, 2)
    x = np.concatenate([clip_with_peak(b) for b in (4, 2, 6, 7, 1, 0)])
    z, shift, rate = vs.search(x)
    assert eng.calls == 5                                     # one inference per shift, the batch at once
    # peak 4: band 2 reads it at +2 ("yes" by 4), band 3 at +1 (by 2), band 5 at -1 ("no" by 3): +2
    # peak 2: "yes" by 4 unshifted; peak 6: band 7 reads it at -1 (_unknown_ by 6: surer than "no" by 3
    # at +1); peak 7: _unknown_ by 6 unshifted, although "no" wins at +2; peak 1: "yes" at -1;
    # peak 0: every shift's loudest band is band 0 (_unknown_ by 1): no shift
    assert shift.tolist() == [2, 0, -1, 0, -1, 0]
    assert z.argmax(1).tolist() == [2, 2, 1, 1, 2, 1]
    assert np.array_equal(z[0], [0, 1, 5, 0])


def test_ties_go_to_the_earlier_shift_of_the_search_order():
    class Flat:
        def logits_features(self, x):
            return np.tile(np.float32([0, 0, 1, 0]), (len(x), 1))

    z, shift, rate = ev.VoiceSearch(Flat(), 3).search(features(3))
    assert shift.tolist() == [0, 0, 0]


def test_a_tie_between_lower_and_higher_goes_to_the_lower_shift():
    class Middle:   # "yes" by 2 when band 4 reads band 3 or 5 (shift -1 or +1), else _unknown_ by 1
        def logits_features(self, x):
            v = x[:, 0, 4].astype(np.int64)
            z = np.zeros((len(x), 4), np.float32)
            z[:, 1] = 1.0
            z[np.abs(v - 4) == 1, 2] = 3.0
            return z

    x = np.tile(np.arange(8, dtype=np.int8), (2, 3, 1))      # band b holds the value b
    z, shift, rate = ev.VoiceSearch(Middle(), 2).search(x)
    assert shift.tolist() == [-1, -1] and z.argmax(1).tolist() == [2, 2]
    with pytest.raises(EdgekwsError, match=r"voice search: ±8 bands is as wide as the 8 bands of the features"):
        ev.VoiceSearch(Middle(), 8).search(x)
    with pytest.raises(EdgekwsError, match=r"voice search: features must be \(N, T, F\), got shape \(3, 8\)"):
        ev.VoiceSearch(Middle(), 1).search(x[0])
    z4, shift4, _ = ev.VoiceSearch(Middle(), 2).search(x[..., None])   # (N, T, F, 1) as (N, T, F)
    assert shift4.tolist() == [-1, -1]


@pytest.mark.parametrize("bad", [-1, 9, 1.5, True, "2", None])
def test_a_bad_number_of_bands_is_refused(bad):
    with pytest.raises(EdgekwsError, match=r"voice search \(--voice-search\): must be a whole number of bands "
                                           r"in \[0, 8\], got"):
        ev.VoiceSearch(PeakEngine(), bad)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return quantized_bundle(tmp_path_factory.mktemp("vs") / "model", n_classes=5, seed=2)   # one whose answers move


def test_search_over_a_real_network_answers_with_the_logits_of_the_chosen_shift(bundle):
    x = features(24, seed=9)
    moved = 0
    for engine in ("float", "int8"):
        plain = ev.KeywordModel(bundle, engine).engine
        km = ev.KeywordModel(bundle, engine, voice_search=2)
        z, shift, rate = km.engine.search(x)
        assert (rate == 256).all()
        assert set(shift.tolist()) <= {-2, -1, 0, 1, 2}
        for s in set(shift.tolist()):
            rows = shift == s
            assert np.array_equal(z[rows], plain.logits_features(ev.shift_bands(x, s))[rows])
        scale = getattr(plain, "output_scale", None)
        run = plain.logits_int8 if scale is not None else plain.logits_features
        spreads = np.stack([ev.search_spread(run(ev.shift_bands(x, s)), scale) for s in ev.search_order(2)])
        assert np.array_equal(shift, np.array(ev.search_order(2))[spreads.argmin(0)])
        moved += int(np.sum(shift != 0))
        assert np.array_equal(ev.KeywordModel(bundle, engine, voice_search=0).engine.logits_features(x),
                              plain.logits_features(x))
    assert moved >= 4          # the chosen shifts are not all 0: the checks above see the choice


def test_the_numpy_int8_and_c_engines_search_alike(bundle):
    x = features(16, seed=11)
    zi, si, ri = ev.KeywordModel(bundle, "int8", voice_search=3).engine.search(x)
    zc, sc, rc = ev.KeywordModel(bundle, "c", voice_search=3).engine.search(x)
    assert np.array_equal(si, sc) and np.array_equal(zi, zc) and np.sum(si != 0) >= 3
    assert (ri == 256).all() and (rc == 256).all()
    x = features(48, seed=11)
    for bands, levels in ((0, 1), (2, 2)):   # rate search, alone and with the bands: the same choices
        zi, si, ri = ev.KeywordModel(bundle, "int8", voice_search=bands, rate_search=levels).engine.search(x)
        zc, sc, rc = ev.KeywordModel(bundle, "c", voice_search=bands, rate_search=levels).engine.search(x)
        assert np.array_equal(si, sc) and np.array_equal(ri, rc) and np.array_equal(zi, zc)
        assert np.sum(ri != 256) >= 2 and set(ri.tolist()) <= set(ev.SEARCH_RATES_Q8[:1 + 2 * levels])


def test_eval_and_predict_take_voice_search(tmp_path, capsys):
    from test_train import make_tiny_dataset
    from edgekws.train import NO_AUGMENT, train
    from test_train import TINY

    data = make_tiny_dataset(tmp_path / "data")
    b = train(data, tmp_path / "model", **{**TINY, **NO_AUGMENT})
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
    assert main(["eval", str(b.path), str(data), "--rate-search", "1", "--voice-search", "1", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    want = ev.evaluate(b, data, engines="float", voice_search=1, rate_search=1)
    assert m["rate_search"] == 1 and m["voice_search"] == 1 and want["float"]["accuracy"] == m["accuracy"]
    assert "voice search ±1, rate search 1" in capsys.readouterr().out
    assert Bundle.load(b.path).read_json("metrics.json") == plain
    assert main(["predict", str(b.path), str(wav), "--rate-search", "2"]) == 0
    label, conf = capsys.readouterr().out.strip().split("\t")[1:3]
    (want_label, p), = ev.load_model(b.path, rate_search=2).classify(read_wav(wav, dtype="int16"))
    assert label == want_label and float(conf) == pytest.approx(p, abs=6e-4)
    for argv, flag, message in (
            (["eval", str(b.path), str(data), "--voice-search", "9"], "--voice-search", "must be at most 8 bands, got 9"),
            (["predict", str(b.path), str(wav), "--voice-search", "-1"], "--voice-search", "must be 0 or more, got -1"),
            (["eval", str(b.path), str(data), "--rate-search", "3"], "--rate-search", "must be at most 2 levels, got 3")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == \
            f"edgekws {argv[0]}: error: argument {flag}: {message}"


def test_the_firmware_search_refuses_what_it_cannot_do(bundle):
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel
    from edgekws.quant import load_quantized

    cm = CModel(model_blob(load_quantized(bundle)))
    x = features(2, seed=12)
    q, shifts, rates = cm.search_int8(x, 0)           # no shift: one plain inference
    assert np.array_equal(q, cm.logits_int8(x)) and shifts.tolist() == [0, 0] and rates.tolist() == [256, 256]
    with pytest.raises(EdgekwsError, match="C model: features must be int8, got int16"):
        cm.search_int8(x.astype(np.int16), 1)                 # refused as logits_int8 refuses it, not cast
    q, shifts, rates = cm.search_int8(x[:0], 1)               # no windows: no logits
    assert q.shape == (0, 5) and shifts.shape == (0,) and rates.shape == (0,)
    with pytest.raises(EdgekwsError, match="ekws_model_invoke_search failed: "):
        cm.search_int8(x, 40)                                 # a shift of every band
    with pytest.raises(EdgekwsError, match="ekws_model_invoke_search failed: "):
        cm.search_int8(x, 1, 3)                               # a rate search the firmware does not have

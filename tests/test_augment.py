"""Augmentation: determinism, shapes, and that each operation does to the signal what it says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekws.augment import (AugmentConfig, Augmenter, add_noise, apply_gain, eq_response, equalize,
                             formant_shift, hard_clip, mu_law, reverberate, room_impulse_responses,
                             sample_noise, speed_perturb, time_shift)
from edgekws.errors import EdgekwsError

SR = 16000


def _speechlike(n=8, s=SR, seed=0):
    """(n, s) float32: a harmonic tone burst with a noise onset, at a random place per row."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, s), np.float32)
    t = np.arange(int(0.4 * SR)) / SR
    for i in range(n):
        f0 = rng.uniform(100, 250)
        burst = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8)) * np.hanning(t.size)
        a = int(rng.integers(1000, s - t.size - 1000))
        x[i, a:a + t.size] = 0.5 * burst / np.abs(burst).max()
    return x


def _power_db(x, axis=-1):
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2, axis=axis))


def test_deterministic_and_seed_sensitive():
    x = _speechlike()
    aug = Augmenter()
    a = aug.apply(x, np.random.default_rng(5))
    b = aug.apply(x, np.random.default_rng(5))
    c = aug.apply(x, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(x, _speechlike())          # the input is not modified


@pytest.mark.parametrize("shape", [(8, SR), (3, 4000), (SR,), (0, SR), (4, 0), (1, 1)])
def test_shape_dtype_range_preserved(shape):
    x = np.random.default_rng(1).uniform(-0.5, 0.5, shape).astype(np.float32)
    y = Augmenter().apply(x, np.random.default_rng(2))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and (y.size == 0 or np.abs(y).max() <= 1.0)


def test_silent_and_nan_input_give_finite_output():
    cfg = AugmentConfig(**{f: 1.0 for f in ("shift_prob", "formant_prob", "speed_prob", "reverb_prob",
                                            "noise_prob", "eq_prob", "gain_prob", "clip_prob",
                                            "mulaw_prob")})
    x = np.zeros((6, SR), np.float32)
    x[1, 10] = np.nan
    x[2, :] = np.inf
    y = Augmenter(cfg).apply(x, np.random.default_rng(0))
    assert np.all(np.isfinite(y))
    assert np.all(_power_db(y[[0, 3, 4, 5]]) > -80)   # silent rows got background noise


def test_off_is_identity():
    x = _speechlike()
    assert np.array_equal(Augmenter(AugmentConfig.off()).apply(x, np.random.default_rng(0)), x)


def test_time_shift_exact():
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    y = time_shift(x, [3, -2])
    assert y[0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    assert y[1].tolist() == [12, 13, 14, 15, 16, 17, 18, 19, 0, 0]
    assert np.array_equal(time_shift(x, [100, -100]), np.zeros_like(x))


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
def test_noise_at_requested_snr(snr):
    x = _speechlike(4)
    rng = np.random.default_rng(3)
    n = sample_noise([rng.standard_normal(3 * SR), rng.standard_normal(SR // 3)], 4, SR, rng)
    y = add_noise(x, n, np.full(4, snr))
    measured = _power_db(x) - _power_db(y - x)
    assert np.allclose(measured, snr, atol=0.05)


def test_augmenter_noise_snr_range_respected():
    cfg = AugmentConfig.off()
    cfg.noise_prob, cfg.snr_db_range = 1.0, (5.0, 15.0)
    x = _speechlike(32)
    y = Augmenter(cfg).apply(x, np.random.default_rng(4))
    measured = _power_db(x) - _power_db(y - x)
    assert np.all((measured > 4.9) & (measured < 15.1)) and np.ptp(measured) > 4


def test_room_impulse_response_rt60_and_drr():
    rng = np.random.default_rng(0)
    rt60 = np.array([0.2, 0.5, 0.8])
    irs = room_impulse_responses(rt60, np.array([0.0, 6.0, -3.0]), rng, SR, damping=np.zeros(3))
    assert irs.dtype == np.float32 and irs[:, 0].tolist() == [1.0, 1.0, 1.0]
    tail = irs[:, 1:].astype(np.float64)
    drr = 10 * np.log10(1.0 / (tail ** 2).sum(1))
    assert np.allclose(drr, [0.0, 6.0, -3.0], atol=0.01)
    for i, r in enumerate(rt60):               # Schroeder backward integration: -5 dB to -25 dB
        edc = 10 * np.log10(np.maximum(np.cumsum((tail[i] ** 2)[::-1])[::-1], 1e-300) / (tail[i] ** 2).sum())
        t5, t25 = np.argmax(edc < -5), np.argmax(edc < -25)
        est = 3.0 * (t25 - t5) / SR
        assert abs(est - r) < 0.15 * r


def test_reverb_spreads_energy_in_time_keeps_level():
    x = np.zeros((2, SR), np.float32)
    x[:, 2000:2400] = np.random.default_rng(0).standard_normal((2, 400)) * 0.3
    y = reverberate(x, [0.6, 0.6], [0.0, 0.0], np.random.default_rng(1))
    late = slice(2400 + 1600, 2400 + 4800)          # 100-300 ms after the burst ends
    assert np.all(_power_db(y[:, late]) > _power_db(x[:, 2000:2400]) - 30)
    assert np.all(np.abs(x[:, late]) == 0)
    assert np.allclose(_power_db(y), _power_db(x), atol=0.01)     # level kept


def test_equalize_band_limits_as_documented():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, SR)).astype(np.float32) * 0.1
    hp, lp, tilt = [300.0, 300.0], [3400.0, 3400.0], [0.0, 12.0]
    y = equalize(x, hp, lp, tilt)
    f = np.fft.rfftfreq(SR, 1 / SR)
    px, py = (np.abs(np.fft.rfft(a, axis=1)) ** 2 for a in (x, y))
    h2 = eq_response(f, hp, lp, tilt).astype(np.float64) ** 2
    for lo, hi in [(20, 120), (200, 300), (800, 1200), (2000, 2600), (4000, 5000), (7000, 8000)]:
        band = (f >= lo) & (f < hi)
        measured = 10 * np.log10(py[:, band].sum(1) / px[:, band].sum(1))
        predicted = 10 * np.log10((h2[:, band] * px[:, band]).sum(1) / px[:, band].sum(1))
        deep = predicted < -35                      # truncation leaks at about -45 dB
        assert np.allclose(measured[~deep], predicted[~deep], atol=1.0), (lo, hi, measured, predicted)
        assert np.all(measured[deep] < -35)
    gain_db = 10 * np.log10(h2)
    at = {hz: int(np.argmin(np.abs(f - hz))) for hz in (60, 1000, 2000, 8000)}
    assert gain_db[0, at[60]] < -50 and gain_db[0, at[8000]] < -25       # phone line corners
    assert abs(gain_db[0, at[1000]]) < 0.1
    assert np.isclose(gain_db[1, at[2000]] - gain_db[0, at[2000]], 4.0, atol=0.1)  # 12 dB / 3 oct


def test_speed_changes_duration_and_pitch():
    t = np.arange(int(0.4 * SR)) / SR
    x = np.zeros((3, SR), np.float32)
    x[:, 6000:6000 + t.size] = 0.5 * np.sin(2 * np.pi * 200 * t) * np.hanning(t.size)
    y = speed_perturb(x, [0.8, 1.0, 1.25])
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.array_equal(y[1], x[1])

    def width(row):
        idx = np.flatnonzero(np.abs(row) > 0.1)
        return idx[-1] - idx[0]

    def peak_hz(row):
        return np.fft.rfftfreq(SR, 1 / SR)[np.abs(np.fft.rfft(row)).argmax()]
    w = width(x[0])
    assert abs(width(y[0]) / w - 1.25) < 0.03 and abs(width(y[2]) / w - 0.8) < 0.03
    assert abs(peak_hz(y[0]) - 160) <= 2 and abs(peak_hz(y[2]) - 250) <= 2
    # the energy centroid stays in place
    c = [np.sum(np.arange(SR) * r ** 2) / np.sum(r ** 2) for r in (x[0], y[0], y[2])]
    assert abs(c[1] - c[0]) < 50 and abs(c[2] - c[0]) < 50
    with pytest.raises(EdgekwsError):
        speed_perturb(x, [0.0, 1.0, 1.0])


def test_formant_shift_moves_envelope_keeps_pitch():
    f0, t = 150, np.arange(SR) / SR
    x = np.zeros(SR)
    for h in range(1, 50):                       # a vowel: formants at 700 and 1800 Hz
        f = f0 * h
        g = np.exp(-0.5 * ((f - 700) / 120) ** 2) + 0.6 * np.exp(-0.5 * ((f - 1800) / 150) ** 2)
        x += (g + 0.01) * np.sin(2 * np.pi * f * t)
    x = np.repeat((0.3 * x / np.abs(x).max()).astype(np.float32)[None], 3, 0)
    y = formant_shift(x, [0.85, 1.0, 1.15])
    assert y.dtype == np.float32 and np.array_equal(y[1], x[1])
    for row, alpha in ((y[0], 0.85), (y[2], 1.15)):
        m = np.abs(np.fft.rfft(row))                  # 1 Hz bins
        harmonics = m[f0 * np.arange(1, 40)]
        between = m[f0 * np.arange(1, 40) + f0 // 2]
        assert 20 * np.log10(harmonics.sum() / between.sum()) > 30   # still a 150 Hz voice
        f2 = f0 * (8 + np.argmax(harmonics[7:20]))   # strongest harmonic in 1200-3000 Hz
        assert abs(f2 - 1800 * alpha) <= f0          # the second formant moved with alpha
    assert np.allclose(_power_db(y), _power_db(x), atol=0.01)
    with pytest.raises(EdgekwsError):
        formant_shift(x, [1.0, -1.0, 1.0])


def test_speed_filter_is_resample_polys_own_and_formant_overlap_add_paths_agree():
    """speed_perturb passes resample_poly a filter designed once per ratio: the same bits as letting
    resample_poly design it at every call. formant_shift's overlap-add of half-overlapping frames
    (two vector adds) agrees with the frame-by-frame loop other frame/hop pairs take."""
    from math import gcd

    from scipy import signal

    from edgekws.augment import _overlap_add, _resample_filter

    x = np.random.default_rng(4).standard_normal((2, 4000)).astype(np.float32)
    for k in (30, 36, 44, 51):
        up, down = 40 // gcd(40, k), k // gcd(40, k)
        own = signal.resample_poly(x, up, down, axis=1, window=_resample_filter(up, down, x.dtype))
        assert np.array_equal(own, signal.resample_poly(x, up, down, axis=1))
    y = np.random.default_rng(5).standard_normal((2, 7, 8)).astype(np.float32)  # 7 frames of 8
    win = np.hanning(9)[:8].astype(np.float32)
    ola, norm = _overlap_add(y, win, 4, 40)
    want, want_norm = np.zeros((2, 40), np.float32), np.zeros(40, np.float32)
    for t in range(7):  # frame by frame
        want[:, 4 * t:4 * t + 8] += y[:, t]
        want_norm[4 * t:4 * t + 8] += win * win
    assert np.array_equal(ola, want) and np.array_equal(norm, want_norm)
    ola3, _ = _overlap_add(y, win, 3, 40)  # other overlaps: the loop; samples 0-2 are frame 0's alone
    assert np.array_equal(ola3[:, :3], y[:, 0, :3]) and np.array_equal(ola3[:, 3:6], y[:, 0, 3:6] + y[:, 1, :3])


def test_formant_envelope_matmuls_equal_the_cepstrum_by_fft_and_eq_grid_is_within_a_tenth_db():
    """formant_shift's cepstral smoothing as two small matrix products equals liftering the real
    cepstrum computed by irfft/rfft; equalize's response, evaluated every _EQ_GRID bins and
    interpolated, stays within 0.1 dB of eq_response at every bin above 100 Hz."""
    from edgekws.augment import _bin_response, _cepstral_bases

    rng = np.random.default_rng(6)
    frame, lifter = 512, 24
    logmag = rng.standard_normal((5, frame // 2 + 1)).astype(np.float32)
    cep = np.fft.irfft(logmag.astype(np.float64), frame, axis=-1)
    cep[:, lifter:frame - lifter + 1] = 0.0
    want = np.fft.rfft(cep, axis=-1).real
    to_cep, to_env = _cepstral_bases(frame, lifter)
    assert np.allclose((logmag @ to_cep) @ to_env, want, atol=1e-5)
    assert np.allclose(logmag @ to_cep, cep[:, :lifter], atol=1e-6)

    k, nfft = 50, 17280
    args = (rng.uniform(50, 400, k), rng.uniform(2800, 7800, k), rng.uniform(-8, 8, k),
            np.exp(rng.uniform(np.log(200), np.log(6000), (k, 2))), rng.uniform(-8, 8, (k, 2)))
    f = np.fft.rfftfreq(nfft, 1 / SR)
    h = _bin_response(nfft, SR, *args, order=4)
    exact = eq_response(f, *args)
    assert h.shape == exact.shape and h.dtype == np.float32
    above = f >= 100
    assert np.abs(20 * np.log10(h[:, above] / exact[:, above])).max() < 0.1


def test_room_impulse_responses_end_with_their_own_room():
    """Each row's tail is drawn only as long as its own rt60: a short room's response is zero after
    it, whatever the longest room of the batch; the same generator state gives the same bits."""
    rt60 = np.array([0.9, 0.1, 0.3])
    irs = room_impulse_responses(rt60, np.zeros(3), np.random.default_rng(2), SR, damping=[0.0, 0.3, 0.6])
    assert irs.shape[1] >= int(0.9 * SR)
    for i, r in enumerate(rt60):
        nz = np.flatnonzero(irs[i, 1:])
        assert 0.9 * r * SR < nz[-1] + 1 <= r * SR + 0.010 * SR + 1
    again = room_impulse_responses(rt60, np.zeros(3), np.random.default_rng(2), SR, damping=[0.0, 0.3, 0.6])
    assert np.array_equal(irs, again)


def test_gain_clip_mulaw():
    x = _speechlike(2)
    assert np.allclose(_power_db(apply_gain(x, [6.0, -6.0])) - _power_db(x), [6.0, -6.0], atol=1e-3)
    c = hard_clip(x, [0.5, 1.0])
    assert np.isclose(np.abs(c[0]).max(), 0.5 * np.abs(x[0]).max()) and np.array_equal(c[1], x[1])
    m = mu_law(x)
    assert len(np.unique(m)) <= 257
    assert _power_db(m - x).max() < _power_db(x).min() - 25


def test_config_round_trip_and_validation():
    cfg = AugmentConfig(speed_range=(0.9, 1.1), resonances=3)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert AugmentConfig.from_dict(d) == cfg
    for bad in ({"noise_prob": 1.5}, {"speed_range": (1.2, 0.8)}, {"speed_range": (0.0, 1.0)},
                {"snr_db_range": "loud"}, {"lowpass_hz_range": (3000.0, 9000.0)},
                {"clip_level_range": (0.0, 0.5)}):
        with pytest.raises(EdgekwsError, match="AugmentConfig"):
            AugmentConfig(**bad)
    with pytest.raises(EdgekwsError, match="unknown setting"):
        AugmentConfig.from_dict({"noise_probability": 0.5})
    # dB settings so extreme that the arithmetic gave NaN clips (written as silence)
    for bad in ({"resonance_db_range": (-8.0, 800.0)}, {"tilt_db_range": (-240.0, 0.0)},
                {"snr_db_range": (-800.0, 0.0)}, {"drr_db_range": (0.0, 900.0)}):
        with pytest.raises(EdgekwsError, match=r"the \*_db_range settings must lie within ±120 dB"):
            AugmentConfig(**bad)


def test_bad_inputs_rejected():
    with pytest.raises(EdgekwsError, match="noise 0"):
        Augmenter(noises=[np.zeros((2, 3))])
    with pytest.raises(EdgekwsError, match="NaN"):
        Augmenter(noises=[np.array([0.0, np.nan])])
    with pytest.raises(EdgekwsError, match="Generator"):
        Augmenter().apply(np.zeros((1, 10), np.float32), 0)
    with pytest.raises(EdgekwsError, match="batch"):
        Augmenter().apply(np.zeros((1, 2, 3), np.float32), np.random.default_rng())
    assert Augmenter(noises=[np.full(100, 1000, np.int16)]).noises[0].max() == pytest.approx(1000 / 32768)


def test_bench_augment_tool_times_every_operation_of_the_chain(capsys):
    from tool_helpers import load_tool

    assert load_tool("bench_augment").main(["--clips", "6", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:5] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| operation")}
    assert list(rows) == ["time shift", "formant shift", "speed", "reverb", "noise", "EQ", "mu-law",
                          "whole chain", "integer features"]
    assert int(rows["formant shift"][0]) == 2 and int(rows["whole chain"][0]) == 6   # 0.3 and all of 6 rows
    assert float(rows["whole chain"][2]) == 1.0 and all(float(v[1]) > 0 for v in rows.values())

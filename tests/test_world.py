"""WORLD vocoder voice variants (edgekws.synth.world) and tools/world_variants.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyworld")

from edgekws.audio import read_wav, write_wav  # noqa: E402
from edgekws.data import speaker_of  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.synth import world  # noqa: E402
from edgekws.synth.world import WorldVoice, analyze, resynthesize, warp_envelope  # noqa: E402
from edgekws.voices import engine_of  # noqa: E402

SR = 16000
FORMANTS = ((700, 120, 1.0), (1200, 150, 0.6), (2600, 250, 0.3))   # (Hz, width Hz, amplitude)


def vowel(f0_start=110.0, f0_end=140.0, seconds=1.0) -> np.ndarray:
    """(SR*seconds,) float64: silence, a 0.5 s harmonic vowel (F0 glide, 3 formants), silence."""
    n, total = SR // 2, int(SR * seconds)
    f0 = np.linspace(f0_start, f0_end, n)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    fh = np.arange(1, 60)[:, None] * f0                              # (harmonics, n) Hz
    env = 0.02 + sum(a * np.exp(-0.5 * ((fh - fc) / bw) ** 2) for fc, bw, a in FORMANTS)
    v = (env * np.sin(fh / f0 * phase) * (fh < 7000)).sum(axis=0)
    v *= np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.02 * SR))   # 20 ms ramps
    x = np.zeros(total)
    x[(total - n) // 2:(total - n) // 2 + n] = v
    return 0.3 * x / np.abs(x).max()


@pytest.fixture(scope="module")
def clip():
    x = vowel()
    return x, analyze(x)


def _f0(y):
    return analyze(y)[0]


def _rms(x):
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def test_identity_keeps_f0_length_and_rms(clip):
    x, (f0, sp, ap) = clip
    assert f0.shape == (201,) and sp.shape == ap.shape == (201, 513)
    y = resynthesize(x, WorldVoice(), analysis=(f0, sp, ap))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(_rms(y) / _rms(x) - 1) < 0.01
    g0 = _f0(y)
    v = (f0 > 0) & (g0 > 0)
    inner = np.convolve(v, np.ones(7), "same") == 7                # 15 ms away from voicing edges
    assert v.sum() >= 0.9 * (f0 > 0).sum() and inner.sum() > 80
    assert np.max(np.abs(g0[inner] / f0[inner] - 1)) < 0.02
    assert np.all(g0[f0 == 0][:40] == 0)                             # leading silence stays unvoiced


def test_f0_scale_raises_median_f0(clip):
    x, a = clip
    y = resynthesize(x, WorldVoice(f0_scale=1.5), analysis=a)
    ratio = np.median(_f0(y)[_f0(y) > 0]) / np.median(a[0][a[0] > 0])
    assert abs(ratio / 1.5 - 1) < 0.03
    assert abs(_rms(y) / _rms(x) - 1) < 0.01 and len(y) == len(x)


def test_rate_shortens_voiced_region_about_its_centre(clip):
    x, a = clip
    y = resynthesize(x, WorldVoice(rate=1.25), analysis=a)
    before, after = np.flatnonzero(a[0] > 0), np.flatnonzero(_f0(y) > 0)
    assert abs(len(after) - len(before) / 1.25) <= 5
    assert abs(after.mean() - before.mean()) <= 3                  # still centred
    assert len(y) == len(x) and abs(_rms(y) / _rms(x) - 1) < 0.01


def test_warp_moves_formants_in_documented_direction(clip):
    k = 513
    bins = np.arange(k)
    sp = np.exp(-0.5 * ((bins - 100) / 8.0) ** 2)[None] + 1e-3   # one peak at bin 100 (~1560 Hz)
    assert np.argmax(warp_envelope(sp, 0.1)[0]) < 90 < 110 < np.argmax(warp_envelope(sp, -0.1)[0])
    assert np.allclose(warp_envelope(sp, 0.0), sp)
    x, a = clip                                                     # end to end: F1 peak (~700 Hz)

    def f1(y):
        f0, sp, _ = analyze(y)
        return np.argmax(np.log(sp[f0 > 0].mean(axis=0))[:100]) * SR / 1024

    base = f1(resynthesize(x, WorldVoice(), analysis=a))
    assert f1(resynthesize(x, WorldVoice(warp=0.1), analysis=a)) < 0.9 * base
    assert f1(resynthesize(x, WorldVoice(warp=-0.1), analysis=a)) > 1.1 * base


def test_random_voice_is_deterministic_and_in_range(clip):
    x, a = clip
    v1, v2 = (WorldVoice.random(np.random.default_rng(7)) for _ in range(2))
    assert v1 == v2 and v1 != WorldVoice.random(np.random.default_rng(8))
    assert world.F0_SCALE_RANGE[0] <= v1.f0_scale <= world.F0_SCALE_RANGE[1]
    assert world.RATE_RANGE[0] <= v1.rate <= world.RATE_RANGE[1]
    wob = WorldVoice(f0_wobble_st=2.0, breath=0.3, seed=3)
    y1, y2 = resynthesize(x, wob), resynthesize(x, wob, analysis=a)
    assert np.array_equal(y1, y2)
    assert np.array_equal(resynthesize(x, v1, analysis=a), resynthesize(x, v2, analysis=a))
    assert not np.array_equal(y1, resynthesize(x, WorldVoice(f0_wobble_st=2.0, breath=0.3, seed=4), analysis=a))
    assert np.max(np.abs(world.wobble(201, 2.0, 3))) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        WorldVoice(rate=0)


def test_missing_pyworld_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyworld", None)
    with pytest.raises(EdgekwsError) as err:
        analyze(np.zeros(SR))
    msg = str(err.value)
    assert msg.startswith("pyworld is needed for WORLD vocoder voice variants but cannot be imported (")
    assert msg.endswith("; install it with: pip install pyworld")


# ---- tools/world_variants.py -------------------------------------------------------------------

def _tool():
    from tool_helpers import load_tool

    return load_tool("world_variants")


def _tiny_dataset(root: Path) -> None:
    for w, word in enumerate(("yes", "no")):
        for s, spk in enumerate(("espk0001", "espk0002", "ojt0001")):
            write_wav(root / word / f"{spk}_nohash_0.wav", vowel(100 + 20 * s + 10 * w, 130 + 15 * s))
    write_wav(root / "_background_noise_" / "white_noise.wav",
              0.1 * np.random.default_rng(0).standard_normal(SR // 2))
    (root / "commands.txt").write_text("yes\nno\n", encoding="utf-8")
    (root / "synth_manifest.json").write_text("{}\n", encoding="utf-8")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tool_writes_variants_and_links_originals(tmp_path, capsys):
    tool, data = _tool(), tmp_path / "data"
    _tiny_dataset(data)
    originals = _files(data)
    assert tool.main([str(data), str(tmp_path / "a"), "--variants", "2", "--seed", "5"]) == 0
    assert "8 clips written" in capsys.readouterr().out
    a = tmp_path / "a"
    for rel, content in originals.items():
        p = a / rel
        assert p.read_bytes() == content
        assert p.is_symlink() == ("/" in rel)                       # top-level files are copies
    new = sorted(set(_files(a)) - set(originals) - {tool.RECORD})
    expected = sorted(f"{w}/espkw{k}_000{s}_nohash_0.wav" for w in ("yes", "no") for k in (0, 1) for s in (1, 2))
    assert new == expected
    for rel in new:
        spk = speaker_of(Path(rel).name)
        assert engine_of(spk) == "espeak" and spk.startswith("espkw")
        y = read_wav(a / rel, dtype="float32")
        assert y.shape == (SR,) and _rms(y) > 0.01
    # one voice per (speaker, k): both words of espkw0_0001 share it, espkw1_0001 differs
    assert tool.variant_voice(5, "espk0001", 0) != tool.variant_voice(5, "espk0001", 1)
    # same seed -> identical bytes, with more jobs too, and a re-run into the same folder
    assert tool.main([str(data), str(tmp_path / "b"), "--variants", "2", "--seed", "5", "--jobs", "2"]) == 0
    assert tool.main([str(data), str(a), "--variants", "2", "--seed", "5"]) == 0
    fa, fb = _files(a), _files(tmp_path / "b")
    assert fa == fb and set(fa) == set(originals) | set(new) | {tool.RECORD}
    # a different seed gives other voices; a foreign non-empty OUT is refused
    assert tool.main([str(data), str(tmp_path / "c"), "--variants", "1", "--seed", "6"]) == 0
    assert (tmp_path / "c" / new[0]).read_bytes() != fa[new[0]]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    assert tool.main([str(data), str(tmp_path / "d"), "--variants", "1"]) == 1
    assert tool.main([str(data), str(data / "yes"), "--variants", "1"]) == 1
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"

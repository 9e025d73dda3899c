"""Offline speech synthesis: dataset layout, clip format, manifest, determinism, argument errors."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from edgekws.audio import read_wav
from edgekws.errors import DatasetError, EdgekwsError, MissingDependencyError
from edgekws.synth.words import COMMANDS

pytest.importorskip("espeakng_loader")

from edgekws.synth import espeak, noise, openjtalk  # noqa: E402
from edgekws.synth.generator import MANIFEST, MAX_SPEECH, speak_16k, synthesize_dataset  # noqa: E402
from edgekws.synth.voices import Speaker, make_speakers  # noqa: E402
from edgekws.synth.words import command_words  # noqa: E402

TINY = dict(words="yes,no,stop", speakers=3, unknown_per_speaker=1, noise_seconds=0.5, engines="espeak", world=0)
NAME_RE = re.compile(r"^(espk|ojt)(w\d+(s\d+)?_)?\d{4}_nohash_\d+\.wav$")   # espkw0_0012: a WORLD variant


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory):
    out = tmp_path_factory.mktemp("en") / "ds"
    manifest = synthesize_dataset(out, "en", seed=7, jobs=1, **TINY)
    return out, manifest


def test_layout_and_clip_format(tiny_en):
    out, m = tiny_en
    files = _files(out)
    wavs = {k for k in files if k.endswith(".wav")}
    listed = {c["path"] for c in m["clips"]} | {n["path"] for n in m["noise"]}
    assert wavs == listed                          # nothing unlisted, nothing missing
    assert set(files) == wavs | {MANIFEST}         # no temp files left behind
    for c in m["clips"]:
        folder, name = c["path"].split("/")
        assert folder == c["word"] and NAME_RE.match(name) and name.startswith(c["speaker"])
        with wave.open(str(out / c["path"])) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == \
                (1, 2, 16000, 16000)
        x = read_wav(out / c["path"])
        voiced = np.flatnonzero(np.abs(x.astype(np.int32)) > 300)
        start = int(round(c["offset_s"] * 16000))
        assert voiced.size > 1000 and start <= voiced[0] < start + 0.1 * 16000
        assert voiced[-1] < start + c["speech_s"] * 16000 + 1
        assert 0.3 * 32767 < np.abs(x.astype(np.int32)).max() <= 0.91 * 32767
    commands = [c for c in m["clips"] if c["kind"] == "command"]
    assert sorted({c["word"] for c in commands}) == ["no", "stop", "yes"]
    assert len(commands) == 3 * 3 and len(m["clips"]) == 3 * 4
    unknown = [c for c in m["clips"] if c["kind"] == "unknown"]
    assert all(c["word"] not in ("yes", "no", "stop") for c in unknown)
    offsets = {c["offset_s"] for c in commands}
    assert len(offsets) > 5                        # speech at random offsets, not one place
    kinds = sorted(n["kind"] for n in m["noise"])
    assert kinds == ["babble", "brown", "hum", "pink", "white"]
    for n in m["noise"]:
        assert read_wav(out / n["path"]).shape == (8000,)


def test_manifest_speakers_consistent(tiny_en):
    _, m = tiny_en
    spk = {s["id"]: s for s in m["speakers"]}
    assert len(spk) == 3 and all(s["engine"] == "espeak" and s["id"].startswith("espk")
                                 for s in spk.values())
    for c in m["clips"]:
        s = spk[c["speaker"]]
        assert c["engine"] == s["engine"]
        assert c["voice"]["voice"] == s["params"]["voice"]     # same voice in every word
        assert c["text"] == c["word"] or c["kind"] == "unknown"
    assert m["lang"] == "en" and m["seed"] == 7 and m["attribution"] == []
    assert json.loads((Path(tiny_en[0]) / MANIFEST).read_text("utf-8")) == m


def test_read_manifest_and_noises(tiny_en, tmp_path):
    from edgekws.synth import load_noises, read_manifest
    out, m = tiny_en
    assert read_manifest(out) == m
    assert sorted(load_noises(out)) == ["babble_espeak", "brown_noise", "hum_50hz", "pink_noise",
                                        "white_noise"]
    assert "babble_espeak" not in load_noises(out, exclude_engines=["espeak"])
    with pytest.raises(DatasetError, match="no synthesis manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format": "other"}')
    with pytest.raises(DatasetError, match="not an"):
        read_manifest(tmp_path)


def test_same_seed_same_bytes_any_jobs(tiny_en, tmp_path):
    out, _ = tiny_en
    synthesize_dataset(tmp_path / "a", "en", seed=7, jobs=2, **TINY)
    assert _files(tmp_path / "a") == _files(out)
    synthesize_dataset(tmp_path / "b", "en", seed=8, jobs=2, **TINY)
    a, b = _files(out), _files(tmp_path / "b")
    common = [k for k in a if k in b and k.endswith(".wav")]
    assert len(common) >= 9 + 5                    # the command clips and the noise files
    assert all(a[k] != b[k] for k in common)


def test_confusable_words_are_said_by_every_speaker(tmp_path):
    m = synthesize_dataset(tmp_path / "c", "en", seed=7, jobs=1, **{**TINY, "speakers": 4}, confusable="night,one")
    said = {(c["speaker"], c["word"]) for c in m["clips"] if c["kind"] == "unknown"}
    for s in m["speakers"]:
        assert {(s["id"], "night"), (s["id"], "one")} <= said
        assert sum(1 for sp, _ in said if sp == s["id"]) <= 3    # 1 random word, which may be one of them
    assert m["confusable"] == ["night", "one"]
    # the random choices are the same as without --confusable: only the listed words are added
    plain = synthesize_dataset(tmp_path / "p", "en", seed=7, jobs=1, **{**TINY, "speakers": 4})
    extra = {c["path"] for c in m["clips"]} - {c["path"] for c in plain["clips"]}
    assert {p.split("/")[0] for p in extra} <= {"night", "one"}
    assert plain["confusable"] == []
    for c in plain["clips"]:   # the commands keep their bytes
        if c["kind"] == "command":
            assert (tmp_path / "c" / c["path"]).read_bytes() == (tmp_path / "p" / c["path"]).read_bytes()


def test_japanese_speakers_all_say_the_default_confusable_word_unless_none(tmp_path):
    args = dict(words="yes", speakers=3, unknown_per_speaker=1, noise_seconds=0, engines="espeak", seed=2, jobs=1)
    m = synthesize_dataset(tmp_path / "d", "ja", **args)
    assert m["confusable"] == ["book"]
    assert {c["speaker"] for c in m["clips"] if c["word"] == "book"} == {s["id"] for s in m["speakers"]}
    none = synthesize_dataset(tmp_path / "n", "ja", **args, confusable="none")
    assert none["confusable"] == [] and len(none["clips"]) < len(m["clips"])
    # no unknown words (as --vocab makes): no default confusable word either, and no error
    assert synthesize_dataset(tmp_path / "v", "ja", **{**args, "unknown_per_speaker": 0})["confusable"] == []


def test_japanese_both_engines(tmp_path):
    pytest.importorskip("pyopenjtalk")
    m = synthesize_dataset(tmp_path / "ja", "ja", words="yes,stop", speakers=4,
                           unknown_per_speaker=1, noise_seconds=0.2, seed=1, jobs=2)
    engines = {s["id"]: s["engine"] for s in m["speakers"]}
    assert sorted(engines.values()) == ["espeak", "espeak", "openjtalk", "openjtalk"]
    assert all(sid.startswith("ojt" if e == "openjtalk" else "espk") for sid, e in engines.items())
    texts = {(c["word"], c["engine"]): c["text"] for c in m["clips"]}
    assert texts[("yes", "espeak")] == texts[("yes", "openjtalk")] == "はい"
    assert texts[("stop", "openjtalk")] == "とまれ"
    assert {n["path"] for n in m["noise"]} >= {"_background_noise_/babble_espeak.wav",
                                               "_background_noise_/babble_openjtalk.wav"}
    assert m["attribution"] and "CC BY 3.0" in m["attribution"][0]
    ojt = [c for c in m["clips"] if c["engine"] == "openjtalk"]
    assert all(read_wav(tmp_path / "ja" / c["path"]).shape == (16000,) for c in ojt)


def test_openjtalk_voices_give_every_second_speaker_m001_and_leave_mei_speakers_alone(tmp_path):
    pytest.importorskip("pyopenjtalk")
    pytest.importorskip("pitsh")                # pip install "edgekws[voices]" (in .ci/run)
    args = dict(words="yes,stop", speakers=5, engines="openjtalk", unknown_per_speaker=0,
                noise_seconds=0.2, seed=3, jobs=2)
    mei = synthesize_dataset(tmp_path / "mei", "ja", **args)
    both = synthesize_dataset(tmp_path / "both", "ja", openjtalk_voices="mei,m001", **args)
    voices = {s["id"]: s["params"].get("voice", "mei") for s in both["speakers"]}
    assert voices == {"ojt0000": "mei", "ojt0001": "m001", "ojt0002": "mei", "ojt0003": "m001",
                      "ojt0004": "mei"}
    assert both["openjtalk_voices"] == ["mei", "m001"] and "openjtalk_voices" not in mei
    assert len(both["attribution"]) == 2 and "NIT ATR503 M001" in both["attribution"][1]
    a, b = _files(tmp_path / "mei"), _files(tmp_path / "both")
    for rel in a:
        if rel.endswith(".wav") and not rel.startswith("_background_noise_"):
            assert (a[rel] == b[rel]) == (voices[Path(rel).name[:7]] == "mei"), rel
    # M001 is a man: its clips' pitch sits an octave under Mei's at the same settings
    x_mei, _ = _openjtalk_synth("すすめ", "mei")
    x_m001, _ = _openjtalk_synth("すすめ", "m001")
    assert _pitch_hz(x_m001) < 0.6 * _pitch_hz(x_mei)


def _openjtalk_synth(text, voice):
    from edgekws.synth import openjtalk
    return openjtalk.synthesize(text, voice=voice)


def _pitch_hz(x, sr=48000):
    """Median autocorrelation pitch of the voiced 2048-sample frames of x."""
    f0 = []
    for s in range(0, len(x) - 2048, 1024):
        f = x[s:s + 2048] - x[s:s + 2048].mean()
        if np.abs(f).max() < 0.2 * np.abs(x).max():
            continue
        ac = np.correlate(f, f, "full")[2047:]
        lo, hi = sr // 500, sr // 60
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.4 * ac[0]:
            f0.append(sr / k)
    return float(np.median(f0))


def test_openjtalk_voice_m001_is_found_checked_or_explained(tmp_path, monkeypatch):
    from edgekws.synth import openjtalk
    monkeypatch.setattr(openjtalk.importlib.util, "find_spec", lambda name: None)   # no pitsh
    monkeypatch.delenv(openjtalk.M001_ENV, raising=False)
    monkeypatch.delenv(openjtalk.VOICE_DIR_ENV, raising=False)
    with pytest.raises(EdgekwsError, match=re.escape('the Open JTalk voice m001 (NIT ATR503 M001 1.05) is not '
                                                     'installed: pip install "edgekws[voices]", or set '
                                                     'EDGEKWS_M001 to the path of nitech_jp_atr503_m001.htsvoice')):
        openjtalk.voice_path("m001")
    monkeypatch.setenv(openjtalk.M001_ENV, str(tmp_path / "none.htsvoice"))
    with pytest.raises(EdgekwsError, match=re.escape(f"EDGEKWS_M001={tmp_path / 'none.htsvoice'}: no such file")):
        openjtalk.voice_path("m001")
    other = tmp_path / "other.htsvoice"
    other.write_bytes(b"[GLOBAL]\nALPHA=0.55\n")
    monkeypatch.setenv(openjtalk.M001_ENV, str(other))
    with pytest.raises(EdgekwsError, match=re.escape(f"{other} (from EDGEKWS_M001): not the Open JTalk voice "
                                                     "NIT ATR503 M001 1.05 (sha256 ")):
        openjtalk.voice_path("m001")
    with pytest.raises(EdgekwsError, match=re.escape("unknown Open JTalk voice 'tohoku' (one of mei, m001, "
                                                     "mei_angry, mei_bashful, mei_happy, mei_sad)")):
        openjtalk.voice_path("tohoku")


def test_mei_style_voices_are_found_in_the_voice_folder_by_sha256(tmp_path, monkeypatch):
    from edgekws.synth import openjtalk
    monkeypatch.delenv(openjtalk.VOICE_DIR_ENV, raising=False)
    with pytest.raises(EdgekwsError, match=re.escape("the Open JTalk voice mei_sad (Mei (sad)) is not installed: "
                                                     "edgekws fetch-voices DIR, then set "
                                                     "EDGEKWS_HTSVOICES=DIR")):
        openjtalk.voice_path("mei_sad")
    monkeypatch.setenv(openjtalk.VOICE_DIR_ENV, str(tmp_path))
    with pytest.raises(EdgekwsError, match="is not installed"):
        openjtalk.voice_path("mei_sad")                 # the folder lacks the file
    sad = tmp_path / "mei_sad.htsvoice"
    sad.write_bytes(b"[GLOBAL]\nALPHA=0.55\n")
    with pytest.raises(EdgekwsError, match=re.escape(f"{sad} (from EDGEKWS_HTSVOICES): not the Open JTalk voice "
                                                     "Mei (sad) (sha256 ")):
        openjtalk.voice_path("mei_sad")
    fake = openjtalk.ExtraVoice("mei_sad.htsvoice", hashlib.sha256(sad.read_bytes()).hexdigest(), "Mei (sad)")
    monkeypatch.setitem(openjtalk.EXTRA_VOICES, "mei_sad", fake)
    assert openjtalk.voice_path("mei_sad") == str(sad)
    # the folder serves M001 too, after its own variable
    m001 = tmp_path / "nitech_jp_atr503_m001.htsvoice"
    m001.write_bytes(b"not M001")
    monkeypatch.setattr(openjtalk.importlib.util, "find_spec", lambda name: None)   # no pitsh
    monkeypatch.delenv(openjtalk.M001_ENV, raising=False)
    with pytest.raises(EdgekwsError, match=re.escape(f"{m001} (from EDGEKWS_HTSVOICES): not the Open JTalk "
                                                     "voice NIT ATR503 M001 1.05")):
        openjtalk.voice_path("m001")


def _click_past(alpha_max, calls):
    """A stand-in for generator._speak: a tone, or a lone spike when the speaker's alpha > alpha_max."""
    def speak(speaker, text, p, tts=None):
        calls.append(dict(p))
        x = np.zeros(30000)
        if speaker.engine == "openjtalk" and p["alpha"] <= alpha_max + 1e-9:
            x[6000:14000] = 1e4 * np.sin(np.arange(8000) * 0.05)
        else:
            x[9000] = 3e8
        return x, 48000
    return speak


def test_a_vocoder_blowup_is_spoken_again_nearer_the_voice_alpha_or_refused(monkeypatch):
    from edgekws.synth import generator
    calls = []
    monkeypatch.setattr(generator, "_speak", _click_past(0.60, calls))
    ojt = Speaker("ojt0020", "openjtalk", {})
    y, p = speak_16k(ojt, "みぎ", {"half_tone": -6.2, "alpha": 0.65, "speed": 0.8, "voice": "mei_angry"})
    assert [c["alpha"] for c in calls] == [0.65, 0.62, 0.59] and p["alpha"] == 0.59
    assert p["half_tone"] == -6.2 and np.max(np.abs(y)) == pytest.approx(1.0)
    calls.clear()
    y, p = speak_16k(ojt, "みぎ", {"half_tone": 0.0, "alpha": 0.44, "speed": 0.8})     # from below: +0.03 a try
    assert [c["alpha"] for c in calls] == [0.44] and p["alpha"] == 0.44
    calls.clear()
    monkeypatch.setattr(generator, "_speak", _click_past(0.50, calls))
    with pytest.raises(EdgekwsError, match=re.escape("openjtalk could not say 'みぎ' (ojt0020, {'half_tone': -6.2, "
                                                     "'alpha': 0.56, 'speed': 0.8}): its output collapsed into a "
                                                     "click; use a shorter text")):
        speak_16k(ojt, "みぎ", {"half_tone": -6.2, "alpha": 0.65, "speed": 0.8})
    assert [c["alpha"] for c in calls] == [0.65, 0.62, 0.59, 0.56]       # three more tries, then refused
    calls.clear()
    with pytest.raises(EdgekwsError, match=re.escape("openjtalk could not say 'みぎ' (ojt0020, {'alpha': 0.55}")):
        speak_16k(ojt, "みぎ", {"alpha": 0.55})
    assert len(calls) == 1                                              # its own alpha: nothing nearer
    with pytest.raises(EdgekwsError, match=re.escape("espeak could not say 'yes' (espk0001, ")):
        speak_16k(Speaker("espk0001", "espeak", {}), "yes", {"voice": "en", "rate": 150, "pitch": 50, "prange": 50})


def test_espeak_variants_narrow_the_voices_and_the_default_takes_them_all(tmp_path):
    args = dict(words="yes", speakers=4, engines="espeak", unknown_per_speaker=0, noise_seconds=0.2,
                seed=5, jobs=2)
    two = synthesize_dataset(tmp_path / "two", "en", espeak_variants="m1,f1", **args)
    assert two["espeak_variants"] == ["f1", "m1"]          # in eSpeak NG's order, whatever the list's
    assert sorted(s["params"]["voice"].split("+")[1] for s in two["speakers"]) == ["f1", "f1", "m1", "m1"]
    again = synthesize_dataset(tmp_path / "again", "en", espeak_variants=["f1", "m1"], **args)
    assert _files(tmp_path / "two") == _files(tmp_path / "again")
    every = synthesize_dataset(tmp_path / "all", "en", **args)
    assert "espeak_variants" not in every
    assert [s["params"] for s in every["speakers"]] == \
        [s.params for s in make_speakers("en", 4, ("espeak",), 5, espeak.variants())]
    assert {s["params"]["voice"] for s in every["speakers"]} != {s["params"]["voice"] for s in two["speakers"]}


@pytest.mark.parametrize("variants, why", [("m1,zz", "unknown variant(s) 'zz'"), ("m1,m1", "a variant named twice"),
                                           ("", "unknown variant(s) ''")])
def test_bad_espeak_variants(tmp_path, variants, why):
    with pytest.raises(EdgekwsError, match=re.escape(f"--espeak-variants: {variants!r}: {why} (eSpeak NG ships ")):
        synthesize_dataset(tmp_path / "x", "en", speakers=1, noise_seconds=0, espeak_variants=variants)
    with pytest.raises(EdgekwsError, match=re.escape("--espeak-variants: no eSpeak NG speakers among --engines "
                                                     "openjtalk")):
        synthesize_dataset(tmp_path / "x", "ja", speakers=1, noise_seconds=0, engines="openjtalk",
                           espeak_variants="m1")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("voices", ["mei,mei", "mei,tohoku", ""])
def test_bad_openjtalk_voices(tmp_path, voices):
    with pytest.raises(EdgekwsError, match=re.escape(f"--openjtalk-voices: {voices!r} is not a list of distinct "
                                                     "voices among mei, m001, mei_angry, mei_bashful, mei_happy, "
                                                     "mei_sad")):
        synthesize_dataset(tmp_path / "x", "ja", speakers=1, noise_seconds=0, openjtalk_voices=voices)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_openjtalk_voices_without_openjtalk_are_refused(tmp_path, lang):
    # as --espeak-variants without eSpeak NG: a voice list no speaker would use is a mistake, not ignored
    with pytest.raises(EdgekwsError, match=re.escape("--openjtalk-voices: no Open JTalk speakers among --engines "
                                                     "espeak")):
        synthesize_dataset(tmp_path / "x", lang, speakers=1, noise_seconds=0, engines="espeak",
                           openjtalk_voices="mei,m001")
    assert not (tmp_path / "x").exists()


def test_english_gets_a_world_variant_of_every_espeak_speaker_in_its_split(tmp_path):
    pytest.importorskip("pyworld")
    from edgekws.data import which_split
    from edgekws.synth.generator import world_speaker_id

    args = dict(words="yes,no", speakers=4, unknown_per_speaker=1, noise_seconds=0, seed=5)
    m = synthesize_dataset(tmp_path / "a", "en", jobs=1, world=1, **args)
    assert m["world_variants"] == 1
    variants = [c for c in m["clips"] if "world" in c]
    sources = [c for c in m["clips"] if c["engine"] == "espeak" and "world" not in c]
    assert len(variants) == len(sources) == 2 * 3         # 2 eSpeak speakers x (2 commands + 1 unknown word)
    for c in variants:
        src = c["world"]["source"]
        spk = Path(src).name.split("_nohash_")[0]
        assert c["speaker"] == world_speaker_id(spk, 0) and c["speaker"].startswith("espkw0")
        assert which_split(Path(c["path"]).name) == which_split(Path(src).name)   # no test voice trains
        a, b = read_wav(tmp_path / "a" / c["path"]), read_wav(tmp_path / "a" / src)
        assert a.shape == b.shape == (16000,) and not np.array_equal(a, b)
    voices = {c["speaker"]: {k: v for k, v in c["world"].items() if k != "source"} for c in variants}
    assert all(s["world_source"] for s in m["speakers"] if s["id"] in voices)
    assert len({json.dumps(v, sort_keys=True) for v in voices.values()}) == len(voices)   # one voice each
    synthesize_dataset(tmp_path / "b", "en", jobs=2, world=1, **args)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")              # same bytes, any --jobs
    m = synthesize_dataset(tmp_path / "c", "en", jobs=1, **args)          # default: none
    assert m["world_variants"] == 0 and not any("world" in c for c in m["clips"])
    with pytest.raises(EdgekwsError, match=r"--world: must be an integer in \[0, 8\], got 9"):
        synthesize_dataset(tmp_path / "e", "en", world=9, **args)


def test_world_variants_without_pyworld_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyworld", None)             # import now fails
    with pytest.raises(MissingDependencyError, match="pip install pyworld"):
        synthesize_dataset(tmp_path / "w", "en", words="yes", speakers=1, noise_seconds=0, world=1)
    assert not (tmp_path / "w").exists()                          # refused before anything is written
    m = synthesize_dataset(tmp_path / "j", "ja", words="yes", speakers=1, unknown_per_speaker=0, noise_seconds=0,
                           engines="espeak", jobs=1)              # no variants by default: no pyworld needed
    assert m["world_variants"] == 0


def test_english_custom_word_without_katakana_falls_back_to_espeak(tmp_path):
    m = synthesize_dataset(tmp_path / "e", "en", words="light=light", speakers=2, unknown_per_speaker=0,
                           noise_seconds=0, jobs=1)
    assert m["engines"] == ["espeak"] and {c["engine"] for c in m["clips"]} == {"espeak"}
    with pytest.raises(EdgekwsError, match="has no text for openjtalk"):     # asked for explicitly
        synthesize_dataset(tmp_path / "f", "en", words="light=light", speakers=2, engines="espeak,openjtalk")


def test_english_katakana_via_openjtalk(tmp_path):
    pytest.importorskip("pyopenjtalk")
    m = synthesize_dataset(tmp_path / "e", "en", words="stop", speakers=1, engines="openjtalk",
                           unknown_per_speaker=0, noise_seconds=0, jobs=1)
    assert [(c["text"], c["engine"], c["speaker"]) for c in m["clips"]] == \
        [("ストップ", "openjtalk", "ojt0000")]


@pytest.mark.parametrize("kwargs, message", [
    (dict(lang="fr"), "--lang"),
    (dict(speakers=0), "--speakers"),
    (dict(speakers=10 ** 23), "--speakers must be an integer in 1..100000"),   # grew memory silently
    (dict(jobs=10 ** 23), "--jobs must be an integer in 1..256"),
    (dict(unknown_per_speaker=10 ** 9), "--unknown must be an integer in 0..1000"),
    (dict(words="yes,maybe"), "unknown word 'maybe'"),
    (dict(words="yes,,no"), "empty entry"),
    (dict(words="yes,yes"), "given twice"),
    (dict(words="Big Word=x"), "lower-case ASCII"),
    (dict(engines="espeak,festival"), "--engines"),
    (dict(jobs=0), "--jobs"),
    (dict(seed=-1), "--seed"),
    (dict(repeats=0), "--repeats"),
    (dict(unknown_per_speaker=-2), "--unknown"),
    (dict(confusable="night,nite"), "--confusable: 'nite' not among the unknown words of this language"),
    (dict(confusable="yes"), "--confusable: 'yes' not among"),
    (dict(confusable="night", unknown_per_speaker=0), "--confusable: needs unknown words (--unknown is 0)"),
    (dict(noise_seconds=0.00001), "--noise-seconds must be 0 (no noise files) or between 0.1 and 600"),
    (dict(words="yes,dot=.", engines="espeak"), "--words: espeak cannot say the custom word 'dot' ('.'): "
                                                "espeak produced silence"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    args = dict(lang="en", speakers=1, noise_seconds=0)
    args.update(kwargs)
    with pytest.raises(EdgekwsError, match=re.escape(message)):
        synthesize_dataset(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()          # nothing written on a bad argument


def test_refuses_non_empty_folder_and_force_replaces(tmp_path):
    out = tmp_path / "ds"
    synthesize_dataset(out, "en", words="yes,no", speakers=2, unknown_per_speaker=0,
                       noise_seconds=0, jobs=1, world=0)
    with pytest.raises(DatasetError, match="not empty"):
        synthesize_dataset(out, "en", words="yes", speakers=1, noise_seconds=0)
    (out / "my_notes.txt").write_text("keep me")
    synthesize_dataset(out, "en", words="yes", speakers=1, unknown_per_speaker=0,
                       noise_seconds=0, jobs=1, overwrite=True, world=0)
    wavs = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert wavs == ["yes/espk0000_nohash_0.wav"]   # the old dataset's clips are gone
    assert (out / "my_notes.txt").read_text() == "keep me"
    mine = tmp_path / "mine"                       # not a synthesized dataset: --force refuses it
    (mine / "yes").mkdir(parents=True)
    (mine / "yes" / "espk0000_nohash_0.wav").write_bytes(b"my recording")
    with pytest.raises(DatasetError, match=r"no synth_manifest.json, so it is not a synthesized dataset "
                                           r"\(--force only replaces one\)"):   # and no hint to use --force
        synthesize_dataset(mine, "en", words="yes", speakers=1, unknown_per_speaker=0, noise_seconds=0)
    with pytest.raises(DatasetError, match="no synth_manifest.json, so it is not a synthesized dataset"):
        synthesize_dataset(mine, "en", words="yes", speakers=1, unknown_per_speaker=0,
                           noise_seconds=0, jobs=1, overwrite=True, world=0)
    assert (mine / "yes" / "espk0000_nohash_0.wav").read_bytes() == b"my recording"



@pytest.mark.parametrize("bad", [5, None, "yes/a\u0000.wav"])
def test_force_over_a_damaged_manifest_removes_nothing(tmp_path, bad):
    """A listed path that is not a string (or holds a NUL byte) is a one-line error before the first
    file is removed (it used to delete the entries before it, then end in a traceback)."""
    out = tmp_path / "ds"
    (out / "yes").mkdir(parents=True)
    (out / "yes" / "x.wav").write_bytes(b"clip")
    (out / MANIFEST).write_text(json.dumps({"clips": [{"path": "yes/x.wav"}, {"path": bad}]}))
    with pytest.raises(DatasetError, match=r"synth_manifest\.json: unreadable manifest; remove the folder by hand"):
        synthesize_dataset(out, "en", words="yes", speakers=1, unknown_per_speaker=0,
                           noise_seconds=0, jobs=1, overwrite=True, world=0)
    assert (out / "yes" / "x.wav").read_bytes() == b"clip"

def test_cli(tmp_path, capsys):
    from edgekws.cli import main
    out = tmp_path / "c"
    assert main(["synth", "--lang", "en", "--out", str(out), "--words", "go", "--speakers", "2",
                 "--unknown", "0", "--noise-seconds", "0", "--jobs", "1", "--world", "0"]) == 0
    assert sorted(p.name for p in (out / "go").iterdir()) == \
        ["espk0000_nohash_0.wav", "ojt0000_nohash_0.wav"]            # English: both engines by default
    assert main(["synth", "--lang", "en", "--out", str(tmp_path / "d"), "--words", "nope"]) == 2
    assert "unknown word 'nope'" in capsys.readouterr().err
    assert main(["synth", "--lang", "en", "--out", str(tmp_path / "e"), "--words", "go", "--speakers", "2",
                 "--unknown", "0", "--noise-seconds", "0", "--jobs", "1", "--engines", "espeak",
                 "--espeak-variants", "m1"]) == 0
    m = json.loads((tmp_path / "e" / MANIFEST).read_text(encoding="utf-8"))
    assert m["espeak_variants"] == ["m1"]
    assert {s["params"]["voice"].split("+")[1] for s in m["speakers"]} == {"m1"}
    assert main(["synth", "--lang", "en", "--out", str(tmp_path / "f"), "--espeak-variants", "nope"]) == 2
    assert "--espeak-variants: 'nope': unknown variant(s) 'nope'" in capsys.readouterr().err


def test_vocab_writes_the_vocabulary_words_only(tmp_path, capsys):
    from edgekws.cli import main
    from edgekws.synth.words import _UNKNOWN_EN, _UNKNOWN_JA, vocabulary_words

    for lang, unknown in (("en", _UNKNOWN_EN), ("ja", _UNKNOWN_JA)):
        labels = [w.label for w in vocabulary_words(lang)]
        assert len(labels) == len(set(labels)) == 63
        assert not set(labels) & (set(unknown) | set(COMMANDS))   # neither a command nor an unknown word
    out = tmp_path / "v"
    assert main(["synth", "--lang", "en", "--vocab", "--out", str(out), "--speakers", "2", "--jobs", "1"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted(w.label for w in vocabulary_words("en"))   # no unknown words, no noise
    # both engines speak the English vocabulary: eSpeak NG the word, Open JTalk its katakana reading
    assert sorted(p.name for p in (out / "banana").iterdir()) == ["espk0000_nohash_0.wav", "ojt0000_nohash_0.wav"]
    assert json.loads((out / "synth_manifest.json").read_text())["commands"]["banana"] == \
        {"espeak": "banana", "openjtalk": "バナナ"}
    assert main(["synth", "--lang", "en", "--vocab", "--words", "go", "--out", str(tmp_path / "x")]) == 2
    assert "--vocab or --words" in capsys.readouterr().err


def test_vocab_broad_writes_300_frequent_english_words_for_espeak_alone(tmp_path, capsys):
    from edgekws.cli import main
    from edgekws.synth.words import _LABEL_RE, _UNKNOWN_EN, vocabulary_words

    words = vocabulary_words("en", "broad")
    labels = [w.label for w in words]
    assert len(labels) == len(set(labels)) == 300 and all(_LABEL_RE.match(w) for w in labels)
    everyday = {w.label for w in vocabulary_words("en")}
    assert not set(labels) & (set(_UNKNOWN_EN) | set(COMMANDS) | everyday)
    assert not set(labels) & {"know", "now", "goes", "lift", "write", "gone", "own", "stops", "won", "ate"}
    assert all(w.texts == {"espeak": w.label} for w in words)   # no katakana readings
    out = tmp_path / "b"
    assert main(["synth", "--lang", "en", "--vocab", "broad", "--out", str(out), "--speakers", "1",
                 "--jobs", "1"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(labels)
    m = json.loads((out / "synth_manifest.json").read_text())
    assert m["engines"] == ["espeak"] and len(m["clips"]) == 300 and not m["noise"]
    assert {c["kind"] for c in m["clips"]} == {"command"}   # no unknown words
    assert main(["synth", "--lang", "ja", "--vocab", "broad", "--out", str(tmp_path / "j")]) == 2
    assert "--vocab broad: English words only (give --lang en)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--lang", "en", "--vocab", "wide", "--out", str(tmp_path / "w")])
    assert "invalid choice: 'wide' (choose from 'everyday', 'pairs', 'broad')" in capsys.readouterr().err
    assert not (tmp_path / "j").exists() and not (tmp_path / "w").exists()


def test_vocab_pairs_each_engine_says_the_words_it_can_tell_apart(tmp_path):
    """--vocab pairs: 78 minimal-pair words; a word with a katakana reading is said by both engines'
    speakers, a word without one (fry: フライ is fly too) by eSpeak NG's alone, in one run."""
    from edgekws.cli import main
    from edgekws.synth.words import _UNKNOWN_EN, vocabulary_words

    words = vocabulary_words("en", "pairs")
    labels = {w.label for w in words}
    assert len(words) == len(labels) == 78
    assert not labels & (set(_UNKNOWN_EN) | set(COMMANDS) | {w.label for w in vocabulary_words("en")}
                         | {w.label for w in vocabulary_words("en", "broad")})
    kata = [w.texts["openjtalk"] for w in words if "openjtalk" in w.texts]
    assert len(kata) == len(set(kata)) == 52                    # each reading names one word
    out = tmp_path / "p"
    assert main(["synth", "--lang", "en", "--vocab", "pairs", "--out", str(out), "--speakers", "2",
                 "--jobs", "1"]) == 0
    assert sorted(p.name for p in (out / "fly").iterdir()) == ["espk0000_nohash_0.wav", "ojt0000_nohash_0.wav"]
    assert sorted(p.name for p in (out / "fry").iterdir()) == ["espk0000_nohash_0.wav"]
    m = json.loads((out / "synth_manifest.json").read_text())
    assert m["engines"] == ["espeak", "openjtalk"] and len(m["clips"]) == 78 + 52
    assert m["commands"]["fry"] == {"espeak": "fry"} and m["commands"]["fly"] == {"espeak": "fly", "openjtalk": "フライ"}
    one = tmp_path / "e"   # one engine named: its speakers say every word it has a text for
    assert main(["synth", "--lang", "en", "--vocab", "pairs", "--engines", "espeak", "--out", str(one),
                 "--speakers", "1", "--jobs", "1"]) == 0
    assert len(json.loads((one / "synth_manifest.json").read_text())["clips"]) == 78


def test_missing_engine_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)     # import now fails
    monkeypatch.setattr(espeak, "_variants", None)
    with pytest.raises(MissingDependencyError, match=re.escape('pip install "edgekws[synth]"')):
        synthesize_dataset(tmp_path / "m", "en", speakers=1)
    from edgekws.synth import openjtalk
    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)
    monkeypatch.setattr(openjtalk, "_module", None)
    with pytest.raises(MissingDependencyError, match="edgekws\\[synth\\]"):
        synthesize_dataset(tmp_path / "m", "ja", speakers=1, engines="openjtalk")


def test_espeak_is_a_pure_function_of_its_arguments():
    # breathy Klatt voice (noise from rand()) and flutter state both must not leak between calls
    a, sr = espeak.synthesize("yes", "en-us+caleb", 150, 50, 50)
    espeak.synthesize("another word", "en+f3", 200, 70, 30)
    b, _ = espeak.synthesize("yes", "en-us+caleb", 150, 50, 50)
    assert sr == 22050 and a.dtype == np.int16 and a.size > 2000 and np.array_equal(a, b)
    with pytest.raises(EdgekwsError, match="variant"):
        espeak.synthesize("yes", "en+nosuchvariant")


def test_long_word_is_sped_up_to_fit():
    spk = Speaker("espk0000", "espeak", {"voice": "en-us", "rate": 80, "pitch": 50, "prange": 50})
    speech, used = speak_16k(spk, "internationalisation", dict(spk.params))
    assert speech.dtype == np.float32 and len(speech) <= MAX_SPEECH
    assert used["rate"] > 80 and np.isclose(np.abs(speech).max(), 1.0)


def test_speakers_are_distinct_and_reproducible():
    variants = espeak.variants()
    a = make_speakers("en", 120, ("espeak",), 3, variants)
    assert a == make_speakers("en", 120, ("espeak",), 3, variants)
    assert len({s.params["voice"].split("+")[1] for s in a[:len(variants)]}) == len(variants)
    assert len({s.params["voice"].split("+")[0] for s in a}) == 8          # all accents used
    ojt = make_speakers("ja", 60, ("openjtalk",), 3)
    grid = {(round(s.params["half_tone"]), round(s.params["alpha"], 2)) for s in ojt}
    assert len(grid) >= 40
    two = make_speakers("ja", 60, ("openjtalk",), 3, ojt_voices=("mei", "m001"))
    assert two[0::2] == ojt[0::2] and [s.params for s in two[0::2]] == [s.params for s in ojt[0::2]]
    m001 = [s.params for s in two[1::2]]
    assert all(p["voice"] == "m001" and -4 <= p["half_tone"] <= 7 for p in m001)
    assert min(p["half_tone"] for p in m001) < 0 < max(p["half_tone"] for p in m001) - 5   # both halves
    six = make_speakers("ja", 60, ("openjtalk",), 3, ojt_voices=openjtalk.VOICES)
    assert [s.params.get("voice", "mei") for s in six[:7]] == [*openjtalk.VOICES, "mei"]
    assert six[0::6] == ojt[0::6] and [s.params for s in six[1::6]] == m001[0::3]    # M001's draws kept
    styles = [s.params for s in six if s.params.get("voice", "").startswith("mei_")]
    assert len(styles) == 40 and all(-11 <= p["half_tone"] <= 4 for p in styles)      # Mei's pitch ranges


def test_japanese_commands_spoken_texts():
    words = command_words("ja")
    assert [w.label for w in words] == ["yes", "no", "up", "down", "left", "right", "on", "off",
                                        "stop", "go"]
    assert " ".join(w.text("openjtalk") for w in words) == \
        "はい いいえ うえ した ひだり みぎ オン オフ とまれ すすめ"
    en = command_words("en")
    assert " ".join(w.text("openjtalk") for w in en) == \
        "イエス ノー アップ ダウン レフト ライト オン オフ ストップ ゴー"


def test_noise_colours():
    rng = np.random.default_rng(0)
    n = 16000 * 4

    def low_high_ratio(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(n, 1 / 16000)
        return p[(f > 100) & (f < 400)].mean() / p[(f > 3000) & (f < 6000)].mean()

    w, pk, br = noise.white(n, rng), noise.pink(n, rng), noise.brown(n, rng)
    assert 0.7 < low_high_ratio(w) < 1.4
    assert 5 < low_high_ratio(pk) < 40            # 1/f: ~15x over these bands
    assert low_high_ratio(br) > 100               # 1/f²
    h = noise.hum(n, rng)
    spec = np.abs(np.fft.rfft(h))
    assert abs(np.fft.rfftfreq(n, 1 / 16000)[spec.argmax()] - 50.0) < 1.0
    for x in (w, pk, br, h):
        assert x.dtype == np.float32 and x.shape == (n,) and np.isclose(np.abs(x).max(), 0.5)
    assert noise.babble([], 100, rng).shape == (100,)
    assert noise.white(0, rng).shape == (0,)


def _sigint_ignored(_job):
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_synth_workers_leave_ctrl_c_to_the_parent():
    """Ctrl-C reaches the whole process group: workers ignore it (each printed a KeyboardInterrupt
    traceback), and the parent stops them."""
    from edgekws.synth.generator import _run_all

    assert _run_all([0, 1, 2], jobs=2, progress=False, fn=_sigint_ignored) == [True, True, True]

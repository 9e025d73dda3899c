"""The leave-one-engine-out benchmark (edgekws.voices): the split by engine, the held-out noises,
the noisy test sets, enrollment picks and the table, on a tiny two-engine synthesized dataset."""

import json

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
pytest.importorskip("pyopenjtalk")

from edgekws.data import load_dataset  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.features import FeatureConfig  # noqa: E402
from edgekws.synth import synthesize_dataset  # noqa: E402
from edgekws.voices import (benchmark, engine_of, engine_view, format_table, noise_names,  # noqa: E402
                            pick_enrollment, held_out_sets)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """English yes/no from 4 eSpeak NG and 3 Open JTalk speakers (katakana), with noise files."""
    out = tmp_path_factory.mktemp("voices") / "en"
    synthesize_dataset(out, "en", words="yes,no", speakers=7, engines="espeak,openjtalk", seed=3, jobs=1,
                       unknown_per_speaker=1, noise_seconds=2.0)
    return out


def test_engine_of_prefix():
    assert engine_of("espk0012") == "espeak"
    assert engine_of("ojt0000") == "openjtalk"
    with pytest.raises(EdgekwsError):
        engine_of("alice")


def test_test_noises_are_never_training_noises():
    for train, test in (("espeak", "openjtalk"), ("openjtalk", "espeak")):
        tr, te = noise_names(train, test)
        assert not set(tr) & set(te)
        assert f"babble_{train}" in tr and f"babble_{test}" in te
        assert "pink_noise" in te and f"babble_{test}" not in tr


def test_views_split_by_engine(both, tmp_path):
    tr, te = noise_names("espeak", "openjtalk")
    a = load_dataset(engine_view(both, tmp_path / "a", "espeak", tr), ["yes", "no"])
    b = load_dataset(engine_view(both, tmp_path / "b", "openjtalk", te), ["yes", "no"])
    assert {c.speaker[:4] for c in a.clips} == {"espk"}
    assert {c.speaker[:3] for c in b.clips} == {"ojt"}
    assert sorted(p.stem for p in a.noise_files) == sorted(tr)
    assert sorted(p.stem for p in b.noise_files) == sorted(te)
    assert len(a.clips) + len(b.clips) == len(load_dataset(both, ["yes", "no"]).clips)
    val = {c.speaker for c in a.clips if c.split == "val"}
    assert not val & {c.speaker for c in a.clips if c.split == "train"}   # a speaker in one split only


def test_views_name_a_dataset_without_the_engine_or_with_own_recordings(both, tmp_path):
    import shutil

    tr, te = noise_names("espeak", "openjtalk")
    a = engine_view(both, tmp_path / "a", "espeak", tr)   # eSpeak NG voices only
    with pytest.raises(EdgekwsError, match=r"a: no clips of openjtalk voices \(speaker ids ojt…\); eval-voices "
                                           r"needs a dataset synthesized with both engines"):
        engine_view(a, tmp_path / "b", "openjtalk", te)
    shutil.copyfile(next((a / "yes").iterdir()), a / "yes" / "alice_nohash_0.wav")
    with pytest.raises(EdgekwsError, match=r"alice_nohash_0.wav: speaker 'alice' is not a synthesized voice"):
        engine_view(a, tmp_path / "c", "espeak", tr)


def test_noisy_sets_change_words_only(both, tmp_path):
    _, te = noise_names("espeak", "openjtalk")
    view = engine_view(both, tmp_path / "t", "openjtalk", te)
    sets = held_out_sets(view, FeatureConfig(), seed=1, cache_dir=None)
    assert set(sets) == {"clean", "pink 10dB", "babble 10dB"}
    x0, y0 = sets["clean"]
    words = y0 != 0                                        # label 0 is _silence_
    for name in ("pink 10dB", "babble 10dB"):
        x, y = sets[name]
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(x[~words], x0[~words])
        assert np.mean(np.any(x[words] != x0[words], axis=(1, 2))) == 1.0
    again = held_out_sets(view, FeatureConfig(), seed=1, cache_dir=None)
    np.testing.assert_array_equal(again["babble 10dB"][0], sets["babble 10dB"][0])


def test_enrollment_pick(both, tmp_path):
    view = engine_view(both, tmp_path / "e", "openjtalk", [])
    picked = pick_enrollment(view, 2, seed=0)
    assert picked == pick_enrollment(view, 2, seed=0)
    folders = [p.split("/")[0] for p in picked]
    assert folders.count("yes") == 2 and folders.count("no") == 2
    assert len(folders) == 6                               # + 2 unknown words
    assert all(p.split("/")[1].startswith("ojt") for p in picked)


def test_benchmark_table(both, tmp_path):
    res = benchmark({"en": both}, tmp_path / "w", directions=(("espeak", "openjtalk"),), arch="dscnn-s",
                    epochs=1, enroll=2, enroll_noisy=1, voice_search=1, log=lambda *a: None)
    run = res["runs"][0]
    assert (run["lang"], run["train"], run["test"]) == ("en", "espeak", "openjtalk")
    assert set(run["float"]) == {"clean", "pink 10dB", "babble 10dB"}
    assert all(0.0 <= v["accuracy"] <= 1.0 for v in run["float"].values())
    enrolled = run["enroll"]
    assert enrolled["clips"] == 6 and enrolled["noisy_copies"] == 1   # 2 yes, 2 no, 2 unknown (+ a noisy copy each)
    assert enrolled["after_int8"]["clean"]["n"] == enrolled["before_int8"]["clean"]["n"] < run["float"]["clean"]["n"]
    # voice search: the held-out sets as "float", and the training engine's own validation clips
    assert run["voice_search"] == 1 and set(run["float_search"]) == set(run["float"])
    assert run["float_search"]["clean"]["n"] == run["float"]["clean"]["n"]
    from edgekws.bundle import Bundle

    trained = Bundle.load(tmp_path / "w" / "en" / "seed0" / "model-espeak-to-openjtalk").manifest["training"]
    assert run["val_search"]["n"] == trained["n_val"]          # the validation clips as training drew them
    own = run["val_search"]   # the tiny set may have no validation speaker of the training engine: None
    assert own["plain"]["accuracy"] == (None if run["val_accuracy"] is None else pytest.approx(run["val_accuracy"], abs=1e-6))
    assert all(v is None or 0 <= v <= 1 for m in ("plain", "search") for v in own[m].values())
    table = format_table(res).splitlines()
    assert table[0].startswith("| lang | train → test | in-engine val | clean | babble 10dB | pink 10dB | clean commands "
                               "→ `_unknown_` | clean commands, top-1 among commands | commands sure (1% of unknown "
                               "words): own validation → clean | clean, voice search ±1 | "
                               "own validation: plain → search | own `_unknown_` recall: plain → search | int8 clean: ")
    clean = run["float"]["clean"]
    assert f"| {100 * clean['to_unknown']:.1f} | {100 * clean['commands_top1']:.1f} |" in table[2]
    # sure: of the held-out clean clips, and of the training engine's own validation clips (None without any)
    assert 0 <= clean["sure"] <= 1 and (run["own_sure"] is None) == (run["val_search"]["n"] == 0)
    own_cell = "n/a" if run["own_sure"] is None else f"{100 * run['own_sure']:.1f}"
    assert f"| {own_cell} → {100 * clean['sure']:.1f} |" in table[2]
    old = {**run, "float": {k: {"accuracy": v["accuracy"], "commands": v["commands"], "n": v["n"]}
                            for k, v in run["float"].items()}}   # saved before the split existed
    assert "→ `_unknown_`" not in format_table({"runs": [old]}).splitlines()[0]
    assert table[2].startswith("| en | eSpeak NG → Open JTalk | ")
    json.dumps(res)
    # a training engine without a validation speaker (a small set: the hash rule gave it none) has no
    # in-engine validation figure: "n/a" in the table, left out of the mean over seeds
    no_val = {**run, "val_accuracy": None}
    assert "| en | eSpeak NG → Open JTalk | n/a |" in format_table({"runs": [no_val]})
    assert "| en | eSpeak NG → Open JTalk | 50.0 |" in format_table({"runs": [no_val, {**run, "seed": 1,
                                                                                    "val_accuracy": 0.5}]})


def test_accuracy_splits_the_command_errors():
    from edgekws.voices import _accuracy

    class Fixed:   # logits as given: _silence_, _unknown_, two commands
        def logits_features(self, x):
            return x

    logits = np.array([[5, 0, 0, 0],     # silence, right
                       [0, 5, 0, 0],     # unknown, right
                       [0, 5, 3, 1],     # command 2 taken for unknown; its best command logit is right
                       [0, 5, 1, 3],     # command 2 taken for unknown; heard as command 3 among commands
                       [0, 0, 4, 1],     # command 2, right
                       [0, 0, 0, 4]], np.float32)   # command 3, right
    y = np.array([0, 1, 2, 2, 2, 3])
    r = _accuracy(Fixed(), {"clean": (logits, y), "no commands": (logits[:2], y[:2])})
    # sure: the one unknown-word clip's surest command has 1 / (3 + e^5); both right commands are above it
    assert r["clean"] == {"accuracy": 4 / 6, "commands": 2 / 4, "to_unknown": 2 / 4, "commands_top1": 3 / 4,
                          "sure": 2 / 4, "n": 6}
    assert r["no commands"] == {"accuracy": 1.0, "commands": None, "to_unknown": None, "commands_top1": None,
                                "sure": None, "n": 2}


def test_sure_share_lets_through_one_percent_of_the_unknown_words():
    from edgekws.voices import sure_share

    def row(p_cmd2, p_cmd3):   # logits of a probability vector: _silence_, _unknown_, command 2, command 3
        rest = (1 - p_cmd2 - p_cmd3) / 2
        return np.log([rest, rest, p_cmd2, p_cmd3])

    surest = np.linspace(0.05, 0.6, 200)                     # 200 unknown words: their surest command
    unknown = [row(p, 0.01) if i % 2 else row(0.01, p) for i, p in enumerate(surest)]
    t = surest[-3]                # 1% of 200 = 2 unknown words may pass: the third largest is the bar
    commands = [row(0.9, 0.01),          # command 2, right and sure
                row(t, 0.01),            # command 2, right, at the bar: not above it
                row(surest[-1], 0.01),   # right, at the surest unknown word's probability: above the bar
                row(0.3, 0.01),          # right but under the bar
                row(0.01, 0.9)]          # command 2 heard as command 3: wrong, however sure
    logits = np.array(unknown + commands)
    y = np.array([1] * 200 + [2] * 5)
    assert sure_share(logits, y) == 2 / 5
    assert sure_share(logits, y, unknown_share=0.0) == 1 / 5      # above every unknown word
    assert sure_share(logits[:200], y[:200]) is None               # no commands
    assert sure_share(logits[200:], y[200:]) is None               # no unknown words: no bar
    few = np.concatenate([logits[:3], logits[200:]])               # 3 unknown words: 1% lets none through
    assert sure_share(few, np.array([1] * 3 + [2] * 5)) == sure_share(few, np.array([1] * 3 + [2] * 5), 0.0)


def test_table_adds_the_sure_column():
    def run(seed, sure, own):
        clean = {"accuracy": 0.5, "commands": 0.4, "n": 10}
        if sure is not None:
            clean["sure"] = sure
        return {"lang": "ja", "train": "espeak", "test": "openjtalk", "seed": seed, "val_accuracy": 0.9,
                "float": {"clean": clean}, "own_sure": own}

    table = format_table({"runs": [run(0, 0.2, 0.9), run(1, 0.3, 0.8)]}).splitlines()
    assert table[0].endswith("| commands sure (1% of unknown words): own validation → clean |")
    assert table[2].endswith("| 85.0 → 25.0 |")                        # the means over the two seeds
    assert format_table({"runs": [run(0, 0.2, None)]}).splitlines()[2].endswith("| n/a → 20.0 |")
    assert "sure" not in format_table({"runs": [run(0, None, None)]})   # results saved before session 45


def test_table_splits_the_clean_errors_and_says_na_without_them():
    def run(seed, lang, split):
        clean = {"accuracy": 0.5, "commands": 0.4, "n": 10}
        if split:
            clean.update(to_unknown=split[0], commands_top1=split[1])
        return {"lang": lang, "train": "espeak", "test": "openjtalk", "seed": seed, "val_accuracy": 0.9,
                "float": {"clean": clean}}

    table = format_table({"runs": [run(0, "ja", (0.123, 0.456)), run(1, "ja", (0.321, 0.654)),
                                   run(0, "en", (0.1, 0.2)), run(1, "en", None)]}).splitlines()
    assert table[0] == ("| lang | train → test | in-engine val | clean | clean commands → `_unknown_` | "
                        "clean commands, top-1 among commands |")
    assert table[2].endswith("| 22.2 | 55.5 |")                 # the means over the two seeds, in order
    assert table[3].endswith("| n/a | n/a |")                    # a seed saved before the split existed
    assert "→ `_unknown_`" not in format_table({"runs": [run(0, "ja", None)]}).splitlines()[0]


def test_table_adds_the_voice_search_columns():
    def run(seed, lang, search):
        r = {"lang": lang, "train": "espeak", "test": "openjtalk", "seed": seed, "val_accuracy": 0.9,
             "float": {"clean": {"accuracy": 0.5, "commands": 0.4, "n": 10}}}
        if search:
            r.update(voice_search=2, float_search={"clean": {"accuracy": search[0]}},
                     val_search={"plain": {"accuracy": 0.99, "unknown_recall": 0.9},
                                 "search": {"accuracy": search[1], "unknown_recall": search[2]}})
        return r

    table = format_table({"runs": [run(0, "ja", (0.8, 0.98, 0.8)), run(1, "ja", (0.9, 0.96, 0.7)),
                                   run(0, "en", None)]}).splitlines()
    assert table[0].endswith("| clean, voice search ±2 | own validation: plain → search | "
                             "own `_unknown_` recall: plain → search |")
    assert table[2].endswith("| 85.0 | 99.0 → 97.0 | 0.90 → 0.75 |")    # means over the two seeds
    assert table[3].endswith("| n/a | n/a | n/a |")                      # a run without the search
    assert "voice search" not in format_table({"runs": [run(0, "ja", None)]})
    rated = {**run(0, "ja", (0.8, 0.98, 0.8)), "rate_search": 1}
    assert "| clean, voice search ±2, rate search 1 |" in format_table({"runs": [rated]}).splitlines()[0]
    rate_only = {**rated, "voice_search": 0}
    assert "| clean, rate search 1 |" in format_table({"runs": [rate_only]}).splitlines()[0]
    mixed = format_table({"runs": [rated, run(1, "ja", (0.9, 0.96, 0.7))]}).splitlines()[0]
    assert "voice search" not in mixed          # seeds searched differently: no shared column


def test_command_line(capsys):
    import argparse

    from edgekws.voices import register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    args = sub.choices["eval-voices"].parse_args(["--work", "w", "--seeds", "0,1", "--enroll", "3"])
    assert (args.seeds, args.enroll, args.snr) == ((0, 1), 3, 10.0)
    with pytest.raises(EdgekwsError, match="--ja"):
        args.func(args)


def test_command_line_passes_training_levers(monkeypatch, tmp_path):
    import argparse

    import edgekws.voices as voices

    seen = {}
    monkeypatch.setattr(voices, "benchmark", lambda datasets, work, **kw: seen.update(kw) or {"runs": []})
    monkeypatch.setattr(voices, "format_table", lambda res: "")
    sub = argparse.ArgumentParser().add_subparsers()
    voices.register(sub)
    args = sub.choices["eval-voices"].parse_args(["--ja", "d", "--work", str(tmp_path), "--time-warp", "0.8",
                                                  "--freq-shift", "0.25", "--tilt", "0.75", "--arch", "dscnn-w", "--enroll", "3",
                                                  "--enroll-noisy", "2", "--voice-search", "2", "--consistency", "2"])
    assert args.func(args) == 0
    assert seen["voice_search"] == 2 and seen["consistency"] == 2.0
    assert (seen["time_warp"], seen["arch"], seen["seeds"]) == (0.8, "dscnn-w", (0,)) and "epochs" not in seen
    assert (seen["freq_shift"], seen["tilt"]) == (0.25, 0.75)
    assert (seen["enroll"], seen["enroll_noisy"]) == (3, 2)


def test_a_closed_pipe_keeps_the_json_file(monkeypatch, tmp_path):
    """`eval-voices … --json F | head`: the table's print met the closed pipe before F was written, so
    the hours of trainings left no JSON; F is now written first."""
    import argparse
    import sys

    import edgekws.voices as voices
    from test_cli_args import ClosedPipe

    monkeypatch.setattr(voices, "benchmark", lambda datasets, work, **kw: {"runs": [], "seeds": [0]})
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    sub = argparse.ArgumentParser().add_subparsers()
    voices.register(sub)
    out = tmp_path / "r.json"
    args = sub.choices["eval-voices"].parse_args(["--ja", "d", "--work", str(tmp_path / "w"), "--json", str(out)])
    with pytest.raises(BrokenPipeError):   # edgekws.cli.main turns it into a quiet exit 0
        args.func(args)
    assert json.loads(out.read_text()) == {"runs": [], "seeds": [0]}


def test_every_dataset_and_the_json_are_checked_before_any_training(both, tmp_path, monkeypatch, capsys):
    """A missing --en was found only after both Japanese trainings (hours), and a --json under a file
    after the whole benchmark."""
    import edgekws.voices as voices
    from edgekws.cli import main

    monkeypatch.setattr(voices, "run_direction", lambda *a, **k: pytest.fail("trained before the checks"))
    with pytest.raises(EdgekwsError, match=f"--en {tmp_path / 'nope'}: .*no such dataset folder"):
        voices.benchmark({"ja": both, "en": tmp_path / "nope"}, tmp_path / "w", log=lambda *a: None)
    english = tmp_path / "english"                 # --ja and --en mixed up: refused before any training
    english.mkdir()
    (english / "synth_manifest.json").write_text('{"lang": "en"}')
    assert main(["eval-voices", "--ja", str(english), "--work", str(tmp_path / "w1")]) == 2
    assert (f"--ja {english}: synthesized in English (synth_manifest.json lang 'en'); give it as --en"
            in capsys.readouterr().err)
    (tmp_path / "afile").write_text("x")
    assert main(["eval-voices", "--en", str(both), "--work", str(tmp_path / "w2"),
                 "--json", str(tmp_path / "afile" / "r.json")]) == 2
    assert (f"--json {tmp_path / 'afile' / 'r.json'}: cannot be written ({tmp_path / 'afile'} is a file, not a "
            "folder)") in capsys.readouterr().err
    # an existing file that is not an earlier result is not overwritten (it was, after the trainings)
    (tmp_path / "notes.json").write_text('{"my": "notes"}')
    assert main(["eval-voices", "--en", str(both), "--work", str(tmp_path / "w3"),
                 "--json", str(tmp_path / "notes.json")]) == 2
    assert "notes.json: exists and is not an earlier result" in capsys.readouterr().err
    assert (tmp_path / "notes.json").read_text() == '{"my": "notes"}'
    # training options too (--freq-shift 2 was refused only when the first training started)
    for flag, value, message in (("--freq-shift", "2", "--freq-shift: must be a fraction in [0, 1], got 2.0"),
                                 ("--epochs", "0", "--epochs: must be a positive integer, got 0"),
                                 ("--arch", "nope", "unknown architecture 'nope'")):
        assert main(["eval-voices", "--en", str(both), "--work", str(tmp_path / "w6"), flag, value]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "w6").exists()
    # --enroll K must leave test clips of every class (it reported NaN accuracies after training)
    with pytest.raises(EdgekwsError, match=r"--enroll 3: --en .* has 3 Open JTalk clip\(s\) of .*, which leaves "
                                           r"none to test; give --enroll 2 or less"):
        voices.benchmark({"en": both}, tmp_path / "w4", enroll=3, log=lambda *a: None)
    import shutil   # with test_datasets, the enrollment and test clips are the test data's: they count

    fewer = tmp_path / "fewer"
    shutil.copytree(both, fewer)
    for wav in sorted((fewer / "yes").glob("ojt*.wav"))[2:]:
        wav.unlink()
    with pytest.raises(EdgekwsError, match=r"--enroll 2: --en .*fewer has 2 Open JTalk clip\(s\) of 'yes'"):
        voices.benchmark({"en": both}, tmp_path / "w5", enroll=2, test_datasets={"en": fewer}, log=lambda *a: None)

"""tools/judge_voices.py: the judging set of Flite/Festival voices. Synthesis needs those programs
(not installed in CI); the scoring is tested on a small stand-in set, by label name."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgekws.audio import write_wav  # noqa: E402
from edgekws.bundle import Bundle  # noqa: E402
from edgekws.evaluate import load_model  # noqa: E402
from edgekws.models import architecture_dict, random_model  # noqa: E402
from edgekws.synth import noise  # noqa: E402
from edgekws.synth.words import COMMANDS  # noqa: E402
from edgekws.voices import held_out_sets  # noqa: E402
from quant_helpers import FC  # noqa: E402
from retrain_helpers import tone_dataset  # noqa: E402
from tool_helpers import load_tool  # noqa: E402


def _tool():
    return load_tool("judge_voices")


def _judge_set(root: Path) -> Path:
    tone_dataset(root, words=COMMANDS, speakers=2, takes=1, unknown=("zeta",))
    for f in root.rglob("spk0*_nohash_0.wav"):
        voice = "flite-kal" if "spk00" in f.name else "festival-ked-diphone"
        f.rename(f.with_name(f.name.replace(f.name.split("_")[0], f"{voice}-0")))
    next((root / "no").glob("*.wav")).unlink()                  # fewer "no" than "yes" clips
    rng = np.random.default_rng(0)
    (root / "_background_noise_" / "noise.wav").unlink()
    write_wav(root / "_background_noise_" / "pink.wav", noise.pink(32000, rng))
    write_wav(root / "_background_noise_" / "babble.wav", noise.white(32000, rng))
    return root


def _bundle(path: Path, order: list[int]) -> Bundle:
    """A random 12-class model that says "yes" to everything, its classes listed in `order` (rows
    permuted to match)."""
    labels = ["_silence_", "_unknown_", *COMMANDS]
    model = random_model("dscnn-s", 12, 5)
    state = model.state_dict()
    state["classifier.bias"][2] += 1000.0
    state["classifier.weight"] = state["classifier.weight"][order]
    state["classifier.bias"] = state["classifier.bias"][order]
    b = Bundle.create(path, labels=[labels[i] for i in order], feature_config=FC.to_dict(),
                      architecture=architecture_dict("dscnn-s", 12), training={"seed": 5})
    b.write_npz("weights.npz", state)
    return b


def test_judge_scores_by_label_name_and_per_voice(tmp_path, capsys):
    tool = _tool()
    data = _judge_set(tmp_path / "judge")
    order = list(range(12))
    swapped = order[:2] + [3, 2] + order[4:]                     # "no" before "yes"
    a, b = _bundle(tmp_path / "a", order), _bundle(tmp_path / "b", swapped)
    res = tool.judge(data, [a.path, b.path], tmp_path / "j.json")
    # the same network with its classes listed in another order is the same judge result
    for key in ("clean", "babble 10dB", "pink 10dB", "voices"):
        assert res[0][key] == res[1][key]
    assert set(res[0]["voices"]) == {"flite-kal", "festival-ked-diphone"}
    x, y = held_out_sets(data, FC, seed=0)["clean"]
    assert res[0]["clean"] == 2 / len(y)                            # the 2 "yes" clips are right
    km = load_model(a)
    assert res[0]["clean"] == float(np.mean(km.engine.logits_features(x).argmax(1) == y))   # same label order
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| model | clean | babble 10 dB | pink 10 dB | festival-ked-diphone")
    assert (tmp_path / "j.json").is_file()


def test_missing_programs_are_named(monkeypatch, tmp_path, capsys):
    tool = _tool()
    monkeypatch.setattr(tool.shutil, "which", lambda name: None)
    assert tool.main(["--out", str(tmp_path / "j")]) == 2
    err = capsys.readouterr().err
    assert "flite, text2wave not found; apt-get install --no-install-recommends flite festival" in err
    assert not (tmp_path / "j").exists()


def test_mistakes_are_one_line_errors_and_a_failing_voice_leaves_nothing(monkeypatch, tmp_path, capsys):
    import subprocess

    tool = _tool()
    for argv, message in ((["--out", "x", "--variants", "-3"], "--variants must be at least 1, got -3"),
                          (["--out", "x", "--unknown", "1000"], "--unknown must be in [1, "),
                          (["--out", "x", "--seed", "-1"], "--seed must be >= 0")):
        with pytest.raises(SystemExit) as e:
            tool.main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert tool.main(["--judge", str(tmp_path / "nope"), str(tmp_path / "m")]) == 2
    assert f"judge_voices: error: {tmp_path / 'nope'}: no such dataset folder" in capsys.readouterr().err
    data = _judge_set(tmp_path / "judge")
    a = _bundle(tmp_path / "a", list(range(12)))
    assert tool.main(["--judge", str(data), str(a.path), "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path}: is a folder" in capsys.readouterr().err
    # a voice that fails half-way: an error naming the command, and no half-made set to refuse next time
    monkeypatch.setattr(tool.shutil, "which", lambda name: "/usr/bin/" + name)
    calls = []

    def speak(engine, *a, **k):
        calls.append(engine)
        if len(calls) > 3:
            raise subprocess.CalledProcessError(1, ["text2wave", "-eval", "(voice_ked_diphone)"])
        return np.zeros(4000, np.float32) + 0.1

    monkeypatch.setattr(tool, "speak", speak)
    assert tool.main(["--out", str(tmp_path / "set"), "--variants", "1"]) == 2
    assert "judge_voices: error: `text2wave -eval (voice_ked_diphone)` failed (exit 1)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if "set" in p.name) == []

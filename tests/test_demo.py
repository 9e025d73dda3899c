"""`edgekws demo --quick`: the whole story runs end to end, and a rerun resumes (every stage skipped)."""

import json

import pytest

pytest.importorskip("espeakng_loader")
pytest.importorskip("pyopenjtalk")

from edgekws.cli import main  # noqa: E402


def test_quick_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    work = tmp_path / "demo"
    assert main(["demo", "--quick", "--workdir", str(work)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((work / "summary.json").read_text())
    assert summary["parity"]["onnx_equal"] and summary["parity"]["c_equal"]
    assert summary["parity"]["clips"] > 0
    # the model learned something: well above the 1/12 of chance on unseen speakers
    assert summary["parity"]["float_accuracy"] > 0.3
    assert set(summary["retrain_shots"]) == {"1", "3", "5"}
    for name in ("manifest.json", "weights.npz", "int8.npz", "model.onnx", "model.int8.onnx", "c/model.bin",
                 "c/ekws_model_data.c", "c/ekws_model_data.h"):
        assert (work / "models" / "ja" / name).is_file(), name
    assert "edgekws demo summary (quick)" in out and "int8 parity numpy=onnx=C         yes" in out
    # few validation speakers: the demo tunes one threshold for every command (shrink 0)
    stream = json.loads((work / "models" / "ja" / "manifest.json").read_text())["stream"]
    assert stream["tuning"]["shrink"] == 0.0
    assert set(stream["thresholds"].values()) == {stream["tuning"]["shared_threshold"]}

    assert main(["demo", "--quick", "--workdir", str(work)]) == 0
    again = capsys.readouterr().out
    for stage in ("synth ja", "train", "quantize", "synth en"):
        assert f"[demo] {stage}: " in again and "skipped" in again.split(f"[demo] {stage}: ")[1].splitlines()[0]
    assert json.loads((work / "summary.json").read_text())["retrain_shots"] == summary["retrain_shots"]


def test_the_workdir_is_the_demos_own(tmp_path, capsys):
    """A rerun continues only the same run; a folder of other files is never used."""
    from edgekws.demo import MARKER, claim_workdir
    from edgekws.errors import EdgekwsError

    work = tmp_path / "w"
    claim_workdir(work, quick=True, seed=0)
    assert json.loads((work / MARKER).read_text()) == {"format": "edgekws-demo", "quick": True, "seed": 0}
    claim_workdir(work, quick=True, seed=0)                       # the same run: fine
    with pytest.raises(EdgekwsError, match=f"--workdir {work}: holds a demo run with --quick, --seed 0; rerun it "
                                           "with the same options to continue it, or choose another --workdir"):
        claim_workdir(work, quick=False, seed=0)
    with pytest.raises(EdgekwsError, match="holds a demo run with --quick, --seed 0"):
        claim_workdir(work, quick=True, seed=5)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.json").write_text("my own summary, keep me")
    assert main(["demo", "--quick", "--workdir", str(mine)]) == 2
    assert (f"--workdir {mine}: holds files that are not an edgekws demo (summary.json); choose an empty or new "
            "folder") in capsys.readouterr().err
    assert (mine / "summary.json").read_text() == "my own summary, keep me" and not (mine / MARKER).exists()
    assert main(["demo", "--quick", "--seed", str(2 ** 63 - 1), "--workdir", str(tmp_path / "s")]) == 2
    assert "--seed must be an integer in [0, 2^63 - 1)" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_an_interrupted_synthesis_is_done_again(tmp_path, monkeypatch):
    """Ctrl-C during synth left data/ja without a manifest, which synth then refused on every rerun."""
    import edgekws.synth as synth
    from edgekws.demo import DemoPlan, stage_synth

    work = tmp_path / "w"
    (work / "data" / "ja" / "yes").mkdir(parents=True)
    (work / "data" / "ja" / "yes" / "espk0000_nohash_0.wav").write_bytes(b"half")
    calls = []
    monkeypatch.setattr(synth, "synthesize_dataset", lambda out, *a, **k: calls.append(out))
    stage_synth(work, "ja", DemoPlan.make(True))
    assert calls == [work / "data" / "ja"] and not (work / "data" / "ja").exists()

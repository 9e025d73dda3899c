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

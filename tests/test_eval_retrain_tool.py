"""tools/eval_retrain.py: the shots table, here without the new language's own model (no ceiling
columns), on a small tone dataset and a random quantized base."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from retrain_helpers import quantized_bundle, tone_dataset  # noqa: E402
from tool_helpers import load_tool  # noqa: E402


@pytest.mark.parametrize("triplet, voice_norm, self_train", [(False, 0, 0), (True, 0, 0), (False, 3, 0.5)])
def test_table_without_the_new_languages_model(tmp_path, capsys, triplet, voice_norm, self_train):
    tool = load_tool("eval_retrain")
    data = tone_dataset(tmp_path / "en", words=("w0", "w1", "w2"), speakers=20, takes=1)
    base = quantized_bundle(tmp_path / "base")               # labels _silence_, _unknown_, w0, w1, w2
    argv = ["--data-en", str(data), "--base-ja", str(base.path), "--shots", "1,all", "--seeds", "2",
            "--epochs", "2", *(["--triplet"] if triplet else []),
            *(["--voice-norm", str(voice_norm)] if voice_norm else []),
            *(["--self-train", str(self_train)] if self_train else [])]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    head = next(line for line in out if line.startswith("| examples per word"))
    assert head == ("| examples per word | retrained head, int8 (min-max) | float32 head |"
                    + (" triplet + CE, int8 |" if triplet else "")
                    + (f" voice-normalized ({voice_norm} clips), int8 (min-max) |" if voice_norm else "")
                    + (f" + self-training ({self_train:g}), int8 (min-max) |" if self_train else "")
                    + (" the same, test speakers cold, int8 (min-max) |" if self_train and voice_norm else "")
                    + " random backbone, int8 |")
    rows = [line for line in out if line.startswith(("| 1 |", "| all |"))]
    assert len(rows) == 2 and all(r.count("|") == head.count("|") for r in rows)
    assert any("test clips of 5 classes (_silence_, _unknown_, w0, w1, w2)" in line for line in out)
    assert any(line.startswith("Voice-normalized: ") for line in out) == bool(voice_norm)
    assert any(line.startswith("Self-training: ") for line in out) == bool(self_train)
    assert any("Cold: the same heads on the test clips as heard" in line for line in out) == bool(self_train and voice_norm)
    for r in rows:   # every cell a percentage, the min-max cells around their mean
        for cell in r.strip("|").split("|")[1:]:
            mean, _, span = cell.strip().partition(" ")
            assert 0 <= float(mean.rstrip("%")) <= 100
            if span:
                lo, hi = (float(v) for v in span.strip("()").split("-"))
                assert lo <= float(mean.rstrip("%")) + 0.05 and float(mean.rstrip("%")) <= hi + 0.05


def test_voice_norm_must_be_a_count(capsys):
    tool = load_tool("eval_retrain")
    with pytest.raises(SystemExit) as e:
        tool.main(["--data-en", "b", "--base-ja", "c", "--voice-norm", "-1"])
    assert e.value.code == 2 and "--voice-norm must be 0 (off) or a number of clips >= 1, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tool.main(["--data-en", "b", "--base-ja", "c", "--self-train", "1.5"])
    assert e.value.code == 2 and "--self-train must be 0 (off) or a fraction in [0.000001, 1], got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tool.main(["--data-en", "b", "--base-ja", "c", "--self-train", "nan"])
    assert e.value.code == 2 and "--self-train must be 0 (off) or a fraction in [0.000001, 1], got nan" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--reverse", "--prepare"])
def test_reverse_and_prepare_need_the_other_language(capsys, flag):
    tool = load_tool("eval_retrain")
    for given, missing in ((["--data-ja", "a"], "--base-en"), (["--base-en", "d"], "--data-ja")):
        with pytest.raises(SystemExit) as e:
            tool.main([*given, "--data-en", "b", "--base-ja", "c", flag])
        assert e.value.code == 2 and f"{flag} needs {missing}" in capsys.readouterr().err


def test_random_backbone_leaves_out_the_whitening(tmp_path):
    """The random-backbone column is the base architecture with random weights; a whitening layer
    (train --vocab) is fitted to trained features, so a random one is left out: the embedding is the pool."""
    import numpy as np

    from edgekws.bundle import Bundle
    from edgekws.quant import quantize_bundle
    from quant_helpers import FC, features, whitened

    tool = load_tool("eval_retrain")
    arch, model = whitened(seed=2)
    b = Bundle.create(tmp_path / "base", labels=["_silence_", "_unknown_", "w0", "w1", "w2"],
                      feature_config=FC.to_dict(), architecture=arch, training={"seed": 2})
    b.write_npz("weights.npz", model.state_dict())
    quantize_bundle(b, features(64, 5), log=lambda *a: None)
    rb = tool.random_backbone(b, features(64, 6), 3)
    assert [q.name for q in rb.layers][-1] == "embedding" and rb.embed_size == 3 * 24   # the pool and its two taps
    np.testing.assert_array_equal(rb.embed(features(4, 7)).shape, (4, 72))

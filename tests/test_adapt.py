"""`edgekws adapt`: BatchNorm statistics re-estimated on unlabeled recordings of a new voice, the
model re-quantized on them; seeded, nothing but the statistics changes, bad input refused."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgekws.adapt import adapt, clip_paths  # noqa: E402
from edgekws.bundle import Bundle  # noqa: E402
from edgekws.cli import main  # noqa: E402
from edgekws.errors import BundleError, EdgekwsError  # noqa: E402
from edgekws.featcache import load_clips  # noqa: E402
from edgekws.features import compute_features  # noqa: E402
from edgekws.quant import Int8Network  # noqa: E402
from quant_helpers import make_bundle  # noqa: E402
from retrain_helpers import tone_dataset  # noqa: E402

quiet = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module")
def base_and_voice(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    base, _ = make_bundle(root / "base")
    voice = tone_dataset(root / "voice", speakers=2, takes=2)     # 16 clips + a noise file (skipped)
    return root, base, voice


def test_only_the_batchnorm_statistics_change_and_int8_follows(base_and_voice, tmp_path):
    _, base, voice = base_and_voice
    new = adapt(base, voice, tmp_path / "a", log=quiet)
    again = Bundle.load(new.path)
    w0, w1 = base.read_npz("weights.npz"), again.read_npz("weights.npz")
    changed = {k for k in w0 if not np.array_equal(w0[k], w1[k])}
    assert changed and all(k.endswith(("running_mean", "running_var")) for k in changed)
    assert again.labels == base.labels and again.manifest["quantization"] and again.has("int8.npz")
    info = again.manifest["training"]["adapted"]
    assert (info["n_clips"], info["seed"]) == (16, 0) and len(clip_paths(voice)) == 16
    # the noise file under _background_noise_ is not a clip, but a cut of it joins the statistics
    # (16 // 11 = 1 example); without it, a cut of white/pink/brown noise does
    bare = tmp_path / "bare"
    for p in clip_paths(voice):
        (bare / p.parent.name).mkdir(parents=True, exist_ok=True)
        (bare / p.parent.name / p.name).write_bytes(p.read_bytes())
    other = adapt(base, bare, tmp_path / "bare-model", log=quiet)
    assert other.manifest["training"]["adapted"]["n_clips"] == 16
    assert other.read_bytes("weights.npz") != new.read_bytes("weights.npz")
    feats = compute_features(load_clips(clip_paths(voice), 16000))
    out = Int8Network(again).logits_int8(feats)
    assert out.shape == (16, len(base.labels)) and out.dtype == np.int8
    # the same call gives the same bits; a seeded subset of 8 gives other statistics
    twin = adapt(base, voice, tmp_path / "b", log=quiet)
    for name in ("weights.npz", "int8.npz"):
        assert new.read_bytes(name) == twin.read_bytes(name)
    part = adapt(base, voice, tmp_path / "c", limit=8, seed=3, log=quiet)
    assert part.manifest["training"]["adapted"]["n_clips"] == 8
    assert part.read_bytes("weights.npz") != new.read_bytes("weights.npz")


def test_stream_thresholds_are_copied_and_said_only_when_the_base_has_them(base_and_voice, tmp_path):
    _, base, voice = base_and_voice
    lines = []
    new = adapt(base, voice, tmp_path / "a", log=lines.append)
    assert "stream" not in new.manifest and "stream thresholds" not in lines[-1]
    tuned, _ = make_bundle(tmp_path / "tuned")
    stream = {"hop_every": 2, "smooth": 2, "refractory": 5, "thresholds": {}}
    tuned.update(stream=stream)
    lines.clear()
    new = adapt(tuned, voice, tmp_path / "b", log=lines.append)
    assert new.manifest["stream"] == stream
    assert lines[-1].endswith(f"(stream thresholds copied from {tuned.path}: re-tune with edgekws eval-stream --tune)")


def test_refusals_name_the_problem(base_and_voice, tmp_path, capsys, monkeypatch):
    root, base, voice = base_and_voice
    few = tmp_path / "few"
    few.mkdir()
    for p in clip_paths(voice)[:3]:
        (few / p.name).write_bytes(p.read_bytes())
    with pytest.raises(EdgekwsError, match=r"few: 3 WAV file\(s\); adapting needs at least 8 recordings"):
        adapt(base, few, tmp_path / "x", log=quiet)
    with pytest.raises(EdgekwsError, match="no such folder of recordings"):
        adapt(base, tmp_path / "nowhere", tmp_path / "x", log=quiet)
    with pytest.raises(EdgekwsError, match="must differ from the model folder"):
        adapt(base, voice, base.path, log=quiet)
    with pytest.raises(EdgekwsError, match=r"--clips: must be an integer >= 8, got 4"):
        adapt(base, voice, tmp_path / "x", limit=4, log=quiet)
    headed, _ = make_bundle(tmp_path / "headed")
    headed.update(head={"file": "head.bin"})
    with pytest.raises(BundleError, match="has a retrained head; adapt the base model, then retrain it"):
        adapt(headed, voice, tmp_path / "x", log=quiet)
    gru, _ = make_bundle(tmp_path / "gru", arch="gru")   # refused before the work (it left a half-written bundle)
    with pytest.raises(EdgekwsError, match="gru: its architecture has layers the int8 pipeline does not support"):
        adapt(gru, voice, tmp_path / "x", log=quiet)
    assert not (tmp_path / "x").exists()
    assert main(["adapt", str(base.path), str(few), "--out", str(tmp_path / "y")]) == 2
    assert "adapting needs at least 8 recordings" in capsys.readouterr().err
    assert main(["adapt", str(base.path), str(voice), "--out", str(tmp_path / "z"), "--clips", "10"]) == 0
    assert "BatchNorm statistics of 10 clip(s)" in capsys.readouterr().out
    # without --clips at most DEFAULT_CLIPS (every clip is in one batch: ~2 MB of memory each), said
    import edgekws.adapt as ad

    lines = []
    monkeypatch.setattr(ad, "DEFAULT_CLIPS", 9)
    adapt(base, voice, tmp_path / "few9", log=lines.append)
    assert lines[0].startswith(f"note: {voice}: 16 recordings; adapting on 9 of them")
    assert "BatchNorm statistics of 9 clip(s)" in lines[-1]
    assert main(["adapt", str(base.path), str(voice), "--out", str(tmp_path / "z")]) == 2   # exists: --force
    assert "already holds a model bundle" in capsys.readouterr().err

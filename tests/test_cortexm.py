"""Cortex-M firmware under QEMU (skipped without arm-none-eabi-gcc / qemu-system-arm): the example
application built for the Cortex-M4F (mps2-an386) and the Cortex-M3 (mps2-an385) prints the same
detections as the Python reference and the host C library and exits with status 0; the project
written by `edgekws export --target cortex-m4` builds .elf/.bin/.hex and runs."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekws.audio import write_wav
from edgekws.bundle import Bundle
from edgekws.cli import main
from edgekws.errors import EdgekwsError
from edgekws.features.signals import speech_like

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm", "make")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="needs gcc-arm-none-eabi and qemu-system-arm")


def _qemu_run():
    spec = importlib.util.spec_from_file_location("qemu_run", ROOT / "tools" / "qemu_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_on_m4f_and_m3_matches_host_and_python(tmp_path, capsys):
    out = tmp_path / "result.json"
    status = _qemu_run().main(["--seconds", "2.5", "--build", str(tmp_path), "--json", str(out)])
    assert status == 0, capsys.readouterr()
    r = json.loads(out.read_text())
    assert r["python"] == r["host_c"] and len(r["python"]) >= 2
    for b in r["boards"]:
        assert b["status"] == 0 and b["match"], b
        assert [list(d) for d in b["detections"]] == [[f, lab, s] for f, lab, s in r["python"]]
        assert b["insn_per_inference"] > r["model_macs"]  # at least one instruction per MAC
        assert (tmp_path / "project" / "build" / b["board"] / "kws.hex").is_file()
    assert {b["core"] for b in r["boards"]} == {"Cortex-M4F", "Cortex-M3"}


@pytest.mark.parametrize("calibration", ["voice_shift", "voice_offset"])
def test_export_target_cortex_m4_builds_and_runs(tmp_path, capsys, calibration):
    sys.path.insert(0, str(Path(__file__).parent))
    from quant_helpers import features, make_bundle

    from edgekws.quant import load_quantized, quantize_bundle
    from edgekws.voicenorm import embedding_size

    b, _ = make_bundle(tmp_path / "m", seed=5)
    quantize_bundle(b, features(64, seed=6), log=lambda *a: None)
    # a calibrated voice too (edgekws calibrate --save [--method norm]): the board moves every frame, or
    # every embedding, as Python does
    size = embedding_size(load_quantized(b))
    voice = {"voice_shift": -2} if calibration == "voice_shift" else \
        {"voice_offset": [8] * size}   # each calibration here makes the board hear both words (1 as heard)
    b.update(stream={"hop_every": 2, "smooth": 2, "refractory": 5, "thresholds": {"w1": 3000, "w2": 2500}, **voice})
    wav = tmp_path / "test.wav"
    write_wav(wav, np.concatenate([speech_like(np.random.default_rng(i), 1.0) for i in range(3)]))
    proj = tmp_path / "fw"
    assert main(["export", str(b.path), "--target", "cortex-m4", "--out", str(proj), "--audio", str(wav)]) == 0
    printed = capsys.readouterr().out
    assert "Cortex-M4 firmware project" in printed
    from edgekws.export.targets import M4F_FRONTEND_MIPS, m4f_instructions_per_mac
    from edgekws.models import arch_budget

    assert m4f_instructions_per_mac("dscnn-l") == 2.17 and m4f_instructions_per_mac("gru") == 2.33
    arch = b.manifest["architecture"]
    macs = arch_budget(arch).macs  # one model step every 2 frames: 25 per second
    mips = m4f_instructions_per_mac(arch["name"]) * macs * 25 / 1e6 + M4F_FRONTEND_MIPS
    assert f"runs every 40 ms, about {mips:.0f} M instructions per second of audio" in printed
    subprocess.run(["make", "-C", str(proj), "all", "bin", "hex"], check=True, capture_output=True)
    for ext in ("elf", "bin", "hex"):
        assert (proj / "build" / "an386" / f"kws.{ext}").stat().st_size > 0
    run = subprocess.run(["make", "-s", "-C", str(proj), "run"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK: detections match the Python reference" in run.stdout
    header = (proj / "data" / "ekws_example_data.h").read_text()
    if calibration == "voice_shift":
        assert "#define EKWS_EXAMPLE_VOICE_SHIFT (-2)" in header
    else:
        assert f"#define EKWS_EXAMPLE_VOICE_OFFSET_LEN {size}u" in header
    import re

    assert int(re.search(r"#define EKWS_EXAMPLE_EXPECTED (\d+)u", header).group(1)) >= 2   # it detects (1 unshifted)


def test_mac_count_of_the_default_model_with_its_retrain_tap():
    """tools/qemu_run.py's MACs per inference (the denominator of instructions per MAC) for the default
    DS-CNN as `edgekws train` writes it: the budget's layers plus one add per input of the global pool
    and of the tap's pool (both 13 x 10 x 96), not the pools counted as dense layers."""
    from edgekws.bundle import Bundle
    from edgekws.models import arch_budget
    from edgekws.quant import load_quantized

    b = Bundle.load(ROOT / "data" / "fixtures" / "base-ja")
    qm = load_quantized(b)
    q = _qemu_run()
    assert q.model_macs(qm) == arch_budget(b.manifest["architecture"]).macs + 2 * 13 * 10 * 96
    assert {layer.op: q.layer_macs(layer) for layer in qm.layers if "pool" in layer.op} == \
        {"tappool": 12480, "avgpool": 12480}


def test_layer_table_runs_the_tapped_pools_of_the_default_model(tmp_path):
    """qemu_run's per-layer pass on the default model's two pools (the retrain tap's and the global
    pool whose output also carries the tap's averages): both run through the avgpool kernel on M4F
    and equal the numpy reference bit for bit."""
    from edgekws.bundle import Bundle
    from edgekws.quant import load_quantized

    q = _qemu_run()
    qm = load_quantized(Bundle.load(ROOT / "data" / "fixtures" / "base-ja"))
    cases = [c for c in q.model_layer_cases(qm) if "pool" in c[0].op]
    results = {}
    assert q.layer_table(cases, tmp_path / "layers", ["an386"], q.plugin_path(tmp_path), "", results, "pools", "k")
    assert [(r["layer"], r["kind"], r["macs"]) for r in results["k"]] == \
        [("embedding_tap0", "avgpool", 12480), ("embedding", "avgpool", 12480)]
    assert all(r["an386"] > 12480 for r in results["k"])


def test_export_target_out_replaces_its_own_project_and_refuses_other_folders(tmp_path, capsys):
    """A re-export once left the older project's files beside the new ones, and --out could point
    into the bundle or another target's project."""
    import shutil

    from edgekws.cli import main

    model = tmp_path / "m"
    shutil.copytree(ROOT / "data" / "fixtures" / "base-ja", model)
    out = tmp_path / "fw"
    assert main(["export", str(model), "--target", "cortex-m4", "--out", str(out)]) == 0
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    (out / "data" / "stale.c").write_text("from an older export")       # a file the older export wrote
    with open(out / ".edgekws-export", "a") as marker:
        marker.write("data/stale.c\n")
    (out / "notes.txt").write_text("the user's")                         # and one the user added
    (out / "build").mkdir()
    (out / "build" / "kws.elf").write_bytes(b"a build")
    assert main(["export", str(model), "--target", "cortex-m4", "--out", str(out)]) == 0
    now = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert [p for p in now if str(p) != "notes.txt"] == files   # no stale file, no stale build
    assert (out / "notes.txt").read_text() == "the user's" and not (out / "build").exists()
    capsys.readouterr()
    assert main(["export", str(model), "--target", "pi", "--out", str(out)]) == 2
    assert f"--out {out}: holds a cortex-m4 project; choose an empty or new folder for the pi project" \
        in capsys.readouterr().err
    assert main(["export", str(model), "--target", "cortex-m4", "--out", str(model)]) == 2
    assert f"--out {model}: holds the model bundle {model}, which the export would delete" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    assert main(["export", str(model), "--target", "cortex-m4", "--out", str(tmp_path / "mine")]) == 2
    assert "holds files that are not an edgekws export" in capsys.readouterr().err
    assert (model / "manifest.json").is_file() and (out / "Makefile").is_file()
    # a bundle or a recording inside an earlier project of the same kind: the export would delete them
    pi = tmp_path / "pi"
    assert main(["export", str(model), "--target", "pi", "--out", str(pi)]) == 0
    assert main(["export", str(pi / "model"), "--target", "pi", "--out", str(pi)]) == 2
    assert f"--out {pi}: holds the model bundle {pi / 'model'}, which the export would delete" in capsys.readouterr().err
    assert (pi / "model" / "manifest.json").is_file()
    rec = out / "my_recording.wav"
    write_wav(rec, np.zeros(16000, np.float32))
    assert main(["export", str(model), "--target", "cortex-m4", "--out", str(out), "--audio", str(rec)]) == 2
    assert f"--out {out}: holds the --audio recording {rec}, which the export would delete" in capsys.readouterr().err
    assert rec.is_file()
    (model / "cortex-m4").mkdir()
    (model / "cortex-m4" / "old.c").write_text("an export made before the marker existed")
    assert main(["export", str(model), "--target", "cortex-m4"]) == 0  # the default place is ours
    assert not (model / "cortex-m4" / "old.c").exists() and (model / "cortex-m4" / "Makefile").is_file()


def test_export_host_target_writes_the_c_arrays_and_stray_options_are_refused(tmp_path, capsys):
    import shutil

    from edgekws.cli import main

    model = tmp_path / "m"
    shutil.copytree(ROOT / "data" / "fixtures" / "base-ja", model)
    assert main(["export", str(model), "--target", "host", "--out", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["ekws_model_data.c", "ekws_model_data.h",
                                                                  "model.bin"]
    capsys.readouterr()
    for argv, message in ((["--onnx", "--out", str(tmp_path / "x")], "--out is the folder of a --target project"),
                          (["--target", "pi", "--audio", "a.wav"], "--audio is the test audio of --target cortex-m4")):
        assert main(["export", str(model), *argv]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (model / "pi").exists()
    # the C arrays rewrite an earlier C export, never a folder of other files
    assert main(["export", str(model), "--target", "host", "--out", str(tmp_path / "c")]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "ekws_model_data.c").write_text("my own")
    (mine / "main.c").write_text("my own")
    other = tmp_path / "other-model"        # another bundle's C export: never written over (it broke that bundle)
    (other / "c").mkdir(parents=True)
    (other / "manifest.json").write_text("{}")
    capsys.readouterr()
    for argv, message in ((["--target", "host", "--out", str(mine)], f"--out {mine}: holds other files (main.c)"),
                          (["--c", str(mine)], f"--c {mine}: holds other files (main.c)"),
                          (["--c", str(mine / "main.c")], f"--c {mine / 'main.c'}: is a file, not a folder"),
                          (["--c", str(other / "c")], f"--c {other / 'c'}: is inside the model bundle {other}; "
                                                      "choose a folder outside other bundles"),
                          (["--target", "host", "--out", str(tmp_path / "c"), "--c", str(tmp_path / "c")],
                           "--c and --out both name the folder of --target host; give one of them")):
        assert main(["export", str(model), *argv]) == 2
        assert message in capsys.readouterr().err
    assert (mine / "ekws_model_data.c").read_text() == "my own"
    assert main(["export", str(model), "--c", str(model / "c-m4")]) == 0   # a folder of its own bundle: fine
    assert {"c-m4/model.bin", "c-m4/ekws_model_data.c"} <= set(Bundle.load(model).files)
    from edgekws.export import export_c_dir, export_onnx  # the Python API refuses it too, given a path
    with pytest.raises(EdgekwsError, match=f"out_dir {mine}: holds other files \\(main.c\\)"):
        export_c_dir(str(model), mine)
    assert (mine / "ekws_model_data.c").read_text() == "my own"
    (mine / "main.c").unlink()   # only files with the C export's names, but not written by it: kept too
    with pytest.raises(EdgekwsError, match=f"out_dir {mine}: ekws_model_data.c not written by edgekws export"):
        export_c_dir(str(model), mine)
    assert (mine / "ekws_model_data.c").read_text() == "my own"
    assert set(export_c_dir(str(model), tmp_path / "c")) == {"ekws_model_data.c", "ekws_model_data.h", "model.bin"}
    assert "model.int8.onnx" in export_onnx(model)
    # a refused --audio leaves no half-made project behind
    long = tmp_path / "long.wav"
    write_wav(long, np.zeros(61 * 16000, np.int16))
    assert main(["export", str(model), "--target", "cortex-m4", "--out", str(tmp_path / "fw"), "--audio", str(long)]) == 2
    assert "more than the 60 s" in capsys.readouterr().err and not (tmp_path / "fw").exists()

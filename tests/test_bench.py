"""`edgekws bench`: the benchmark runner writes one markdown file with every section and its command."""

import sys

import pytest

from edgekws import bench
from edgekws.errors import EdgekwsError


def test_bench_writes_sections_and_reports_failures(tmp_path, monkeypatch):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "bench_infer.py").write_text("print('| engine | ms |\\n| C int8 | 0.9 |')\n")
    (tools / "broken.py").write_text("import sys\nprint('partial')\nsys.exit(3)\n")
    monkeypatch.setenv("EDGEKWS_TOOLS_DIR", str(tools))
    monkeypatch.setattr(bench, "BENCHMARKS", [("Inference", ["bench_infer.py"], ["bench_infer.py"])])
    out = tmp_path / "B.md"
    md = bench.run_bench(out, quick=True, log=lambda m: None)
    assert out.read_text() == md
    assert "## Inference" in md and "Command: `python tools/bench_infer.py`" in md and "| C int8 | 0.9 |" in md
    assert "Machine: " in md and sys.version.split()[0] in md
    monkeypatch.setattr(bench, "BENCHMARKS", [("Broken", ["broken.py"], ["broken.py"])])
    with pytest.raises(EdgekwsError, match="benchmark script\\(s\\) failed: broken.py"):
        bench.run_bench(out, log=lambda m: None)
    assert "(exit status 3)" in out.read_text() and "partial" in out.read_text()


def test_bench_without_tools_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKWS_TOOLS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(EdgekwsError, match="benchmark scripts \\(tools/\\) are not there"):
        bench.run_bench(None)


def test_bench_keeps_hand_written_notes_and_checks_out_first(tmp_path, monkeypatch, capsys):
    from edgekws.cli import main
    from edgekws.fileio import OutputError

    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "bench_infer.py").write_text("import sys\nprint('run', len(sys.argv))\n")
    monkeypatch.setenv("EDGEKWS_TOOLS_DIR", str(tools))
    monkeypatch.setattr(bench, "BENCHMARKS", [("Inference", ["bench_infer.py"], ["bench_infer.py"]),
                                              ("Other", ["bench_infer.py", "x"], ["bench_infer.py", "x"])])
    out = tmp_path / "B.md"
    out.write_text("# old\n\n## Inference\n\nCommand: x\n\n```\nold table\n```\n\n### A note (session 9)\n\n"
                   "measured by hand\n\n```\nan extra run\n```\n\n## Other\n\n```\nold\n```\n\n## Gone\n\n```\nx\n```\norphan\n")
    md = bench.run_bench(out, log=lambda m: None)
    assert "old table" not in md and "old\n" not in md and "run 1" in md and "run 2" in md
    assert md.index("run 1") < md.index("### A note (session 9)\n\nmeasured by hand\n\n```\nan extra run\n```") \
        < md.index("## Other")
    assert "orphan" not in md       # a section no benchmark writes any more goes with its notes
    # a folder or a recording as --out is refused before anything runs
    (tools / "bench_infer.py").write_text("raise SystemExit('must not run')\n")
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        bench.run_bench(tmp_path, log=lambda m: None)
    (tmp_path / "take.wav").write_bytes(b"RIFF")
    assert main(["bench", "--out", str(tmp_path / "take.wav")]) == 2
    assert "never overwrites a recording" in capsys.readouterr().err
    assert (tmp_path / "take.wav").read_bytes() == b"RIFF"
    # --quick prints the markdown and writes no file unless --out is given
    (tools / "bench_infer.py").write_text("print('quick table')\n")
    before = out.read_text()
    assert main(["bench", "--quick"]) == 0
    assert "quick table" in capsys.readouterr().out and out.read_text() == before

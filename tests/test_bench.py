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
    out.write_text("# edgekws benchmarks\n\n## Inference\n\nCommand: x\n\n```\nold table\n```\n\n### A note (session 9)\n\n"
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
    notes = tmp_path / "README.md"    # an existing file that is not a benchmarks page stays as it is
    notes.write_text("# my project\n\nhand-written\n")
    with pytest.raises(EdgekwsError, match="README.md: exists and is not a benchmarks page"):
        bench.run_bench(notes, log=lambda m: None)
    assert notes.read_text() == "# my project\n\nhand-written\n"
    (tmp_path / "take.wav").write_bytes(b"RIFF")
    assert main(["bench", "--out", str(tmp_path / "take.wav")]) == 2
    assert "never overwrites a recording" in capsys.readouterr().err
    assert (tmp_path / "take.wav").read_bytes() == b"RIFF"
    # --quick prints the markdown and writes no file unless --out is given
    (tools / "bench_infer.py").write_text("print('quick table')\n")
    before = out.read_text()
    assert main(["bench", "--quick"]) == 0
    assert "quick table" in capsys.readouterr().out and out.read_text() == before


def test_regenerating_the_real_benchmarks_md_keeps_every_hand_written_line(tmp_path, monkeypatch):
    """Notes on a Command line and between it and the table (e.g. session 17's paragraph on the
    augmentation input) were dropped; only text after the first table survived."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tools = tmp_path / "tools"
    tools.mkdir()
    for _, full, _ in bench.BENCHMARKS:
        (tools / full[0]).write_text("print('NEW TABLE')\n")
    monkeypatch.setenv("EDGEKWS_TOOLS_DIR", str(tools))
    old = (root / "BENCHMARKS.md").read_text(encoding="utf-8")
    out = tmp_path / "B.md"
    out.write_text(old, encoding="utf-8")
    md = bench.run_bench(out, log=lambda m: None)
    new_lines = set(md.splitlines())
    kept, in_first, fences = [], False, 0
    for line in old.splitlines():
        if line.startswith("## "):
            fences = 0
            continue
        if line.startswith("```") and fences < 2:
            fences += 1
            continue
        if fences == 1 or line.startswith("Command: `") or line.startswith(("# edgekws", "Generated by", "Machine:")):
            continue                                  # the script's old output and the tool's own lines
        kept.append(line)
    assert [line for line in kept if line not in new_lines] == []
    assert md.count("NEW TABLE") == len(bench.BENCHMARKS)
    for line in old.splitlines():
        if line.startswith("Command: `"):
            note = line.split("`", 2)[2]
            seconds = note[2:].split(" s", 1)[0]
            if note.startswith(" (") and seconds.isdigit():   # the old run's own time goes, a note after it stays
                note = note[len(seconds) + 4:].lstrip(")").replace("; ", "(", 1)
            assert note.strip() in md and f"({seconds} s;" not in md, note
    # a second regeneration changes nothing but the timings and the machine's load
    import re

    again = bench.run_bench(out, log=lambda m: None)
    norm = lambda text: [re.sub(r"\(\d+ s\)", "(N s)", line) for line in text.splitlines()  # noqa: E731
                         if not line.startswith("Machine:")]
    assert norm(again) == norm(md)


def test_a_relative_tools_dir_and_a_failing_quick_run_keep_their_output(tmp_path, monkeypatch, capsys):
    from edgekws.cli import main

    tools = tmp_path / "t" / "tools"
    tools.mkdir(parents=True)
    (tools / "bench_infer.py").write_text("print('table ok')\n")
    (tools / "broken.py").write_text("import sys\nprint('half a table')\nsys.exit(1)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEKWS_TOOLS_DIR", "t/tools")          # relative: the scripts run from t/
    monkeypatch.setattr(bench, "BENCHMARKS", [("Inference", ["bench_infer.py"], ["bench_infer.py"]),
                                              ("Broken", ["broken.py"], ["broken.py"])])
    assert main(["bench", "--quick"]) == 2
    captured = capsys.readouterr()
    assert "table ok" in captured.out and "half a table" in captured.out and "(exit status 1)" in captured.out
    assert "benchmark script(s) failed: broken.py (their output is in the markdown above)" in captured.err


def test_the_scripts_own_time_is_replaced_also_with_a_note_after_it():
    """ "(29 s; added in session 4)" after a command: the seconds are the old run's and go, the note stays
    (it was kept whole, so a regeneration printed "(NN s) (29 s; added …)")."""
    text = ("## A\n\nCommand: `python tools/a.py` (29 s; added in session 4)\n\n```\nx\n```\n\n"
            "## B\n\nCommand: `python tools/b.py` (4 s)\n\n```\ny\n```\n\n"
            "## C\n\nCommand: `python tools/c.py` (rerun in session 8)\n\n```\nz\n```\n")
    notes = bench.kept_notes(text)
    assert [notes[k].command for k in "ABC"] == [" (added in session 4)", "", " (rerun in session 8)"]

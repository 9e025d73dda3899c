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

"""libFuzzer harnesses over the C frontend and model runner (arbitrary audio, corrupted model blobs).

A short seeded run in the test suite; `make -C firmware/fuzz long` runs them for minutes.
Skipped where clang or its sanitizer/fuzzer runtime is missing (CI installs clang and
libclang-rt-14-dev).
"""

import shutil
import subprocess
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "firmware" / "fuzz"


@pytest.mark.skipif(shutil.which("clang") is None or shutil.which("make") is None,
                    reason="needs clang (apt-get install clang libclang-rt-14-dev) and make")
def test_fuzzers_find_nothing_in_a_short_seeded_run(tmp_path):
    build = subprocess.run(["make", "-C", str(FUZZ), "all", f"BUILD={tmp_path}"],
                           capture_output=True, text=True)
    if build.returncode != 0 and "fuzzer" in build.stderr and "cannot find" in build.stderr:
        pytest.skip("clang has no libFuzzer runtime (apt-get install libclang-rt-14-dev)")
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run(["make", "-C", str(FUZZ), "run", f"BUILD={tmp_path}", "RUNS=3000", "MODEL_RUNS=300"],
                         capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert run.stderr.count("Done ") == 2  # both harnesses ran to their run count

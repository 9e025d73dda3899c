"""Shared by tests of the scripts in tools/: import one as a module."""

import importlib.util
from pathlib import Path


def load_tool(name: str):
    """tools/<name>.py as a module (the tools are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

"""Helpers for the deployment tests: finding the external tools, reading YAML, running commands."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CACHE_BIN = DEPLOY / "local" / ".cache" / "bin"
INSTALL_HINT = "bash .ci/install-tools.sh installs it"


def _missing(what: str) -> None:
    """Skip on a developer machine; under CI a missing tool is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI ({INSTALL_HINT})")
    pytest.skip(f"{what} is not installed ({INSTALL_HINT})")


def tool(name: str) -> str:
    """Path of an executable: PATH first, then the cache .ci/install-tools.sh fills."""
    found = shutil.which(name)
    if found:
        return found
    cached = CACHE_BIN / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    _missing(name)
    raise AssertionError("unreachable")


def module(name: str) -> ModuleType:
    """A Python module the tests need that is not a runtime dependency."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"Python module {name}")
        raise


def yaml_load(path: Path) -> Any:
    return module("yaml").safe_load(path.read_text())


def run(*cmd: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc

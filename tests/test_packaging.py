"""The folders are import packages: none may be shadowed by (or shadow) an installed one,
and the console script must work from any directory."""
import importlib
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGES = ["labels", "nlp", "training", "models", "serve", "report"]


@pytest.mark.parametrize("name", PACKAGES)
def test_project_packages_resolve_to_this_repository(name):
    if not (ROOT / name).is_dir():
        pytest.skip(f"{name}/ not in this checkout")
    module = importlib.import_module(name)
    assert module.__file__ and str(ROOT) in module.__file__, f"{name} imported from {module.__file__}"


def test_console_script_runs_from_any_directory(tmp_path):
    exe = shutil.which("policytag") or str(Path(sys.executable).with_name("policytag"))
    result = subprocess.run([exe, "labels", "show"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "talent_construction" in result.stdout
    result = subprocess.run([sys.executable, "-c", "import labels, nlp; print(labels.__file__)"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert str(ROOT) in result.stdout

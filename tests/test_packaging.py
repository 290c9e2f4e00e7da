"""Everything installs under one import namespace, `policytag` (issue #10): the folders are its
subpackages, nothing generic (`models`, `labels`) lands at the top of site-packages, and the
console script works from any directory and from a wheel in a fresh environment."""
import importlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

FOLDERS = ["labels", "nlp", "training", "models", "serve", "report"]
SOURCES = ["pyproject.toml", "README.md", "policytag", *FOLDERS]


@pytest.mark.parametrize("name", FOLDERS)
def test_each_folder_is_a_policytag_subpackage_of_this_repository(name):
    module = importlib.import_module(f"policytag.{name}")
    assert module.__file__ and Path(module.__file__).parent == ROOT / name, f"{name} imported from {module.__file__}"


def test_console_script_runs_from_any_directory(tmp_path):
    exe = shutil.which("policytag") or str(Path(sys.executable).with_name("policytag"))
    result = subprocess.run([exe, "labels", "show"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "talent_construction" in result.stdout
    probe = ("import importlib.util, policytag.labels; print(policytag.labels.__file__); "
             "print([n for n in ('labels', 'nlp', 'models', 'training', 'report', 'serve') if importlib.util.find_spec(n)])")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    where, generic = result.stdout.splitlines()
    assert where.startswith(str(ROOT / "labels"))
    assert generic == "[]", f"generic top-level packages importable: {generic}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (found,) = dist.glob("policytag-*.whl")
    return found


def test_the_wheel_holds_only_the_policytag_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"policytag", next(t for t in top if t.endswith(".dist-info"))}, top
    for expected in ("policytag/cli/__init__.py", "policytag/labels/ihms.yaml", "policytag/labels/medsec.yaml",
                     "policytag/serve/web/index.html", "policytag/models/tagger.py"):
        assert expected in names
    assert not any("__pycache__" in n or n.startswith("policytag/tests") for n in names)


def test_the_wheel_installs_into_a_fresh_venv_and_runs(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    # Dependencies (typer, rich, …) come from this test environment's site-packages as a plain path: its
    # editable-install hook (a .pth) is not run from there, so `policytag` can only come from the wheel.
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import policytag.cli, policytag.labels; print(policytag.labels.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site / "policytag" / "labels")), where.stdout
    result = subprocess.run([str(venv / "bin" / "policytag"), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "report" in result.stdout
    shown = subprocess.run([str(venv / "bin" / "policytag"), "labels", "show", "--schema", str(site / "policytag/labels/medsec.yaml")],
                           cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0 and "objective" in shown.stdout, shown.stderr

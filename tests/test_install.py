"""The course package installed the way Colab installs it: non-editable, used elsewhere.

A fresh virtual environment gets the package by `pip install` (not editable). Its heavy
dependencies (torch, ...) are borrowed from the test environment through a .pth file
instead of being downloaded again. Then, from an unrelated working directory and with no
data folder configured, `utils` must import from site-packages, download and verify its
data into the per-user cache, and run a lecture notebook.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

from localserver import LocalServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("install")
    src = root / "src"  # build from a copy: an in-tree build would litter the checkout
    shutil.copytree(REPO / "utils", src / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    Path(site, "borrowed_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # an old setuptools bundled with the venv would shadow the borrowed, current one
    subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "-y", "setuptools"], check=False)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(src),
        ],
        check=True,
    )
    return python


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_DATA", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"))
    env.update(extra)
    return env


def test_installed_package_finds_its_data_from_anywhere(fresh_python, source_dir, tmp_path):
    server = LocalServer(source_dir)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    script = textwrap.dedent(
        """
        import utils, pathlib
        assert "site-packages" in utils.__file__, utils.__file__
        names = utils.load_english_names()
        print(len(names), names[0])
        print(utils.cache_dir())
        print(utils.sample_image("logo").shape)
        import utils.exercises, utils.text  # subpackages and package data are installed too
        print(len(utils.text.chinese_names_split()["test"]))
        """
    )
    try:
        out = subprocess.run(
            [fresh_python, "-c", script],
            cwd=elsewhere,
            env=_clean_env(tmp_path, COURSE_DATA_MIRROR=server.url),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stop()
    assert out.returncode == 0, out.stderr
    count, cache, shape, n_test = out.stdout.splitlines()[-4:]
    assert count == "32033 emma"
    assert Path(cache).is_relative_to(tmp_path / "home" / ".cache"), cache
    assert (Path(cache) / "names" / "names.txt").is_file()
    assert shape == "(130, 542, 4)"
    assert n_test == "3878"


def test_installed_package_runs_a_lecture_notebook_from_another_folder(fresh_python, tmp_path):
    elsewhere = tmp_path / "students-folder"
    elsewhere.mkdir()
    notebook = elsewhere / "01_autograd.ipynb"
    shutil.copy(REPO / "notebooks" / "01_autograd.ipynb", notebook)
    script = textwrap.dedent(
        f"""
        import nbformat, utils
        from nbclient import NotebookClient
        nb = nbformat.read({str(notebook)!r}, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={{"metadata": {{"path": {str(elsewhere)!r}}}}}).execute()
        print("executed", sum(c.cell_type == "code" for c in nb.cells), "cells with", utils.__file__)
        """
    )
    out = subprocess.run(
        [fresh_python, "-c", script],
        cwd=elsewhere,
        env=_clean_env(tmp_path, COURSE_PLAIN_PROGRESS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "executed" in out.stdout and "site-packages" in out.stdout
    assert sys.prefix not in out.stdout.split("with", 1)[1]  # not the editable checkout

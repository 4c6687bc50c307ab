"""Set-up as students meet it: the README's `make` commands, and a non-editable install.

`make lab` must start JupyterLab as root (containers, cloud machines) and as a normal
user, and print a URL that works; `make data` without network must stop with one
message, and `make test` must run it before any test.

A fresh virtual environment gets the package by `pip install` (not editable), the way
Colab installs it. Its heavy dependencies (torch, ...) are borrowed from the test
environment through a .pth file instead of being downloaded again. Then, from an
unrelated working directory and with no data folder configured, `utils` must import
from site-packages, download and verify its data into the per-user cache, and run a
lecture notebook.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
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


def test_installed_package_runs_a_lecture_notebook_from_another_folder(
    fresh_python, source_dir, tmp_path
):
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
    server = LocalServer(source_dir)  # its data, MNIST too, from a mirror on 127.0.0.1
    try:
        out = subprocess.run(
            [fresh_python, "-c", script],
            cwd=elsewhere,
            env=_clean_env(tmp_path, COURSE_PLAIN_PROGRESS="1", COURSE_DATA_MIRROR=server.url),
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        server.stop()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "executed" in out.stdout and "site-packages" in out.stdout
    assert sys.prefix not in out.stdout.split("with", 1)[1]  # not the editable checkout


# ------------------------------------------------------------------- the README's make
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines_of(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _make_env(**extra: str) -> dict[str, str]:
    """A student's environment: no settings of the `make test` that runs these tests."""
    drop = ("COURSE_DATA", "JUPYTER", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_make_lab_adds_allow_root_only_for_root():
    # A dry run on a copy of the Makefile in a folder every user can enter: the clone itself
    # may sit in a folder that `nobody` cannot (mktemp -d and pytest's tmp_path are mode 700).
    folder = Path(tempfile.mkdtemp(prefix="make-lab-"))
    folder.chmod(0o755)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, folder / name)

    def lab_command(prefix: list[str]) -> str:
        out = subprocess.run(
            [*prefix, "make", "--no-print-directory", "-n", "lab", "PORT=8999"],
            cwd=folder, env=_make_env(), capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout[out.stdout.index("jupyter lab"):]

    try:
        as_root, as_user = lab_command([]), lab_command(AS_NOBODY)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for command in (as_root, as_user):
        assert "--no-browser" in command and "--port=8999" in command
    assert "--allow-root" in as_root and "--allow-root" not in as_user


@pytest.mark.parametrize("who", ["this user", "a normal user"])
def test_make_lab_prints_a_url_that_lists_the_notebooks(who):
    """`make lab` as in the README, on a free port; as root it must not refuse to start."""
    command = ["make", "--no-print-directory", "lab", f"PORT={_free_port()}"]
    if who == "a normal user":
        if os.geteuid() != 0:
            pytest.skip("not root: the first case already runs as a normal user")
        if not shutil.which("setpriv"):
            pytest.skip("setpriv (util-linux) is needed to drop root")
        probe = subprocess.run(
            [*AS_NOBODY, "sh", "-c", ".venv/bin/python -c 'print(42)'"],
            cwd=REPO, capture_output=True, text=True,
        )
        if probe.stdout.strip() != "42":
            pytest.skip("the venv's Python is not readable by other users here (e.g. under /root)")
        command = [*AS_NOBODY, *command]
    home = Path(tempfile.mkdtemp(prefix="lab-home-"))  # Jupyter's runtime files go here
    if who == "a normal user":
        os.chown(home, 65534, 65534)
    env = _make_env(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make, jupyter and the URL printer: one group to stop
    )
    lines, seen, url = _lines_of(proc), [], None
    try:
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)/lab/tree/notebooks\?token=(\w+)", line)
            if found:
                url, (base, token) = found.group(0), found.groups()
        assert url, "make lab printed no URL:\n" + "".join(seen[-40:])
        assert "Running as root is not recommended" not in "".join(seen)
        with urllib.request.urlopen(url, timeout=30) as page:  # the URL a student opens
            assert page.status == 200 and "JupyterLab" in page.read().decode()
        listing = f"{base}/api/contents/notebooks"
        with urllib.request.urlopen(f"{listing}?token={token}", timeout=30) as r:
            names = {item["name"] for item in json.load(r)["content"]}
        lectures = {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
        assert lectures and lectures <= names
        with pytest.raises(urllib.error.HTTPError):  # and nothing without the token
            urllib.request.urlopen(listing, timeout=30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def _make(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        env=_make_env(COURSE_PLAIN_PROGRESS="1", **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_data_offline_stops_with_one_message(tmp_path):
    out = _make(
        "data", COURSE_DATA_DIR=str(tmp_path / "empty"), COURSE_DATA_MIRROR="http://127.0.0.1:9"
    )
    assert out.returncode != 0
    assert "download " not in out.stdout  # no progress line for what failed
    assert out.stderr.count("Could not download the data file") == 1
    assert "Traceback" not in out.stderr and "Three ways out" in out.stderr


def test_make_test_fetches_the_data_before_any_test():
    out = _make("-n", "test")
    assert out.returncode == 0, out.stderr
    commands = out.stdout.splitlines()
    data_step = next(i for i, c in enumerate(commands) if "-m utils.data" in c)
    pytest_step = next(i for i, c in enumerate(commands) if "-m pytest" in c)
    assert data_step < pytest_step
    # a failed data step stops make: `data` is a prerequisite, not a step that may fail
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test:.*\bdata\b", makefile, re.M)


def test_readme_explains_restricted_networks():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Restricted networks (国内网络 / offline)", 1)[1].split("\n## ")[0]
    for needed in (
        "PIP_INDEX_URL",  # packages through a PyPI mirror, passed through make
        "make lab PIP_INDEX_URL=",
        "COURSE_DATA_MIRROR",  # an instructor's data mirror
        "python -m utils.data mirror DIR",
        "COURSE_DATA_DIR",  # a folder
        "without internet access",  # CI proves that nothing else is needed
    ):
        assert needed in section, needed
    assert "(#restricted-networks-国内网络--offline)" in readme  # linked from the quick start

"""The repository keeps its promises: notebook hygiene, one set-up cell, one dependency list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from utils import notebooks as nbtools

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
LECTURES = sorted((REPO / "notebooks").glob("*.ipynb"))
COURSE = [
    "01_autograd",
    "02_losses",
    "03_backprop",
    "04_conv2d",
    "05_mnist_cnn",
    "06_optimizers",
    "07a_initialization",
    "07b_normalization_regularization",
    "08_name_gender_rnn",
    "09_name_generation",
    "10_attention",
    "11_vae",
]
MACHINE_PATH = re.compile(r"(/root/|/tmp/|/home/\w+|/Users/\w+|/work/|[A-Z]:\\\\Users)")


def _code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_lecture_notebooks_exist_and_follow_the_naming():
    assert LECTURES, "no lecture notebooks found"
    assert {p.stem for p in LECTURES} <= set(COURSE), "unexpected notebook names"
    assert {"01_autograd", "02_losses", "03_backprop"} <= {p.stem for p in LECTURES}


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_lecture_notebook_hygiene(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    assert "widgets" not in nb["metadata"], "widget state stored in the notebook"
    cells = _code_cells(path)
    counts = [c["execution_count"] for c in cells]
    assert None not in counts, f"{counts.count(None)} code cells were never executed"
    assert counts == list(range(1, len(counts) + 1)), (
        f"not executed top to bottom in one fresh kernel: {counts}; run `make execute NB={path.relative_to(REPO)}`"
    )
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            where = f"code cell {i + 1}"
            assert out["output_type"] != "error", f"{where} stores an error: {out.get('ename')}"
            text = json.dumps(out)
            assert "application/vnd.jupyter.widget-view+json" not in text, (
                f"{where} stores a widget"
            )
            assert not MACHINE_PATH.search(text), f"{where} shows a machine path"
            if out["output_type"] == "stream":
                assert out["name"] != "stderr" or "Warning" not in "".join(out["text"]), (
                    f"{where} stores a warning: {''.join(out['text'])[:200]}"
                )


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.name)
def test_every_notebook_opens_with_the_colab_setup_cell_and_seeds(path):
    cells = _code_cells(path)
    assert "".join(cells[0]["source"]) == nbtools.setup_cell_source(), (
        "the first code cell must be exactly `python -m utils.notebooks setup-cell`"
    )
    assert cells[0].get("outputs", []) == []
    early = "".join("".join(c["source"]) for c in cells[1:3])
    assert "seed_everything(" in early, "seed everything right after the set-up cell"


def test_setup_cell_installs_from_the_one_repository_url():
    url = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    cell = nbtools.setup_cell_source()
    assert f"git+{url}" in cell and 'if "google.colab" in sys.modules:' in cell
    install = cell.split("%pip", 1)[1]
    assert "--upgrade" not in install and " torch" not in install, "never reinstall Colab's torch"


def test_readme_has_the_two_commands_and_a_colab_link_per_notebook():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(make \w+)\s*$", quick, flags=re.M)
    assert commands == ["make lab", "make test"]
    for path in LECTURES:
        assert nbtools.colab_url(path) in readme, f"README lacks the Colab link of {path.name}"
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci


def _requirements(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        if ";" in spec:  # environment markers (tomli on 3.10) are pip-only
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", spec.strip())
        out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _requirements(project["dependencies"] + project["optional-dependencies"]["lab"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_names = {"pytorch": "torch"}
    listed = _requirements([d for d in env["dependencies"] if isinstance(d, str)])
    listed = {conda_names.get(k, k): v for k, v in listed.items()}
    python = listed.pop("python")
    assert python == ">=" + project["requires-python"].removeprefix(">=")
    listed.pop("pip")
    assert listed == wanted
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-e ."], "conda users install the course package itself with pip"


def test_no_exact_pins_on_torch():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        assert "==" not in spec and "<" not in spec.split(";")[0], f"pin in {spec}"


def test_data_files_are_not_committed():
    ignored = (REPO / ".gitignore").read_text()
    assert "data/*" in ignored and "!data/README.md" in ignored


def test_readme_links_only_to_notebooks_that_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for rel in set(re.findall(r"\((notebooks/[\w.]+\.ipynb)\)", readme)):
        assert (REPO / rel).is_file(), f"README links to missing {rel}"
    for rel in set(re.findall(r"/blob/main/([\w/.]+\.ipynb)", readme)):
        assert (REPO / rel).is_file(), f"README's Colab badge points to missing {rel}"

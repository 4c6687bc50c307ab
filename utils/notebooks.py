"""Tools for course authors: the Colab set-up cell and re-executing notebooks.

    python -m utils.notebooks execute notebooks/01_autograd.ipynb [...]
    python -m utils.notebooks setup-cell        # print the canonical set-up cell

Execution uses a fresh kernel per notebook, runs top to bottom with the notebook's
own folder as working directory (as Jupyter and nbval do), prints progress bars
plainly, and saves the outputs in place.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent

SETUP_MARKER = "# Set-up: on Colab, install the course package"


def repository_url() -> str:
    """The course repository's URL, kept in one place: pyproject's [project.urls]."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return meta["project"]["urls"]["Repository"]


def setup_cell_source() -> str:
    """The first code cell of every notebook.

    On Colab it installs this package from the repository; the dependencies are lower
    bounds, so Colab's own torch already satisfies them and is not reinstalled.
    Anywhere else it does nothing (``make lab`` has installed the package).
    """
    return (
        f"{SETUP_MARKER} (elsewhere `make lab` did it).\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install --quiet "pytorch-stats-course @ git+{repository_url()}"'
    )


def colab_url(notebook: str | Path) -> str:
    """The "Open in Colab" address of a notebook of the repository."""
    rel = Path(notebook).resolve().relative_to(REPO).as_posix()
    github = repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github}/blob/main/{rel}"


def execute(path: Path, timeout: int = 900) -> float:
    """Execute a notebook top to bottom in a fresh kernel and save it in place."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    os.environ.setdefault("COURSE_PLAIN_PROGRESS", "1")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.notebooks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="re-execute notebooks in place in a fresh kernel")
    ex.add_argument("notebooks", nargs="+", type=Path)
    sub.add_parser("setup-cell", help="print the canonical Colab set-up cell")
    args = parser.parse_args(argv)
    if args.command == "setup-cell":
        print(setup_cell_source())
        return 0
    for path in args.notebooks:
        print(f"executing {path} ...", flush=True)
        print(f"  done in {execute(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load the functions and classes a lecture notebook defines, without running it.

Tests check a notebook's from-scratch pieces against PyTorch/SciPy on fresh random
inputs. Only top-level imports, ``def`` and ``class`` statements of the notebook's
code cells are executed (in order); everything else (training, plots) is skipped.
So a from-scratch function must take what it needs as arguments.
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)


def definitions(name: str, folder: str = "notebooks") -> types.SimpleNamespace:
    """``definitions("01_autograd")`` → namespace of that notebook's functions/classes.

    ``folder="solutions"`` loads an instructor's solution notebook instead.
    """
    path = REPO / folder / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": f"notebook_{name}"}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # IPython magics (%pip, !ls) are not Python: keep the block structure with `pass`
        lines = [
            ln[: len(ln) - len(ln.lstrip())] + "pass" if ln.lstrip().startswith(("%", "!")) else ln
            for ln in cell.source.splitlines()
        ]
        tree = ast.parse("\n".join(lines), filename=str(path))
        keep = [node for node in tree.body if isinstance(node, _KEEP)]
        if keep:
            module = ast.Module(body=keep, type_ignores=[])
            exec(compile(module, str(path), "exec"), namespace)  # noqa: S102
    return types.SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")})

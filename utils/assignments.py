"""Generate student assignments from the instructors' solution notebooks.

Each ``solutions/NN_name.ipynb`` is the single source of ``assignments/NN_name.ipynb``.
The markers are nbgrader's, so the files also work with an nbgrader server:

* code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
  ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` (at the marker's indentation);
  in a markdown cell the region becomes ``YOUR ANSWER HERE``;
* code between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` is removed;
* outputs, execution counts and execution metadata are cleared; cell ids are kept, so
  the output is deterministic and diffs stay small;
* the cells' ``nbgrader`` metadata (grade ids and points, see ``solutions/README.md``) is
  copied unchanged, so the grader (:mod:`utils.grading`) and nbgrader find the exercises
  of a submission by id.

    python -m utils.assignments            # regenerate assignments/ from solutions/
    python -m utils.assignments --check    # exit 1 if assignments/ is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
ASSIGNMENTS = REPO / "assignments"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)


class MarkerError(ValueError):
    """Unbalanced or nested solution/hidden-test markers."""


def _replace_regions(source: str, begin: str, end: str, stub) -> str:
    out: list[str] = []
    inside: str | None = None  # indentation of the open marker
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped == begin:
            if inside is not None:
                raise MarkerError(f"line {number}: {begin!r} inside another region")
            inside = line[: len(line) - len(line.lstrip())]
            out.extend(stub(inside))
        elif stripped == end:
            if inside is None:
                raise MarkerError(f"line {number}: {end!r} without {begin!r}")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise MarkerError(f"{begin!r} is never closed")
    return "\n".join(out)


def strip_solution(source: str, cell_type: str = "code") -> str:
    """The student version of one cell's source."""
    if cell_type == "code":
        source = _replace_regions(
            source,
            BEGIN_SOLUTION,
            END_SOLUTION,
            lambda ind: [f"{ind}# YOUR CODE HERE", f"{ind}raise NotImplementedError()"],
        )
        source = _replace_regions(source, BEGIN_HIDDEN, END_HIDDEN, lambda ind: [])
    else:
        source = _replace_regions(
            source, BEGIN_SOLUTION, END_SOLUTION, lambda ind: [f"{ind}YOUR ANSWER HERE"]
        )
    return source.rstrip("\n")


def solution_lines(source: str) -> list[str]:
    """The stripped lines inside solution and hidden-test regions (to check for leaks)."""
    lines, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            inside = True
        elif stripped in (END_SOLUTION, END_HIDDEN):
            inside = False
        elif inside and stripped:
            lines.append(stripped)
    return lines


def make_assignment(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The assignment notebook for a solution notebook (a new object)."""
    nb = nbformat.from_dict(solution)  # deep copy
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.source = strip_solution(cell.source, cell.cell_type)
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """Deterministic text of a notebook."""
    return nbformat.writes(nb, version=4) + "\n"


def assignment_path(solution_path: Path) -> Path:
    return ASSIGNMENTS / solution_path.name


def generate(check: bool = False) -> list[Path]:
    """Write (or, with ``check``, compare) every assignment; return the stale ones."""
    stale = []
    for solution_path in sorted(SOLUTIONS.glob("*.ipynb")):
        text = render(make_assignment(nbformat.read(solution_path, as_version=4)))
        target = assignment_path(solution_path)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not check:
                target.write_text(text, encoding="utf-8")
    known = {assignment_path(p).name for p in SOLUTIONS.glob("*.ipynb")}
    for orphan in sorted(ASSIGNMENTS.glob("*.ipynb")):
        if orphan.name not in known:  # its solution was removed or renamed
            stale.append(orphan)
            if not check:
                orphan.unlink()
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.assignments", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale assignments")
    args = parser.parse_args(argv)
    from .grading import validate  # the points metadata; here only reported

    for solution_path in sorted(SOLUTIONS.glob("*.ipynb")):
        for problem in validate(nbformat.read(solution_path, as_version=4)):
            print(f"{solution_path.relative_to(REPO)}: {problem}", file=sys.stderr)
    stale = generate(check=args.check)
    for path in stale:
        verb = "out of date" if args.check else "written"
        print(f"{path.relative_to(REPO)}: {verb}")
    if args.check and stale:
        print("Run `make assignments` to regenerate them from solutions/.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

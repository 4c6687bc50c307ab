"""Assignments are generated from solutions and cannot drift, leak or break."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from utils import assignments as gen

SOLUTIONS = sorted(gen.SOLUTIONS.glob("*.ipynb"))
ASSIGNMENTS = sorted(gen.ASSIGNMENTS.glob("*.ipynb"))

SOLUTION_CELL = """\
def mse(y, y_hat):
    \"\"\"Mean squared error.\"\"\"
    ### BEGIN SOLUTION
    diff = y - y_hat
    return (diff ** 2).mean()
    ### END SOLUTION

### BEGIN HIDDEN TESTS
assert mse(1.0, 1.0) == 0.0
### END HIDDEN TESTS
print("done")"""


# ------------------------------------------------------------------------------ generator
def test_solution_regions_become_stubs_at_their_indentation():
    student = gen.strip_solution(SOLUTION_CELL)
    assert student == (
        "def mse(y, y_hat):\n"
        '    """Mean squared error."""\n'
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError()\n"
        "\n"
        'print("done")'
    )
    compile(student, "<assignment>", "exec")  # the stub parses


def test_markdown_answers_are_blanked():
    text = "Why?\n### BEGIN SOLUTION\nBecause the likelihood factorises.\n### END SOLUTION"
    assert gen.strip_solution(text, "markdown") == "Why?\nYOUR ANSWER HERE"


@pytest.mark.parametrize(
    "source",
    [
        "### BEGIN SOLUTION\nx = 1",
        "x = 1\n### END SOLUTION",
        "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
    ],
)
def test_unbalanced_markers_are_refused(source):
    with pytest.raises(gen.MarkerError):
        gen.strip_solution(source)


def test_generation_is_deterministic_and_clears_outputs():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(SOLUTION_CELL, execution_count=3)
    cell.outputs = [nbformat.v4.new_output("stream", text="done\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    first = gen.render(gen.make_assignment(nb))
    assert first == gen.render(gen.make_assignment(nbformat.reads(gen.render(nb), as_version=4)))
    out = nbformat.reads(first, as_version=4)
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None
    assert [c.id for c in out.cells] == [c.id for c in nb.cells]
    assert nb.cells[1].outputs, "the solution itself is left untouched"


# ------------------------------------------------------------------------ the real files
def test_assignments_are_in_sync_with_solutions():
    stale = gen.generate(check=True)
    assert not stale, f"out of date: {[p.name for p in stale]}; run `make assignments`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_assignment_leaks_nothing(solution):
    sol = nbformat.read(solution, as_version=4)
    text = gen.assignment_path(solution).read_text(encoding="utf-8")
    for marker in gen.MARKERS:
        assert marker not in text
    nb = json.loads(text)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    public = "\n".join(gen.strip_solution(c.source, c.cell_type) for c in sol.cells)
    sentinels = {
        line
        for c in sol.cells
        for line in gen.solution_lines(c.source)
        if len(line) >= 12 and line not in public
    }
    leaked = [s for s in sentinels if s in text]
    assert not leaked, f"solution lines in the assignment: {leaked[:5]}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=lambda p: p.name)
def test_assignment_runs_up_to_its_first_exercise(assignment):
    nb = nbformat.read(assignment, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(assignment.parent)}},
    )
    with pytest.raises(CellExecutionError) as err:
        client.execute()
    assert err.value.ename == "NotImplementedError", (
        f"the scaffolding itself fails before the first exercise: {err.value.ename}: {err.value.evalue}"
    )

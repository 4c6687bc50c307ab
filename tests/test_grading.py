"""`make grade`: scores, statuses and the sandbox, on submissions made from assignment 07.

One batch of submissions is graded once (module fixture, in parallel like the real
thing); each test reads its row. Most submissions are the solution cut down to its
set-up, import and exercise cells (a student may delete cells: they are graded by id),
so that one run costs a few seconds; the solution and the assignment also run whole.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import socket
import time
from pathlib import Path

import nbformat
import pytest

from utils import assignments as gen
from utils import grading

NUMBER = "07"
SOLUTION = grading.solution_path(NUMBER)
ASSIGNMENT = gen.assignment_path(SOLUTION)
SANDBOX = grading.find_sandbox()[0] is not None
needs_sandbox = pytest.mark.skipif(not SANDBOX, reason="bubblewrap (bwrap) is not available")

# Generous limits for the main batch (a loaded 2-core CI machine), short ones for the loops.
FAST = grading.Options(cell_timeout=90, check_timeout=60, timeout=400, jobs=2, quiet=True)
SHORT = grading.Options(cell_timeout=4, check_timeout=4, timeout=200, jobs=2, quiet=True)
WRONG_MHA = ('+ weights["b_o"], attn', ", attn")  # forgets the output bias: exercise 4 fails


def _nb(path: Path = SOLUTION) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def reduced(nb=None) -> nbformat.NotebookNode:
    """The solution without its plots and demos: set-up, imports, exercises, checks."""
    nb = nb or _nb()
    keep = {"a07-01", "a07-02"}
    nb.cells = [c for c in nb.cells if c.id in keep or (c.cell_type == "code" and _meta(c))]
    return nb


def code(source: str, cid: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.id = cid
    return cell


def edit(nb, cid: str, old: str, new: str):
    cell = next(c for c in nb.cells if c.id == cid)
    assert old in cell.source
    cell.source = cell.source.replace(old, new)
    return nb


def insert_after(nb, cid: str, *cells):
    i = next(i for i, c in enumerate(nb.cells) if c.id == cid)
    nb.cells[i + 1 : i + 1] = list(cells)
    return nb


def _submissions(folder: Path, server_port: int, outside: Path) -> dict[str, object]:
    subs: dict[str, object] = {}
    subs["solution"] = _nb()
    subs["assignment"] = _nb(ASSIGNMENT)
    subs["one_wrong"] = edit(reduced(), "a07-19", *WRONG_MHA)
    subs["os_exit"] = insert_after(reduced(), "a07-02", code("import os\nos._exit(3)", "exit-cell"))
    subs["segfault"] = edit(
        reduced(),
        "a07-26",
        "### BEGIN SOLUTION",
        "### BEGIN SOLUTION\n    import ctypes\n    ctypes.string_at(0)",
    )
    subs["big_output"] = insert_after(
        reduced(),
        "a07-02",
        code(
            'for _ in range(100_000):\n    print("x" * 1000)\nraise ValueError("printed 100 MB")',
            "print-cell",
        ),
        code('import os\nos.write(1, b"y" * 100_000_000)', "fd-cell"),
        code("hog = bytearray(64 * 2**30)", "memory-cell"),  # over the address-space limit
    )
    # A check replaced in the student's kernel (and exercise 4 wrong, so that it would matter).
    subs["patch_check"] = insert_after(
        edit(reduced(), "a07-19", *WRONG_MHA),
        "a07-02",
        code(
            "from utils.exercises import attention\n"
            "attention.check_multi_head_attention = lambda f: print('PASS')",
            "patch-cell",
        ),
    )
    subs["patch_helper"] = insert_after(
        reduced(),
        "a07-02",
        code("import utils.checks\nutils.checks.check_close = lambda *a, **k: 0.0", "patch-cell"),
    )
    subs["patch_in_call"] = edit(
        reduced(),
        "a07-26",
        "### BEGIN SOLUTION",
        "### BEGIN SOLUTION\n    import numpy\n    numpy.allclose = lambda *a, **k: True",
    )
    # Shadowing the module name in the notebook changes nothing: the grader's checks run.
    subs["shadow"] = insert_after(
        edit(reduced(), "a07-19", *WRONG_MHA),
        "a07-02",
        code(
            "class attention:\n    check_multi_head_attention = staticmethod(lambda f: None)",
            "shadow-cell",
        ),
    )
    # Reordered, duplicated, edited, stripped and deleted cells.
    nb = reduced()
    checks = [c for c in nb.cells if _meta(c).get("grade")]
    others = [c for c in nb.cells if not _meta(c).get("grade")]
    others[2], others[3] = others[3], others[2]  # two exercise cells swapped
    dup = nbformat.from_dict(checks[0])
    dup.id = "duplicated-check"
    dup.source = "print('PASS')"
    checks[1].source = "pass  # edited check"
    checks[2].metadata.pop("nbgrader")  # metadata stripped, id kept
    del checks[3]  # a check cell deleted
    nb.cells = checks[::-1] + others + [dup]
    subs["reordered"] = nb
    (folder / "invalid.ipynb").write_text('{"cells": [ not json', encoding="utf-8")
    if SANDBOX:
        repo_target = grading.REPO / "grading-attack.txt"
        attacks = [
            code(
                "import socket\n"
                f"socket.create_connection(('127.0.0.1', {server_port}), timeout=3)\n"
                "raise RuntimeError('ATTACK SUCCEEDED: local network')",
                "attack-local",
            ),
            code(
                "import urllib.request\n"
                "urllib.request.urlopen('http://pypi.org', timeout=5)\n"
                "raise RuntimeError('ATTACK SUCCEEDED: internet')",
                "attack-net",
            ),
            code(
                f"open({str(repo_target)!r}, 'w').write('x')\n"
                "raise RuntimeError('ATTACK SUCCEEDED: wrote into the course')",
                "attack-write-repo",
            ),
            code(
                "from pathlib import Path\n"
                f"p = Path({str(outside / 'written.txt')!r})\n"
                "p.parent.mkdir(parents=True, exist_ok=True)\n"
                "p.write_text('x')\n"  # lands in the sandbox's private /tmp, not outside
                f"Path({str(folder / 'solution.ipynb')!r}).write_text('{{}}')\n"
                "raise RuntimeError('ATTACK SUCCEEDED: wrote over a submission')",
                "attack-write-sub",
            ),
            code(
                f"text = open({str(folder / 'solution.ipynb')!r}).read()\n"
                "raise RuntimeError('ATTACK SUCCEEDED: read another submission')",
                "attack-read-sub",
            ),
            code(
                "import json\n"
                f"nb = json.load(open({str(SOLUTION)!r}))\n"
                "for c in nb['cells']:\n"
                "    if c['cell_type'] == 'code' and 'BEGIN SOLUTION' in ''.join(c['source']):\n"
                "        exec(''.join(c['source']))\n"
                "raise RuntimeError('ATTACK SUCCEEDED: read the solutions')",
                "attack-read-solution",
            ),
        ]
        subs["attacker"] = insert_after(_nb(ASSIGNMENT), "a07-02", *attacks)
    for name, nb in subs.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("graded")
    outside = tmp_path_factory.mktemp("outside")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    _submissions(folder, server.getsockname()[1], outside)
    opts = grading.Options(**{**FAST.__dict__, "sandbox": SANDBOX})
    start = time.monotonic()
    results = grading.grade(NUMBER, folder, out, opts)
    elapsed = time.monotonic() - start
    try:
        server.accept()
        connected = True
    except BlockingIOError:
        connected = False
    server.close()
    with open(out / "grades.csv", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return {
        "rows": rows,
        "results": {r.student: r for r in results},
        "out": out,
        "folder": folder,
        "outside": outside,
        "connected": connected,
        "elapsed": elapsed,
    }


def row(graded, name):
    return graded["rows"][name]


def result(graded, name) -> grading.Result:
    return graded["results"][name]


SPEC = grading.load_spec(NUMBER)
MAX = SPEC.max_total
POINTS = {e.grade_id: e.points for e in SPEC.exercises}


# --------------------------------------------------------------------------- outcomes
def test_grades_csv_has_one_column_per_exercise(graded):
    first = next(iter(graded["rows"].values()))
    assert list(first) == ["student", *POINTS, "total", "max_total", "status", "notes"]
    assert all(r["max_total"] == grading._fmt(MAX) for r in graded["rows"].values())


def test_the_solution_gets_full_points(graded):
    r = row(graded, "solution")
    assert (r["status"], float(r["total"])) == ("ok", MAX), r
    assert not result(graded, "solution").cell_errors


def test_the_untouched_assignment_gets_zero(graded):
    r = row(graded, "assignment")
    assert (r["status"], float(r["total"])) == ("ok", 0), r
    assert {o.status for o in result(graded, "assignment").outcomes.values()} == {"todo"}


def test_one_wrong_exercise_loses_exactly_its_points(graded):
    r = row(graded, "one_wrong")
    assert float(r["total"]) == MAX - POINTS["multi_head_attention"]
    assert float(r["multi_head_attention"]) == 0 and r["status"] == "ok"
    feedback = (graded["out"] / "feedback" / "one_wrong.md").read_text(encoding="utf-8")
    assert "`multi_head_attention`: FAIL" in feedback and "hint:" in feedback


def test_infinite_loops_time_out_and_the_rest_is_graded(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    loops = insert_after(
        edit(
            reduced(),
            "a07-26",
            "### BEGIN SOLUTION",
            "### BEGIN SOLUTION\n    while True:\n        pass",
        ),
        "a07-02",
        code("while True:\n    pass", "loop-cell"),
    )
    nbformat.write(loops, folder / "loops.ipynb")
    (res,) = grading.grade(
        NUMBER, folder, tmp_path / "out", grading.Options(**{**SHORT.__dict__, "sandbox": SANDBOX})
    )
    assert res.status == "timeout"
    assert res.total == MAX - POINTS["nadaraya_watson"]  # the loop in a cell is stopped, skipped
    assert res.outcomes["nadaraya_watson"].status == "timeout"
    assert any(k == "loop-cell" and s == "timeout" for k, s, _, _ in res.cell_errors)
    assert res.seconds < SHORT.timeout


def test_os_exit_and_segfault_are_crashes_and_the_rest_still_counts(graded):
    r = row(graded, "os_exit")
    assert (r["status"], float(r["total"])) == ("crashed", MAX), r
    r = row(graded, "segfault")
    assert r["status"] == "crashed"
    assert float(r["total"]) == MAX - POINTS["nadaraya_watson"]
    assert result(graded, "segfault").outcomes["nadaraya_watson"].status == "crashed"


def test_huge_output_is_truncated_and_memory_is_limited(graded):
    r = row(graded, "big_output")
    assert (r["status"], float(r["total"])) == ("ok", MAX), r
    errors = {k: (m, o) for k, _, m, o in result(graded, "big_output").cell_errors}
    message, output = errors["print-cell"]
    assert "printed 100 MB" in message
    printed = re.search(r"output truncated: ([\d,]+) characters", output)
    assert printed and int(printed.group(1).replace(",", "")) >= 100_000_000
    assert len(output) < 10_000
    assert "MemoryError" in errors["memory-cell"][0]
    feedback = graded["out"] / "feedback" / "big_output.md"
    assert feedback.stat().st_size < 100_000


def test_invalid_json_is_an_invalid_notebook(graded):
    r = row(graded, "invalid")
    assert (r["status"], float(r["total"])) == ("invalid notebook", 0)


def test_a_monkey_patched_check_is_tampering(graded):
    r = row(graded, "patch_check")
    assert r["status"] == "tampered"
    assert float(r["multi_head_attention"]) == 0
    assert float(r["total"]) == MAX - POINTS["multi_head_attention"]  # the others unaffected
    assert "check_multi_head_attention" in r["notes"]


def test_a_patched_shared_helper_zeroes_every_exercise(graded):
    r = row(graded, "patch_helper")
    assert (r["status"], float(r["total"])) == ("tampered", 0), r
    assert "utils.checks.check_close" in r["notes"]


def test_patching_from_inside_an_exercise_is_caught(graded):
    r = row(graded, "patch_in_call")
    assert r["status"] == "tampered" and "numpy.allclose" in r["notes"]
    assert float(r["nadaraya_watson"]) == 0
    assert float(r["total"]) == MAX - POINTS["nadaraya_watson"]


def test_shadowing_a_check_module_in_the_notebook_changes_nothing(graded):
    r = row(graded, "shadow")
    assert r["status"] == "ok"
    assert float(r["total"]) == MAX - POINTS["multi_head_attention"]


def test_reordered_duplicated_edited_and_deleted_cells_are_graded_by_id(graded):
    r = row(graded, "reordered")
    assert (r["status"], float(r["total"])) == ("ok", MAX), r


def test_feedback_collects_written_answers(graded):
    text = (graded["out"] / "feedback" / "solution.md").read_text(encoding="utf-8")
    assert "## Written answers" in text
    for ans in SPEC.answers:
        assert f"### `{ans.grade_id}`" in text
        assert f"### `{ans.grade_id}` (not answered)" not in text
    empty = (graded["out"] / "feedback" / "assignment.md").read_text(encoding="utf-8")
    assert empty.count("(not answered)") == len(SPEC.answers)


def test_the_batch_ran_in_parallel_within_its_limits(graded):
    slowest = max(r.seconds for r in graded["results"].values())
    assert slowest < FAST.timeout
    assert graded["elapsed"] < sum(r.seconds for r in graded["results"].values())


# ---------------------------------------------------------------------------- sandbox
@needs_sandbox
def test_the_sandbox_blocks_network_writes_and_reads(graded):
    res = result(graded, "attacker")
    errors = {k: m for k, _, m, _ in res.cell_errors}
    for key in (
        "attack-local",
        "attack-net",
        "attack-write-repo",
        "attack-write-sub",
        "attack-read-sub",
        "attack-read-solution",
    ):
        assert key in errors, f"{key} raised nothing"
        assert "ATTACK SUCCEEDED" not in errors[key], errors[key]
    assert not graded["connected"], "a connection reached the host"
    assert "Read-only file system" in errors["attack-write-repo"]
    assert not (grading.REPO / "grading-attack.txt").exists()
    assert not (graded["outside"] / "written.txt").exists()
    assert json.loads((graded["folder"] / "solution.ipynb").read_text(encoding="utf-8"))["cells"]
    assert "FileNotFoundError" in errors["attack-read-sub"]
    assert "FileNotFoundError" in errors["attack-read-solution"]
    assert float(row(graded, "attacker")["total"]) == 0


def test_a_loop_that_swallows_the_alarm_is_killed_at_the_submission_limit(tmp_path):
    """The per-submission wall clock is the last line: the run ends within it."""
    folder = tmp_path / "subs"
    folder.mkdir()
    stubborn = insert_after(
        reduced(),
        "a07-02",
        code(
            "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass",
            "stubborn",
        ),
    )
    nbformat.write(stubborn, folder / "stubborn.ipynb")
    opts = grading.Options(
        cell_timeout=2, check_timeout=5, timeout=12, jobs=1, quiet=True, sandbox=SANDBOX
    )
    start = time.monotonic()
    (r,) = grading.grade(NUMBER, folder, tmp_path / "out", opts)
    assert r.status == "timeout" and r.total == 0
    assert time.monotonic() - start < 12 + 15  # the limit, plus set-up and clean-up


def test_hidden_tests_count(tmp_path):
    """A graded cell's ### BEGIN HIDDEN TESTS region runs after its public check."""
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nb = _nb()
    edit(
        nb,
        "a07-11",
        "attention.check_attention_mask(attention_mask)",
        "attention.check_attention_mask(attention_mask)\n"
        "### BEGIN HIDDEN TESTS\nassert attention_mask.__doc__, 'a docstring'\n### END HIDDEN TESTS",
    )
    nbformat.write(nb, solutions / SOLUTION.name)
    spec = grading.load_spec(NUMBER, solutions)
    (ex,) = [e for e in spec.exercises if e.grade_id == "attention_mask"]
    assert "HIDDEN" not in ex.public and "__doc__" in ex.hidden
    folder = tmp_path / "subs"
    folder.mkdir()
    nbformat.write(
        edit(reduced(), "a07-10", '"""[B, n, n] bool mask', '"""[B, n, n] bool mask'),
        folder / "good.ipynb",
    )
    no_doc = reduced()
    cell = next(c for c in no_doc.cells if c.id == "a07-10")
    cell.source = "\n".join(ln for ln in cell.source.splitlines() if '"""' not in ln)
    nbformat.write(no_doc, folder / "no_doc.ipynb")
    opts = grading.Options(**{**FAST.__dict__, "sandbox": SANDBOX})
    results = {
        r.student: r for r in grading.grade(NUMBER, folder, tmp_path / "out", opts, solutions)
    }
    assert results["good"].total == MAX
    bad = results["no_doc"]
    assert bad.total == MAX - POINTS["attention_mask"]
    assert "hidden tests failed" in bad.outcomes["attention_mask"].message
    assert "__doc__" not in bad.outcomes["attention_mask"].message  # hidden stays hidden


# -------------------------------------------------------------------- spec and refusal
@pytest.mark.parametrize("solution", sorted(gen.SOLUTIONS.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_solution_declares_valid_points(solution):
    nb = nbformat.read(solution, as_version=4)
    assert not grading.validate(nb), grading.validate(nb)
    spec = grading.load_spec(solution.name[:2])
    assert spec.exercises and all(e.points > 0 for e in spec.exercises)
    checks = [c for c in nb.cells if c.cell_type == "code" and grading.CHECK_CALL.search(c.source)]
    assert {c.id for c in checks} == spec.graded_cell_ids
    # the generator carries the metadata (and the ids) into the assignment
    student = nbformat.read(gen.assignment_path(solution), as_version=4)
    assert [c.metadata.get("nbgrader") for c in student.cells] == [
        c.metadata.get("nbgrader") for c in nb.cells
    ]


def test_declare_adds_nbgrader_metadata():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        code("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION", "ex-1"),
        code("losses.check_f(f)", "ex-1-check"),
        nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
    ]
    added = grading.declare(nb, points=2)
    assert len(added) == 3 and not grading.validate(nb)
    assert nb.cells[1].metadata["nbgrader"] == {
        "grade": True, "solution": False, "locked": True, "grade_id": "f", "points": 2, "schema_version": 3,
    }  # fmt: skip
    assert nb.cells[0].metadata["nbgrader"]["solution"] is True
    assert nb.cells[2].metadata["nbgrader"]["points"] == 0  # written: read by the instructor
    nb.cells[1].metadata["nbgrader"]["points"] = -1
    assert grading.validate(nb)


def test_grading_refuses_without_a_sandbox(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(grading._PROBE, "result", (None, "bubblewrap (`bwrap`) is not installed"))
    with pytest.raises(SystemExit, match="--no-sandbox"):
        grading.grade(NUMBER, tmp_path, tmp_path / "out", grading.Options(quiet=True))
    assert grading.main([NUMBER, str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "bubblewrap" in capsys.readouterr().err
    # with --no-sandbox it runs, after saying what that risks (an empty folder: nothing to do)
    assert (
        grading.main([NUMBER, str(tmp_path), "--out", str(tmp_path / "out"), "--no-sandbox"]) == 0
    )
    assert "WITHOUT a sandbox" in capsys.readouterr().err


def test_unknown_assignment_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no solution notebook"):
        grading.load_spec("42")
    shutil.rmtree(tmp_path, ignore_errors=True)

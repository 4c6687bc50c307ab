"""Grade a folder of submitted assignment notebooks, safely: ``make grade A=07 SUBMISSIONS=dir``.

    python -m utils.grading 07 submissions/ --out grades-07/
    python -m utils.grading declare solutions/09_x.ipynb   # add default points metadata

Every ``*.ipynb`` in the folder is one submission; its file stem is the student's id. The
result is ``OUT/grades.csv`` (one row per submission: ``student``, one column per exercise
with the points earned, ``total``, ``max_total``, ``status``, ``notes``) and
``OUT/feedback/<student>.md`` (PASS/FAIL per exercise with the self-check's printout and
hint, the errors of the student's cells, and the written answers, for the instructor).

**Points** live in the solution notebooks' cell metadata in nbgrader's schema: a graded
cell (the check cell below an exercise) carries ``{"nbgrader": {"grade": true,
"solution": false, "locked": true, "grade_id": "...", "points": 2, "schema_version": 3}}``.
The generator copies the metadata into the assignments.

**How one submission is graded** (:mod:`utils.grading_runner`, in a fresh process in a
bubblewrap sandbox): the student's code cells run in order, except the graded (check)
cells, which are recognised by cell id or nbgrader metadata, never by position; then the
grader's own copy of every graded cell runs (the public check and the instructor's hidden
tests, from ``solutions/``), with the check modules as imported before any student code.
Changes to the checks, ``utils`` or the libraries they use (``torch``, ``numpy``,
``builtins`` ...) are detected by comparing snapshots: the submission is ``tampered`` and
the affected exercises score 0.

**Sandbox** (Linux, ``bwrap`` from Debian's ``bubblewrap``): new user, network, PID, IPC
and UTS namespaces (no network at all), all capabilities dropped; read-only binds of the
system, the Python installation, the course (with ``solutions/``, ``.git``, the
submissions and the output folder hidden) and the data cache; a private ``/tmp`` (tmpfs);
per-cell and per-submission wall-clock limits; address-space and file-size limits. A
crash (``os._exit``, segfault) is retried without the crashing cell or check, so the other
exercises still count.

**Limits.** The sandbox protects the instructor's machine and the other submissions. The
tamper detection catches redefined or patched checks, helpers and library functions,
tracing hooks and torch modes; a submission that reads the grader's source and attacks its
bookkeeping from inside the same process (a background thread that patches only while a
check runs, forged result lines built from the process's memory) is not ruled out: the
feedback and ``notes`` keep what is needed to look closer. There is no limit on the number
of processes (a fork bomb is ended by the per-submission time limit).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .assignments import (
    BEGIN_HIDDEN,
    END_HIDDEN,
    SOLUTIONS,
    strip_solution,
)

REPO = Path(__file__).resolve().parent.parent
SCHEMA_VERSION = 3
CHECK_CALL = re.compile(r"^\s*(\w+)\.check_(\w+)\s*\(", re.MULTILINE)
GRADE_ID = re.compile(r"^[A-Za-z0-9_\-]+$")

STATUS_ORDER = ["invalid notebook", "tampered", "crashed", "timeout", "ok"]

NO_SANDBOX_WARNING = """\
WARNING: grading WITHOUT a sandbox (--no-sandbox). Every submission's code runs as YOU,
with your files, your network and your credentials: a submission can read or delete your
files (including the solutions with the hidden tests and the other students' notebooks),
send them anywhere, or leave processes running. Only the time and memory limits apply.
Use this only for notebooks you trust, or inside a throw-away virtual machine."""

NO_BWRAP = """\
No sandbox is available: {why}
Grading runs students' code; without a sandbox it could read, change or send your files.
On Debian/Ubuntu install bubblewrap (`sudo apt-get install bubblewrap`) and run again.
Elsewhere (macOS, Windows) grade inside a Linux virtual machine or container, or pass
--no-sandbox if you accept the risk (see --help)."""


# ------------------------------------------------------------------------------ the spec
@dataclass
class Exercise:
    grade_id: str
    cell_id: str
    points: float
    public: str  # the check cell without its hidden tests
    hidden: str  # the hidden tests ("" if none)


@dataclass
class Answer:
    grade_id: str
    cell_id: str
    points: float
    template: str  # the assignment's version of the cell


@dataclass
class Spec:
    number: str
    name: str
    exercises: list[Exercise]
    answers: list[Answer]
    graded_cell_ids: set[str] = field(default_factory=set)

    @property
    def max_total(self) -> float:
        return sum(e.points for e in self.exercises)


def solution_path(number: str, solutions: Path = SOLUTIONS) -> Path:
    number = f"{int(number):02d}"
    found = sorted(solutions.glob(f"{number}_*.ipynb"))
    if not found:
        known = ", ".join(sorted(p.name[:2] for p in solutions.glob("[0-9][0-9]_*.ipynb")))
        raise SystemExit(f"no solution notebook {solutions}/{number}_*.ipynb (known: {known})")
    return found[0]


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _has_solution(source: str) -> bool:
    return any(line.strip() == "### BEGIN SOLUTION" for line in source.splitlines())


def _split_hidden(source: str) -> tuple[str, str]:
    public = strip_solution(source, "code")
    hidden, inside = [], False
    for line in source.splitlines():
        if line.strip() == BEGIN_HIDDEN:
            inside = True
        elif line.strip() == END_HIDDEN:
            inside = False
        elif inside:
            hidden.append(line)
    return public, "\n".join(hidden)


def declare(nb: nbformat.NotebookNode, points: float = 1) -> list[str]:
    """Add nbgrader metadata where it is missing; return what was added.

    Check cells (a call ``module.check_name(...)``) become graded cells worth ``points``
    with grade id ``name``; code cells with a ``### BEGIN SOLUTION`` region become
    solution cells; markdown cells with one become written answers (manually graded,
    0 points: they are collected for the instructor, not scored automatically).
    """
    added, used = [], {_nbgrader(c).get("grade_id") for c in nb.cells}
    for cell in nb.cells:
        if _nbgrader(cell):
            continue
        source, cid = cell.source, cell.get("id") or ""
        meta = None
        call = CHECK_CALL.search(source) if cell.cell_type == "code" else None
        if cell.cell_type == "code" and _has_solution(source):
            meta = {"grade": False, "solution": True, "locked": False, "grade_id": cid}
        elif call:
            gid, k = call.group(2), 2
            while gid in used:
                gid, k = f"{call.group(2)}_{k}", k + 1
            meta = {
                "grade": True,
                "solution": False,
                "locked": True,
                "grade_id": gid,
                "points": points,
            }
        elif cell.cell_type == "markdown" and _has_solution(source):
            meta = {"grade": True, "solution": True, "locked": False, "grade_id": cid, "points": 0}
        if meta:
            meta["schema_version"] = SCHEMA_VERSION
            cell.metadata["nbgrader"] = meta
            used.add(meta["grade_id"])
            added.append(
                f"{cid}: {meta['grade_id']}"
                + (f" ({meta['points']} points)" if "points" in meta else "")
            )
    return added


def validate(nb: nbformat.NotebookNode) -> list[str]:
    """Problems with a solution notebook's nbgrader metadata (an empty list if none)."""
    problems, seen = [], set()
    for cell in nb.cells:
        meta, cid = _nbgrader(cell), cell.get("id")
        if not meta:
            if cell.cell_type == "code" and CHECK_CALL.search(cell.source):
                problems.append(f"cell {cid}: a check cell without nbgrader metadata")
            if _has_solution(cell.source):
                problems.append(f"cell {cid}: a solution region without nbgrader metadata")
            continue
        gid = meta.get("grade_id")
        if not isinstance(gid, str) or not GRADE_ID.match(gid):
            problems.append(f"cell {cid}: grade_id {gid!r} is not letters, digits, _ and -")
        elif gid in seen:
            problems.append(f"cell {cid}: grade_id {gid!r} is used twice")
        seen.add(gid)
        if meta.get("grade"):
            pts = meta.get("points")
            if not isinstance(pts, int | float) or isinstance(pts, bool) or pts < 0:
                problems.append(f"cell {cid}: points must be a number >= 0, not {pts!r}")
        if meta.get("grade") and not meta.get("solution") and cell.cell_type != "code":
            problems.append(f"cell {cid}: a graded (test) cell must be a code cell")
        if meta.get("solution") and not _has_solution(cell.source):
            problems.append(f"cell {cid}: marked solution but has no ### BEGIN SOLUTION region")
    return problems


def load_spec(number: str, solutions: Path = SOLUTIONS) -> Spec:
    """The exercises (graded cells) and written answers of assignment ``number``."""
    path = solution_path(number, solutions)
    nb = nbformat.read(path, as_version=4)
    if not any(_nbgrader(c) for c in nb.cells):
        added = declare(nb)
        print(
            f"note: {path.name} declares no points (nbgrader metadata); grading with 1 point "
            f"per check ({len(added)} cells). Run `python -m utils.grading declare {path}`.",
            file=sys.stderr,
        )
    problems = validate(nb)
    if problems:
        raise SystemExit(f"{path.name}: " + "; ".join(problems))
    exercises, answers = [], []
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if not meta.get("grade"):
            continue
        if meta.get("solution"):  # a written answer, read by the instructor
            answers.append(
                Answer(
                    meta["grade_id"],
                    cell.id,
                    meta.get("points", 0),
                    strip_solution(cell.source, cell.cell_type),
                )
            )
        else:
            public, hidden = _split_hidden(cell.source)
            exercises.append(Exercise(meta["grade_id"], cell.id, meta["points"], public, hidden))
    return Spec(
        number=path.name[:2],
        name=path.stem,
        exercises=exercises,
        answers=answers,
        graded_cell_ids={e.cell_id for e in exercises},
    )


# ------------------------------------------------------------------------------ sandbox
_PROBE: dict[str, object] = {}


def _bwrap_base(userns: bool) -> list[str]:
    flags = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if userns:
        flags += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    return flags


def find_sandbox() -> tuple[list[str] | None, str]:
    """(bwrap command prefix, description) or (None, why not). Probed once per process."""
    if "result" in _PROBE:
        return _PROBE["result"]  # type: ignore[return-value]
    bwrap = shutil.which("bwrap")
    result: tuple[list[str] | None, str]
    if sys.platform != "linux" or not bwrap:
        result = (
            None,
            "bubblewrap (`bwrap`) is not installed"
            if sys.platform == "linux"
            else f"no bubblewrap on {sys.platform}",
        )
    else:
        result = (None, "")
        for userns in (True, False):
            cmd = [
                bwrap,
                *_bwrap_base(userns),
                "--ro-bind",
                "/",
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "true",
            ]
            try:
                done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                result = (None, f"bwrap failed to start: {e}")
                continue
            if done.returncode == 0:
                how = (
                    "user+network+PID+IPC+UTS namespaces"
                    if userns
                    else "network+PID+IPC+UTS namespaces (no user namespace)"
                )
                result = ([bwrap, *_bwrap_base(userns)], f"bubblewrap, {how}, capabilities dropped")
                break
            result = (None, f"bwrap does not work here: {done.stderr.strip()[:300]}")
    _PROBE["result"] = result
    return result


def _inside(path: Path, parents: list[Path]) -> bool:
    return any(path == p or p in path.parents for p in parents)


def sandbox_args(prefix: list[str], work: Path, hide: list[Path], env: dict[str, str]) -> list[str]:
    """The bwrap command line around the runner; ``work`` is bound writable at /grader."""
    ro = []
    for p in ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/sbin", "/opt"):
        if os.path.exists(p):
            ro.append(Path(p))
    etc = [
        "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
        "/etc/fonts", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
        "/etc/ssl", "/etc/matplotlibrc", "/etc/mime.types",
    ]  # fmt: skip
    python_homes = {
        Path(sys.base_prefix).resolve(),
        Path(sys.prefix).resolve(),
        Path(sys.executable).resolve().parent.parent,
    }
    data = os.environ.get("COURSE_DATA_DIR")
    extra = [REPO, *python_homes] + ([Path(data).expanduser().resolve()] if data else [])
    hidden = [p.resolve() for p in hide]
    for entry in sys.path:  # e.g. a user site-packages folder with the course installed
        p = Path(entry).resolve() if entry else None
        if (
            p
            and p.is_dir()
            and p != Path("/")
            and not any(p == h or p in h.parents or h in p.parents for h in hidden)
        ):
            extra.append(p)
    # A private /tmp first: the binds below may lie inside /tmp (a clone or a virtual
    # environment under /tmp, as in CI) and must be mounted on top of it, not hidden by it.
    args = list(prefix)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(512 << 20), "--tmpfs", "/tmp"]
    for p in ro:
        args += ["--ro-bind", str(p), str(p)]
    for p in etc:
        args += ["--ro-bind-try", p, p]
    bound = list(ro)
    for p in sorted(set(extra), key=lambda q: len(q.parts)):
        if not _inside(p, bound) and p.exists():
            args += ["--ro-bind", str(p), str(p)]
            bound.append(p)
    # Hide what a submission must not see even where it lies inside a bound folder.
    for p in [REPO / "solutions", REPO / ".git", *hide]:
        p = p.resolve()
        if _inside(p, bound) and p.is_dir():
            args += ["--tmpfs", str(p)]
    args += ["--bind", str(work), "/grader", "--dir", "/tmp/work", "--dir", "/tmp/home"]
    args += ["--chdir", "/tmp/work", "--clearenv"]
    for k, v in env.items():
        args += ["--setenv", k, v]
    return args


# ---------------------------------------------------------------------------- grading
@dataclass
class Options:
    cell_timeout: float = 120.0
    check_timeout: float = 60.0
    timeout: float = 900.0  # per submission, all attempts together
    memory: int = 8 << 30  # address space (torch alone maps ~3.3 GB of it)
    file_size: int = 32 << 20  # any file written, the process's own output log included
    jobs: int = 0
    sandbox: bool = True
    retries: int = 2  # after a crash, re-run without the crashing cell / check
    quiet: bool = False


@dataclass
class Outcome:
    status: str  # pass, fail, todo, error, timeout, crashed, not run, tampered
    message: str = ""
    output: str = ""


@dataclass
class Result:
    student: str
    status: str
    points: dict[str, float]
    outcomes: dict[str, Outcome]
    cell_errors: list[tuple[str, str, str, str]]  # (cell key, status, message, output)
    answers: list[tuple[Answer, str, bool]]  # (answer, student's text, answered?)
    notes: list[str]
    seconds: float = 0.0
    tampered: list[str] = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds of the runs that finished
    max_rss_mb: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.points.values())


def _cell_plan(spec: Spec, nb) -> tuple[list[dict], list[tuple[Answer, str, bool]], list[str]]:
    """The student's code cells to run, their written answers, notes."""
    cells, notes, counts = [], [], {}
    graded_ids = spec.graded_cell_ids
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = _nbgrader(cell)
        cid = cell.get("id") or f"cell-{index}"
        if cid in graded_ids or (meta.get("grade") and not meta.get("solution")):
            continue  # a check cell: the grader runs its own copy
        counts[cid] = counts.get(cid, 0) + 1
        key = cid if counts[cid] == 1 else f"{cid}#{counts[cid]}"
        cells.append({"key": key, "source": cell.source})
    answers = []
    for ans in spec.answers:
        texts = []
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            same = cell.get("id") == ans.cell_id or _nbgrader(cell).get("grade_id") == ans.grade_id
            if same and cell.source not in texts:
                texts.append(cell.source)
        text = "\n\n".join(texts)
        answered = (
            bool(text.strip())
            and text.strip() != ans.template.strip()
            and "YOUR ANSWER HERE" not in text
        )
        answers.append((ans, text, answered))
    missing = [a.grade_id for a, t, _ in answers if not t]
    if missing:
        notes.append(f"answer cells not found: {', '.join(missing)}")
    return cells, answers, notes


def _read_events(path: Path, token: str) -> tuple[list[dict], bool]:
    """The runner's events; the flag says a line was forged (wrong token or not JSON)."""
    events, forged = [], False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(32 << 20)
    except OSError:
        return [], False
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            forged = True
            continue
        if not isinstance(event, dict) or event.get("token") != token:
            forged = True
            continue
        events.append(event)
    return events, forged


def _tail(path: Path, n: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _runner_env(home: str, mplconfig: str | None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp" if home.startswith("/tmp") else home,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
        "COURSE_PLAIN_PROGRESS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "IPYTHONDIR": f"{home}/.ipython",
    }
    if mplconfig:
        env["MPLCONFIGDIR"] = mplconfig
    if os.environ.get("COURSE_DATA_DIR"):
        env["COURSE_DATA_DIR"] = str(Path(os.environ["COURSE_DATA_DIR"]).expanduser().resolve())
    return env


def _run_once(
    job: dict, work: Path, opts: Options, hide: list[Path], seconds: float, mpl: Path | None
):
    """One run of the runner: (events, forged, returncode, killed_for_time, log tail)."""
    token = secrets.token_hex(16)
    events_host = work / "events.jsonl"
    events_host.unlink(missing_ok=True)
    log = work / "output.log"
    if opts.sandbox:
        prefix, _ = find_sandbox()
        home = "/tmp/home"
        env = _runner_env(home, "/grader/mpl")
        job = {**job, "events": "/grader/events.jsonl"}
        if mpl:
            shutil.copytree(mpl, work / "mpl", dirs_exist_ok=True)
        cmd = sandbox_args(prefix, work, hide, env)  # type: ignore[arg-type]
    else:
        home = str(work / "home")
        os.makedirs(home, exist_ok=True)
        env = _runner_env(home, f"{home}/mpl")
        if mpl:
            shutil.copytree(mpl, Path(home) / "mpl", dirs_exist_ok=True)
        job = {**job, "events": str(events_host)}
        cmd = []
    boot = f"import sys; sys.path[0] = {str(REPO)!r}; from utils.grading_runner import main; main()"
    cmd += [sys.executable, "-X", "utf8", "-c", boot]
    job = {**job, "token": token}
    payload = json.dumps(job).encode("utf-8")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env if not opts.sandbox else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            cwd=str(work) if not opts.sandbox else None,
        )
        writer = threading.Thread(target=_feed, args=(proc, payload), daemon=True)
        writer.start()
        killed = False
        try:
            proc.wait(timeout=max(seconds, 1.0))
        except subprocess.TimeoutExpired:
            killed = True
            _kill(proc)
        writer.join(timeout=5)
    events, forged = _read_events(events_host, token)
    return events, forged, proc.returncode, killed, _tail(log)


def _feed(proc, payload: bytes) -> None:
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()


def _exit_reason(rc: int | None) -> str:
    """'signal SIGSEGV' for a process killed by a signal (bwrap reports 128 + the signal)."""
    number = -rc if rc is not None and rc < 0 else (rc - 128 if rc and rc > 128 else None)
    try:
        return f"killed by signal {signal.Signals(number).name}" if number else f"exit code {rc}"
    except ValueError:
        return f"exit code {rc}"


def _affected(spec: Spec, names: list[str]) -> set[str]:
    """The exercises whose grading a change to ``names`` can have influenced."""
    hit = set()
    for name in names:
        m = re.match(r"utils\.exercises\.\w+\.(check_\w+)(?: \(code\))?$", name)
        if m:
            hit |= {
                e.grade_id for e in spec.exercises if re.search(rf"\b{m.group(1)}\s*\(", e.public)
            }
        else:
            return {e.grade_id for e in spec.exercises}  # a shared helper or library: all
    return hit


def grade_submission(
    path: Path, spec: Spec, opts: Options, hide: list[Path], scratch: Path, mpl: Path | None = None
) -> Result:
    """Grade one notebook; never raises for anything the notebook does."""
    student = path.stem
    start = time.monotonic()
    result = Result(student, "ok", {e.grade_id: 0.0 for e in spec.exercises}, {}, [], [], [])
    try:
        text = path.read_bytes()
        if len(text) > 200 << 20:
            raise ValueError("larger than 200 MB")
        nb = nbformat.reads(text.decode("utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise TypeError("no list of cells")
    except Exception as e:  # noqa: BLE001 - anything unreadable is an invalid notebook
        result.status = "invalid notebook"
        result.notes.append(f"cannot read the notebook: {type(e).__name__}: {str(e)[:300]}")
        result.outcomes = {
            e.grade_id: Outcome("not run", "invalid notebook") for e in spec.exercises
        }
        return result
    cells, result.answers, result.notes = _cell_plan(spec, nb)
    job = {
        "cells": cells,
        "exercises": [
            {"grade_id": e.grade_id, "public": e.public, "hidden": e.hidden} for e in spec.exercises
        ],
        "cell_timeout": opts.cell_timeout,
        "check_timeout": opts.check_timeout,
        "memory_bytes": opts.memory,
        "file_bytes": opts.file_size,
        "cell_output_chars": 4000,
        "check_output_chars": 20000,
        "skip": [],
    }
    work = Path(tempfile.mkdtemp(prefix="sub-", dir=scratch))
    skip: list[str] = []
    flags: set[str] = set()
    outcomes: dict[str, Outcome] = {}
    cell_results: dict[str, tuple[str, str, str]] = {}
    tampered: list[str] = []
    affected: set[str] = set()
    try:
        for attempt in range(opts.retries + 1):
            left = opts.timeout - (time.monotonic() - start)
            if left <= 1:
                flags.add("timeout")
                result.notes.append("the submission's time limit ran out")
                break
            events, forged, rc, killed, log = _run_once(
                {**job, "skip": skip}, work, opts, hide, left, mpl
            )
            if forged:
                tampered.append("the grader's result file (lines not written by the grader)")
                affected |= {e.grade_id for e in spec.exercises}
            last_start, done, ready = None, False, False
            seen_ex: set[str] = set()
            for ev in events:
                kind = ev.get("event")
                if kind == "ready":
                    ready = True
                elif kind in ("cell_start", "check_start"):
                    last_start = (
                        ("cell", ev.get("key"))
                        if kind == "cell_start"
                        else ("check", ev.get("grade_id"))
                    )
                elif kind == "cell":
                    cell_results[ev["key"]] = (
                        ev.get("status", ""),
                        ev.get("message", ""),
                        ev.get("output", ""),
                    )
                    if ev.get("status") == "timeout":
                        flags.add("timeout")
                    last_start = None
                elif kind == "tampered":
                    tampered += ev.get("names", [])
                    affected |= _affected(spec, ev.get("names", []))
                elif kind == "exercise":
                    gid = ev.get("grade_id")
                    if gid in seen_ex or last_start != ("check", gid):
                        tampered.append(f"the grader's result for {gid} (written out of order)")
                        affected.add(gid)
                    seen_ex.add(gid)
                    outcomes[gid] = Outcome(
                        ev.get("status", "error"), ev.get("message", ""), ev.get("output", "")
                    )
                    if ev.get("status") == "timeout":
                        flags.add("timeout")
                    if ev.get("tampered"):
                        tampered += ev["tampered"]
                        affected |= {gid} | (
                            _affected(spec, ev["tampered"]) - {gid}
                            if all("check_" in n for n in ev["tampered"])
                            else set()
                        )
                    last_start = None
                elif kind == "done":
                    done = True
                    result.cpu += float(ev.get("cpu") or 0)
                    result.max_rss_mb = max(
                        result.max_rss_mb, float(ev.get("max_rss_kb") or 0) / 1024
                    )
            if done:
                break
            if killed:
                flags.add("timeout")
                result.notes.append(f"stopped at the submission's time limit ({opts.timeout:g} s)")
                where = last_start
                if where and where[0] == "check":
                    outcomes[where[1]] = Outcome(
                        "timeout", "the submission's time limit ran out during this check"
                    )
                elif where:
                    cell_results[where[1]] = (
                        "timeout",
                        "the submission's time limit ran out in this cell",
                        "",
                    )
                break
            # The process died: os._exit, a segfault, the memory limit, ...
            flags.add("crashed")
            why = _exit_reason(rc)
            if not ready:
                result.notes.append(f"the grader's runner did not start ({why}): {log[-1500:]}")
                break
            if last_start is None:
                result.notes.append(f"the process died between steps ({why})")
                break
            kind, key = last_start
            result.notes.append(
                f"{'cell' if kind == 'cell' else 'check of'} {key} crashed the process ({why}); re-run without it"
            )
            if kind == "check":
                outcomes[key] = Outcome(
                    "crashed", f"the process died during this check ({why})", log[-1500:]
                )
            else:
                cell_results[key] = (
                    "crashed",
                    f"the process died in this cell ({why})",
                    log[-1500:],
                )
            skip.append(key)
        else:
            result.notes.append("gave up after repeated crashes")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for e in spec.exercises:
        out = outcomes.get(e.grade_id, Outcome("not run", "the grading did not reach this check"))
        if e.grade_id in affected:
            out = Outcome(
                "tampered",
                "checks or libraries were changed by the submission; 0 points",
                out.output,
            )
        outcomes[e.grade_id] = out
        result.points[e.grade_id] = e.points if out.status == "pass" else 0.0
    result.outcomes = outcomes
    result.cell_errors = [(k, s, m, o) for k, (s, m, o) in cell_results.items() if s != "ok"]
    result.tampered = sorted(set(tampered))
    if result.tampered:
        flags.add("tampered")
        result.notes.append("changed by the submission: " + ", ".join(result.tampered[:12]))
    result.status = next((s for s in STATUS_ORDER if s in flags), "ok")
    result.seconds = time.monotonic() - start
    return result


# ---------------------------------------------------------------------------- reports
def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def write_grades(results: list[Result], spec: Spec, out: Path) -> Path:
    path = out / "grades.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "student",
                *[e.grade_id for e in spec.exercises],
                "total",
                "max_total",
                "status",
                "notes",
            ]
        )
        for r in sorted(results, key=lambda r: r.student):
            w.writerow(
                [
                    r.student,
                    *[_fmt(r.points[e.grade_id]) for e in spec.exercises],
                    _fmt(r.total),
                    _fmt(spec.max_total),
                    r.status,
                    " | ".join(r.notes),
                ]
            )
    return path


def _fence(text: str) -> str:
    text = text.rstrip("\n").replace("~~~~", "~ ~ ~ ~")
    return f"~~~~text\n{text}\n~~~~"


def feedback_markdown(r: Result, spec: Spec) -> str:
    label = {"pass": "PASS", "fail": "FAIL", "todo": "TODO", "error": "FAIL (error)", "timeout": "FAIL (time limit)",
             "crashed": "FAIL (crashed)", "not run": "not graded", "tampered": "0 (tampered)"}  # fmt: skip
    lines = [
        f"# Assignment {spec.number} ({spec.name}): feedback for {r.student}",
        "",
        f"**Score: {_fmt(r.total)} / {_fmt(spec.max_total)}**, status: `{r.status}`",
        "",
        "| exercise | points | result |",
        "|---|---|---|",
    ]
    for e in spec.exercises:
        o = r.outcomes[e.grade_id]
        lines.append(
            f"| `{e.grade_id}` | {_fmt(r.points[e.grade_id])} / {_fmt(e.points)} | {label.get(o.status, o.status)} |"
        )
    if r.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in r.notes]]
    lines += ["", "## The checks", ""]
    for e in spec.exercises:
        o = r.outcomes[e.grade_id]
        lines.append(f"### `{e.grade_id}`: {label.get(o.status, o.status)}")
        lines.append("")
        if o.message:
            lines += [o.message, ""]
        if o.output.strip() and o.status != "pass":
            lines += [_fence(o.output), ""]
    if r.cell_errors:
        lines += ["## Cells of the notebook that did not run cleanly", ""]
        for key, status, message, output in r.cell_errors:
            lines += [f"- cell `{key}`: {status}: {message}"]
            if output.strip() and status != "error":
                lines += ["", _fence(output[-2000:]), ""]
    lines += ["", "## Written answers (for the instructor; not graded automatically)", ""]
    if not r.answers:
        lines.append("(this assignment has no written answers)")
    for ans, text, answered in r.answers:
        pts = f", {_fmt(ans.points)} points to give by hand" if ans.points else ""
        lines += [f"### `{ans.grade_id}`{'' if answered else ' (not answered)'}{pts}", ""]
        lines += [("> " + text.replace("\n", "\n> ")) if text.strip() else "(cell missing)", ""]
    return "\n".join(lines).rstrip() + "\n"


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _prepare_matplotlib(scratch: Path) -> Path | None:
    """A matplotlib font cache built once, copied into every sandbox (saves seconds each)."""
    folder = scratch / "mplcache"
    folder.mkdir(exist_ok=True)
    try:  # the instructor's own cache, if matplotlib built one already
        import matplotlib

        found = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
        for f in found:
            shutil.copy2(f, folder / f.name)
        if found:
            return folder
    except Exception as e:  # noqa: BLE001 - then build one
        print(f"note: no matplotlib font cache to copy ({e}); building one", file=sys.stderr)
    env = {**os.environ, "MPLCONFIGDIR": str(folder), "MPLBACKEND": "Agg"}
    try:
        subprocess.run(
            [sys.executable, "-c", "import matplotlib.font_manager"],
            env=env,
            timeout=300,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return folder


def grade(
    number: str,
    submissions: Path,
    out: Path,
    opts: Options | None = None,
    solutions: Path = SOLUTIONS,
) -> list[Result]:
    """Grade every ``*.ipynb`` in ``submissions``; write grades.csv and feedback/."""
    opts = opts or Options()
    spec = load_spec(number, solutions)
    if opts.sandbox:
        prefix, why = find_sandbox()
        if prefix is None:
            raise SystemExit(NO_BWRAP.format(why=why))
    paths = sorted(p for p in Path(submissions).glob("*.ipynb") if p.is_file())
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    jobs = opts.jobs or cores
    hide = [Path(submissions).resolve(), out.resolve(), Path(solutions).resolve()]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="grading-") as tmp:
        scratch = Path(tmp)
        mpl = _prepare_matplotlib(scratch)
        started = time.monotonic()

        def one(p: Path) -> Result:
            try:
                return grade_submission(p, spec, opts, hide, scratch, mpl)
            except Exception as e:  # noqa: BLE001 - a grader bug must not stop the others
                r = Result(p.stem, "crashed", {e.grade_id: 0.0 for e in spec.exercises},
                           {e.grade_id: Outcome("not run") for e in spec.exercises}, [], [], [f"grader error: {e!r}"])  # fmt: skip
                return r

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(one, p): p for p in paths}
            for i, fut in enumerate(concurrent.futures.as_completed(futures), start=1):
                r = fut.result()
                results.append(r)
                name = _SAFE.sub("_", r.student) or "student"
                (out / "feedback" / f"{name}.md").write_text(
                    feedback_markdown(r, spec), encoding="utf-8"
                )
                if not opts.quiet:
                    print(
                        f"[{i}/{len(paths)}] {r.student}: {_fmt(r.total)}/{_fmt(spec.max_total)} {r.status} ({r.seconds:.1f} s)",
                        flush=True,
                    )
        elapsed = time.monotonic() - started
    write_grades(results, spec, out)
    if not opts.quiet:
        print(
            f"graded {len(results)} submissions in {elapsed:.1f} s with {jobs} parallel jobs -> {out / 'grades.csv'}"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["declare"]:
        p = argparse.ArgumentParser(prog="python -m utils.grading declare")
        p.add_argument("notebooks", nargs="+", type=Path)
        p.add_argument("--points", type=float, default=1)
        a = p.parse_args(argv[1:])
        for path in a.notebooks:
            nb = nbformat.read(path, as_version=4)
            added = declare(nb, a.points)
            if added:
                path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
            print(f"{path}: " + ("; ".join(added) if added else "nothing to add"))
            for problem in validate(nb):
                print(f"  problem: {problem}")
        return 0
    p = argparse.ArgumentParser(
        prog="python -m utils.grading",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("assignment", help="two-digit number, e.g. 07")
    p.add_argument("submissions", type=Path, help="folder of submitted notebooks (*.ipynb)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--cell-timeout",
        type=float,
        default=Options.cell_timeout,
        help="seconds per cell (default %(default)s)",
    )
    p.add_argument(
        "--check-timeout",
        type=float,
        default=Options.check_timeout,
        help="seconds per check (default %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=Options.timeout,
        help="seconds per submission (default %(default)s)",
    )
    p.add_argument(
        "--memory",
        type=float,
        default=Options.memory / 2**30,
        help="GiB of address space per submission (default %(default)s)",
    )
    p.add_argument(
        "--jobs", type=int, default=0, help="parallel submissions (default: the number of cores)"
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run students' code unsandboxed (dangerous, see above)",
    )
    a = p.parse_args(argv)
    if a.no_sandbox:
        print(NO_SANDBOX_WARNING, file=sys.stderr)
    opts = Options(
        a.cell_timeout,
        a.check_timeout,
        a.timeout,
        int(a.memory * 2**30),
        jobs=a.jobs,
        sandbox=not a.no_sandbox,
    )
    if opts.sandbox:
        prefix, how = find_sandbox()
        if prefix is None:
            print(NO_BWRAP.format(why=how), file=sys.stderr)
            return 2
        print(f"sandbox: {how}")
    if not a.submissions.is_dir():
        print(f"no such folder: {a.submissions}", file=sys.stderr)
        return 2
    grade(a.assignment, a.submissions, a.out, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The process that grades ONE submission (started by :mod:`utils.grading`, in its sandbox).

It reads a job (JSON) from stdin, then

1. imports the course's checks and takes a snapshot of every protected namespace
   (``utils.*``, the modules they use such as ``torch``, ``numpy``, ``builtins``, and
   their classes), the checks' code objects, and ``sys.modules``;
2. runs the student's code cells (never their check cells) in an IPython shell, each
   under a wall-clock limit, with printed output counted but only its head kept;
3. compares the snapshot: a redefined or patched check, helper, ``torch`` function ...
   is *tampering*; the originals are put back and the affected exercises score 0;
4. runs the grader's own copy of every graded cell (the public check, then the
   instructor's hidden tests) in a copy of the student's namespace in which the check
   modules are the pristine objects, each under a wall-clock limit, and compares the
   snapshot again after each one.

Every step is written at once as one JSON line to the events file, so the parent knows
how far a run got when it crashed or was killed. Nothing here is a security boundary
by itself: the sandbox (bubblewrap) is; this module makes cheating by monkey-patching
visible. Standard library only, apart from what the course itself imports.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pkgutil
import resource
import signal
import sys
import types

MISSING = object()
# Names that IPython itself (re)binds in builtins while it runs a cell.
_BUILTINS_VOLATILE = {"_", "__", "___", "display", "get_ipython", "__IPYTHON__", "exit", "quit"}


class CellTimeout(BaseException):
    """Raised in the main thread when a cell or a check runs past its time limit."""


def _on_alarm(signum, frame):
    # Fire again every second until cleared: a student's `except BaseException: pass`
    # inside a loop only buys one more second (then the parent's hard limit kills).
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    raise CellTimeout()


@contextlib.contextmanager
def time_limit(seconds: float):
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class CappedText(io.TextIOBase):
    """A text stream that counts everything written but keeps only the first ``keep`` chars."""

    def __init__(self, keep: int):
        self.keep, self.total, self._parts, self._kept = keep, 0, [], 0

    def write(self, s) -> int:
        if not isinstance(s, str):
            s = str(s)
        self.total += len(s)
        if self._kept < self.keep:
            piece = s[: self.keep - self._kept]
            self._parts.append(piece)
            self._kept += len(piece)
        return len(s)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self):  # some libraries look at it
        return "utf-8"

    def text(self) -> str:
        out = "".join(self._parts)
        if self.total > self._kept:
            out += f"\n[... output truncated: {self.total:,} characters printed in all]"
        return out


@contextlib.contextmanager
def captured(keep: int):
    buf = CappedText(keep)
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buf
    try:
        yield buf
    finally:
        sys.stdout, sys.stderr = old


# ------------------------------------------------------------------------------ guard
# Third-party modules whose functions and classes the checks use; private (_x) names
# in them are internal caches and are not compared.
LIBRARIES = (
    "builtins", "math", "numpy", "scipy.signal", "torch", "torch.nn", "torch.nn.functional",
    "torch.linalg", "torch.special", "torch.testing", "torch.distributions", "torch.optim",
    "torch.random", "torch.autograd", "torch.nn.utils.rnn", "torch.nn.init",
)  # fmt: skip
_LIB_PREFIXES = ("torch", "numpy", "scipy")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _behaviour(value) -> bool:
    """Code rather than state: a function, method, descriptor or class."""
    if value is MISSING:
        return False
    return callable(value) or hasattr(type(value), "__get__")


def _library_wrapper(new, old) -> bool:
    """A library's own wrapper of the original (e.g. torch wrapping torch.manual_seed or an
    optimizer's step lazily, in a function of its own files that wraps the original)."""
    code = getattr(new, "__code__", None)
    if code is None:
        return False
    folders = [
        os.path.dirname(getattr(sys.modules.get(top), "__file__", None) or "")
        for top in _LIB_PREFIXES
    ]
    if not any(f and code.co_filename.startswith(f + os.sep) for f in folders):
        return False
    chain, fn = 0, new
    while fn is not None and chain < 20:  # old must be one of the wrapped functions
        if fn is old:
            return True
        fn, chain = getattr(fn, "__wrapped__", None), chain + 1
    return False


class Guard:
    """Snapshot of the namespaces a check relies on; reports and undoes changes."""

    def __init__(self, roots: tuple[str, ...] = ("utils",), libraries: tuple[str, ...] = LIBRARIES):
        # label -> (live mapping, saved copy, strict, class or None)
        self.spaces: dict[str, tuple[dict, dict, bool, type | None]] = {}
        self.codes: dict[str, tuple] = {}
        self.sysmods: dict[str, object] = {}
        for name, mod in sorted(sys.modules.items()):
            if not isinstance(mod, types.ModuleType):
                continue
            strict = any(name == r or name.startswith(r + ".") for r in roots)
            if not strict and name not in libraries:
                continue
            self.sysmods[name] = mod
            self.spaces[name] = (vars(mod), dict(vars(mod)), strict, None)
            for attr, value in list(vars(mod).items()):
                if isinstance(value, type):
                    owner = str(getattr(value, "__module__", "")).split(".")[0]
                    if owner in ("utils", *_LIB_PREFIXES) and not (not strict and _private(attr)):
                        key = f"{value.__module__}.{value.__qualname__}"
                        if key not in self.spaces:
                            cstrict = owner == "utils"
                            self.spaces[key] = (
                                value.__dict__,
                                dict(value.__dict__),
                                cstrict,
                                value,
                            )
                if strict and isinstance(value, types.FunctionType):
                    self.codes[f"{name}.{attr}"] = (
                        value,
                        value.__code__,
                        value.__defaults__,
                        value.__kwdefaults__,
                    )

    def _diff(self, label, live, saved, strict, cls=None):
        volatile = _BUILTINS_VOLATILE if label == "builtins" else ()
        # In a class only behaviour counts (methods, properties, nested classes): libraries
        # keep state in class attributes (tqdm's lock and monitor thread, for instance).
        counts = _behaviour if cls is not None else (lambda v: True)
        changed, added = [], []
        for k, v in saved.items():
            if k in volatile or (not strict and _private(k)):
                continue
            now = live.get(k, MISSING)
            if now is not v and not _library_wrapper(now, v) and (counts(v) or counts(now)):
                changed.append(k)
        for k in live.keys() - saved.keys():
            value = live[k]
            if isinstance(value, types.ModuleType) and value.__name__ == f"{label}.{k}":
                continue  # a submodule imported later (e.g. `import utils.stats`)
            if not counts(value):
                continue
            if strict or (k.startswith("__") and k.endswith("__") and k in dir(object)):
                added.append(k)
        return changed, added

    def changes(self) -> list[str]:
        found = []
        for label, (live, saved, strict, _cls) in self.spaces.items():
            changed, added = self._diff(label, live, saved, strict, _cls)
            found += [f"{label}.{k}" for k in changed + added]
        for label, (fn, code, defaults, kwdefaults) in self.codes.items():
            if (fn.__code__, fn.__defaults__, fn.__kwdefaults__) != (code, defaults, kwdefaults):
                found.append(f"{label} (code)")
        for name, mod in self.sysmods.items():
            if sys.modules.get(name) is not mod:
                found.append(f"sys.modules[{name!r}]")
        if sys.gettrace() is not None or sys.getprofile() is not None:
            found.append("sys.settrace/setprofile")
        found += _torch_modes()
        return sorted(set(found))

    def restore(self) -> None:
        for label, (live, saved, strict, cls) in self.spaces.items():
            changed, added = self._diff(label, live, saved, strict, cls)
            for k in changed:
                with contextlib.suppress(Exception):
                    setattr(cls, k, saved[k]) if cls is not None else live.__setitem__(k, saved[k])
            for k in added:
                with contextlib.suppress(Exception):
                    delattr(cls, k) if cls is not None else live.pop(k)
        for fn, code, defaults, kwdefaults in self.codes.values():
            with contextlib.suppress(Exception):
                fn.__code__, fn.__defaults__, fn.__kwdefaults__ = code, defaults, kwdefaults
        for name, mod in self.sysmods.items():
            sys.modules[name] = mod
        sys.settrace(None)
        sys.setprofile(None)


def _torch_modes() -> list[str]:
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    found = []
    for attr, what in (
        ("_len_torch_function_stack", "a torch function mode"),
        ("_len_torch_dispatch_stack", "a torch dispatch mode"),
    ):
        fn = getattr(torch._C, attr, None)
        with contextlib.suppress(Exception):
            if fn is not None and fn() > 0:
                found.append(what)
    return found


# ------------------------------------------------------------------------------- main
def _limits(job: dict) -> None:
    for name, value in (
        ("RLIMIT_AS", job.get("memory_bytes")),
        ("RLIMIT_FSIZE", job.get("file_bytes")),
        ("RLIMIT_CORE", 0),
    ):
        if value is None or not hasattr(resource, name):
            continue
        which = getattr(resource, name)
        _soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large file fails with EFBIG


def _make_shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.xmode = "Plain"
    config.InteractiveShell.colors = "nocolor"
    try:
        return InteractiveShell.instance(config=config)
    except Exception:  # noqa: BLE001 - older IPython spells colours differently
        config.InteractiveShell.colors = "NoColor"
        return InteractiveShell.instance(config=config)


def _describe(err: BaseException, limit: int = 800) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= limit else text[:limit] + " ..."


def _close_figures() -> None:
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        with contextlib.suppress(Exception):
            plt.close("all")


def run_source(source: str, namespace: dict, seconds: float, keep: int, label: str):
    """exec ``source`` in ``namespace``: (status, message, output)."""
    from utils.checks import CheckFailed

    status, message = "pass", ""
    with captured(keep) as out:
        try:
            with time_limit(seconds):
                exec(compile(source, label, "exec"), namespace)  # noqa: S102
        except CellTimeout:
            status, message = "timeout", f"ran past its time limit ({seconds:g} s)"
        except NotImplementedError:
            status, message = "todo", "not implemented yet (the stub raises NotImplementedError)"
        except CheckFailed as e:
            status, message = "fail", str(e).splitlines()[0][:800] if str(e) else "check failed"
        except NameError as e:
            status, message = (
                "fail",
                (
                    f"{e} (define it in the exercise's cell, under this name, and make sure "
                    "the cell runs without errors)"
                ),
            )
        except BaseException as e:  # noqa: BLE001 - any error of the student's code is a FAIL
            status, message = "error", _describe(e)
    return status, message, out.text()


def main() -> None:
    job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    _limits(job)
    token = job["token"]
    events = open(job["events"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def emit(**event):
        event["token"] = token
        events.write(json.dumps(event) + "\n")
        events.flush()

    import warnings

    warnings.filterwarnings("ignore")
    # The pristine course: every check module, imported before any student code runs.
    import numpy  # noqa: F401
    import scipy.signal  # noqa: F401
    import torch
    import torch.distributions  # noqa: F401

    import utils
    import utils.checks
    import utils.exercises

    for info in pkgutil.iter_modules(utils.exercises.__path__):
        importlib.import_module(f"utils.exercises.{info.name}")
    shell = _make_shell()
    guard = Guard()
    pristine = {n: getattr(utils, n) for n in getattr(utils, "__all__", [])}
    pristine.update(
        {
            info.name: sys.modules[f"utils.exercises.{info.name}"]
            for info in pkgutil.iter_modules(utils.exercises.__path__)
        }
    )
    pristine["utils"] = utils
    import builtins

    pristine["__builtins__"] = builtins  # not a student's replacement of it
    emit(event="ready")
    skip = set(job.get("skip", ()))

    for cell in job["cells"]:
        if cell["key"] in skip:
            continue
        emit(event="cell_start", key=cell["key"])
        status, message = "ok", ""
        with captured(job["cell_output_chars"]) as out:
            try:
                with time_limit(job["cell_timeout"]):
                    result = shell.run_cell(cell["source"], store_history=False)
                err = result.error_before_exec or result.error_in_exec
            except CellTimeout as e:  # raised outside IPython's own handler
                err = e
        if isinstance(err, CellTimeout):
            status, message = "timeout", f"stopped after {job['cell_timeout']:g} s"
        elif err is not None:
            status, message = "error", _describe(err)
        _close_figures()
        emit(
            event="cell",
            key=cell["key"],
            status=status,
            message=message,
            output=out.text() if status != "ok" else "",
            printed=out.total,
        )
    changed = guard.changes()
    if changed:
        emit(event="tampered", phase="cells", names=changed)
        guard.restore()

    for ex in job["exercises"]:
        if ex["grade_id"] in skip:
            continue
        emit(event="check_start", grade_id=ex["grade_id"])
        keep = job["check_output_chars"]
        namespace = dict(shell.user_ns)
        namespace.update(pristine)
        status, message, output = run_source(
            ex["public"], namespace, job["check_timeout"], keep, f"<check {ex['grade_id']}>"
        )
        if status == "pass" and ex.get("hidden"):
            h_status, h_message, _ = run_source(
                ex["hidden"], namespace, job["check_timeout"], 2000, "<hidden tests>"
            )
            if h_status != "pass":
                status = "fail" if h_status != "timeout" else "timeout"
                message = f"the instructor's hidden tests failed ({h_message.split(':')[0]})"
        changed = guard.changes()
        if changed:
            guard.restore()
        _close_figures()
        emit(
            event="exercise",
            grade_id=ex["grade_id"],
            status=status,
            message=message,
            output=output,
            tampered=changed,
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    emit(event="done", cpu=usage.ru_utime + usage.ru_stime, max_rss_kb=usage.ru_maxrss)
    events.close()
    sys.stdout.flush()
    os._exit(0)  # no atexit handlers of the student's


if __name__ == "__main__":
    main()

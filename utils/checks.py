"""Visible checks: compare a from-scratch result with a reference implementation.

Every check prints one line, ``PASS`` or ``FAIL``, with the largest absolute error,
and raises :class:`CheckFailed` (an ``AssertionError``) on failure, so a notebook or
an assignment stops right where something is wrong.
"""

from __future__ import annotations

import numpy as np

import contextlib

__all__ = ["CheckFailed", "check_close", "check_shape", "check_true", "check_group"]

# While a ``check_group`` is open, passing checks are recorded here instead of printed.
_GROUPS: list[list[tuple[str, float | None]]] = []


def _passed(line: str, name: str, err: float | None = None) -> None:
    if _GROUPS:
        _GROUPS[-1].append((name, err))
    else:
        print(line)


@contextlib.contextmanager
def check_group(title: str):
    """Run many checks and print one summary line instead of one line per check.

    ``with check_group("losses vs torch.nn"): check_close(...); check_close(...)``
    prints ``PASS  losses vs torch.nn: 13 checks, max |error| = 2.2e-16``; a failing
    check still prints its own FAIL line (with its name and hint) and raises.
    """
    _GROUPS.append([])
    try:
        yield
    finally:
        done = _GROUPS.pop()
    errs = [e for _, e in done if e is not None]
    worst = f", max |error| = {max(errs):.1e}" if errs else ""
    line = f"PASS  {title}: {len(done)} check{'s' if len(done) != 1 else ''}{worst}"
    if _GROUPS:
        _GROUPS[-1].extend(done)
    else:
        print(line)


class CheckFailed(AssertionError):
    """A from-scratch result disagrees with its reference."""


def _as_array(x, what: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().to(torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise CheckFailed(f"{what} is not numeric: {type(x).__name__} ({e})") from None


def _fail(name: str, message: str, hint: str | None):
    text = f"FAIL  {name}: {message}" + (f"\n      hint: {hint}" if hint else "")
    print(text)
    raise CheckFailed(text)


def check_close(
    name: str,
    actual,
    expected,
    *,
    atol: float = 1e-6,
    rtol: float = 0.0,
    hint: str | None = None,
) -> float:
    """Check ``|actual - expected| <= atol + rtol * |expected|`` elementwise.

    Accepts tensors, arrays and numbers; shapes must match exactly (no silent
    broadcasting). Prints the result and returns the max absolute error.
    """
    a, e = _as_array(actual, "the result"), _as_array(expected, "the reference")
    if a.shape != e.shape:
        _fail(name, f"shape {a.shape} but the reference has shape {e.shape}", hint)
    if a.size and not np.isfinite(a).all():
        _fail(name, "the result contains NaN or infinity", hint)
    err = float(np.max(np.abs(a - e))) if a.size else 0.0
    ok = np.allclose(a, e, atol=atol, rtol=rtol, equal_nan=False)
    tol = f"atol {atol:.0e}" + (f", rtol {rtol:.0e}" if rtol else "")
    if not ok:
        _fail(name, f"max |error| = {err:.2e} exceeds the tolerance ({tol})", hint)
    _passed(f"PASS  {name}: max |error| = {err:.1e} ({tol})", name, err)
    return err


def check_shape(name: str, x, expected: tuple, *, hint: str | None = None) -> None:
    """Check that ``x.shape`` equals ``expected`` (use ``None`` for any size)."""
    shape = tuple(getattr(x, "shape", ()))
    ok = len(shape) == len(expected) and all(
        want is None or got == want for got, want in zip(shape, expected)
    )
    if not ok:
        _fail(name, f"shape {shape}, expected {tuple(expected)}", hint)
    _passed(f"PASS  {name}: shape {shape}", name)


def check_true(name: str, condition: bool, message: str = "", *, hint: str | None = None):
    """Check a condition; ``message`` says what was measured (shown in both cases)."""
    if not bool(condition):
        _fail(name, message or "condition is false", hint)
    _passed(f"PASS  {name}" + (f": {message}" if message else ""), name)

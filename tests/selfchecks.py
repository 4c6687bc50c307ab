"""What every assignment test asks of a self-check in utils/exercises: it passes on the
solution, fails (with a hint) on a wrong answer, and lets a stub's NotImplementedError
through with a TODO line, so the student sees where to start."""

from __future__ import annotations

import pytest

from utils import CheckFailed


def stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def assert_passes(capsys, check, *answer, n_pass: int | None = None) -> None:
    check(*answer)
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out
    if n_pass is not None:
        assert out.count("PASS") == n_pass, out


def assert_fails(capsys, check, *answer, says: str = "hint:") -> None:
    """The check raises CheckFailed and its printout contains `says` (by default: a hint)."""
    with pytest.raises(CheckFailed):
        check(*answer)
    out = capsys.readouterr().out
    assert "FAIL" in out and says in out, f"the failure should say {says!r}:\n{out}"


def assert_stub_gets_todo(capsys, check, *answer) -> None:
    with pytest.raises(NotImplementedError):
        check(*answer)
    assert "TODO" in capsys.readouterr().out


def wrong_answers(cases: dict) -> list[tuple]:
    """(name, wrong answer) pairs from a table {name: (check, ..., [wrong answers])}."""
    return [(name, bad) for name, case in cases.items() for bad in case[-1]]


def wrong_ids(wrong: list[tuple]) -> list[str]:
    return [f"{name}-{bad.__name__}" for name, bad in wrong]

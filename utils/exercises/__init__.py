"""Self-checks for the assignments: one module per assignment.

Each exercise of an assignment ends with a cell such as::

    from utils.exercises import losses
    losses.check_loss_fn_reg(loss_fn_reg)

A check tries the student's function on fresh random inputs, compares it with PyTorch
(or SciPy), prints ``PASS`` or ``FAIL`` with a hint, and raises on failure, so the
notebook stops at the first exercise that is not done yet. The tests call the very
same checks on the solutions (they must pass) and on wrong answers (they must fail).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..checks import CheckFailed

__all__ = ["CheckFailed", "exercise"]


@contextlib.contextmanager
def exercise(name: str) -> Iterator[None]:
    """Run a check body; turn a stub's ``NotImplementedError`` into a friendly message.

    The ``NotImplementedError`` is re-raised unchanged, so an unfinished exercise still
    stops the notebook (that is how the scaffold test knows where the first stub is).
    """
    print(f"Checking {name} ...")
    try:
        yield
    except NotImplementedError:
        print(f"TODO  {name}: not implemented yet (replace `raise NotImplementedError()`).")
        raise

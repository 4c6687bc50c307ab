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

from ..checks import CheckFailed, check_true

__all__ = ["CheckFailed", "call", "exercise", "generator", "require", "require_tensor"]


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


def generator(seed: int):
    """A private random generator, so checks never touch the global random state."""
    import torch

    return torch.Generator().manual_seed(seed)


def call(name: str, fn, *args, hint: str | None = None):
    """Call the student's function; any error other than a stub's becomes a FAIL."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - any error of the student's code is a FAIL
        check_true(name, False, f"raised {type(e).__name__}: {e}", hint=hint)


def require(condition, name: str, message: str, hint: str | None = None) -> None:
    """A structural check that only speaks up when it fails."""
    if not condition:
        check_true(name, False, message, hint=hint)


TENSOR_HINT = "return a torch tensor (no .item(), no NumPy), so autograd can differentiate it"


def require_tensor(name: str, x, hint: str | None = TENSOR_HINT) -> None:
    """FAIL unless the student's function returned a tensor."""
    import torch

    require(isinstance(x, torch.Tensor), name, f"returned a {type(x).__name__}, not a tensor", hint)

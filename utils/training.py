"""Seeding, device choice, mini-batches and progress bars: the plumbing of training."""

from __future__ import annotations

import io
import math
import os
import random
import sys
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

__all__ = [
    "accuracy",
    "get_device",
    "minibatches",
    "n_batches",
    "predict",
    "progress_bar",
    "seed_everything",
    "train_classifier",
]


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch; prefer deterministic kernels.

    Returns a ``torch.Generator`` seeded with ``seed``, handy for DataLoaders and
    :func:`minibatches`, so that shuffling does not depend on what ran before.
    """
    # cuBLAS needs this (before CUDA starts) to be deterministic, else torch warns on CUDA
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def get_device(verbose: bool = True) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(device)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device, name = torch.device("mps"), "Apple GPU"
    else:
        device, name = torch.device("cpu"), f"{torch.get_num_threads()} threads"
    if verbose:
        print(f"Using device: {device} ({name})")
    return device


def n_batches(n: int, batch_size: int) -> int:
    """Number of mini-batches per epoch: ceil(n / batch_size)."""
    return math.ceil(n / batch_size)


def minibatches(
    *tensors: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield aligned mini-batches of tensors that share their first dimension.

    A light replacement for ``DataLoader(TensorDataset(...))`` on in-memory tensors:
    one random permutation per epoch and slicing, with no per-sample Python work.
    The last batch may be smaller.
    """
    if not tensors:
        raise ValueError("minibatches() needs at least one tensor.")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"All tensors need the same length, got {[len(t) for t in tensors]}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield tuple(t[idx] for t in tensors)


def _interactive() -> bool:
    """False under CI or when asked for plain output (``make execute``, the tests)."""
    plain = os.environ.get("COURSE_PLAIN_PROGRESS", "").lower() in ("1", "true", "yes")
    return not plain and not os.environ.get("CI")


class _PlainBar(tqdm):
    """Draws nothing while running and prints the finished bar once, as plain text.

    Used when nobody watches (CI, notebooks executed for committing): one line of
    output instead of hundreds of carriage-return updates or a stored widget.
    """

    def __init__(self, *args, **kwargs):
        kwargs.update(file=io.StringIO(), ascii=True, mininterval=float("inf"))
        super().__init__(*args, **kwargs)
        self._reported = False

    def close(self):
        if not self.disable and not self._reported and self.leave:
            self._reported = True
            print(self.format_meter(**self.format_dict), file=sys.stdout, flush=True)
        super().close()


def progress_bar(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A tqdm progress bar: a live text bar when interactive, one plain line otherwise.

    Never a Jupyter widget, so nothing ends up stored in a notebook's JSON. Accepts
    tqdm's arguments (``desc``, ``total``, ...) and supports ``set_postfix``.
    """
    if _interactive():
        kwargs.setdefault("file", sys.stdout)
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kwargs)
    return _PlainBar(iterable, **kwargs)


@torch.no_grad()
def predict(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's outputs on ``X``, computed in eval mode and in batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat(
        [model(X[i : i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
    )
    model.train(was_training)
    return out


def accuracy(
    model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> float:
    """Fraction of ``X`` whose arg-max output equals the label ``y``."""
    return (predict(model, X, batch_size).argmax(dim=1) == y).float().mean().item()


def train_classifier(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    loss_fn=torch.nn.functional.cross_entropy,
    generator: torch.Generator | None = None,
    scheduler=None,
    transform=None,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """Mini-batch training: forward, loss, backward, step. Returns the loss of every step.

    ``scheduler`` (optional) is stepped once per batch; ``transform`` (optional) maps an
    input batch to an augmented one. Data move to the model's device batch by batch.
    ``progress=False`` hides the progress bar (for a sweep that shows one bar of its own).
    """
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    bar = progress_bar(total=epochs * n_batches(len(X), batch_size), desc=desc, disable=not progress)
    for _ in range(epochs):
        for xb, yb in minibatches(X, y, batch_size=batch_size, generator=generator):
            xb, yb = xb.to(device), yb.to(device)
            if transform is not None:
                xb = transform(xb)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    return losses

"""Noise before rankings: paired comparisons of two classifiers and spreads over seeds.

A course taught from the statistics side compares models the way a statistician would:

- two classifiers on the *same* test images: :func:`paired_comparison` (the paired
  standard error of the difference in accuracy and McNemar's exact test on the
  discordant pairs), never two independent standard errors;
- a ranking of optimizers, initializations or architectures: several seeds, reported
  with :func:`mean_spread` (mean ± standard deviation, and the range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PairedComparison",
    "paired_comparison",
    "mean_spread",
    "MeanSpread",
    "SeedComparison",
    "compare_seeds",
]


def _as_bool(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.asarray(x).astype(bool).ravel()


@dataclass(frozen=True)
class PairedComparison:
    """Accuracy of A and B on the same examples, and the noise of their difference."""

    n: int
    acc_a: float
    acc_b: float
    only_a: int  # examples A gets right and B wrong
    only_b: int  # examples B gets right and A wrong
    se_diff: float  # paired standard error of acc_a - acc_b
    p_mcnemar: float  # exact two-sided McNemar test (binomial on the discordant pairs)

    @property
    def diff(self) -> float:
        return self.acc_a - self.acc_b

    @property
    def ci95(self) -> tuple[float, float]:
        return (self.diff - 1.96 * self.se_diff, self.diff + 1.96 * self.se_diff)

    @property
    def significant(self) -> bool:
        """True when McNemar's test rejects 'same accuracy' at the 5 % level."""
        return self.p_mcnemar < 0.05

    def __str__(self) -> str:
        lo, hi = self.ci95
        verdict = "a real difference" if self.significant else "a tie (inside the noise)"
        return (
            f"{self.acc_a:.4f} vs {self.acc_b:.4f} on {self.n:,} examples: difference "
            f"{self.diff:+.4f} ± {self.se_diff:.4f} (paired SE; 95 % CI {lo:+.4f} to {hi:+.4f}); "
            f"discordant {self.only_a} vs {self.only_b}, McNemar p = {self.p_mcnemar:.3g} → {verdict}"
        )


def paired_comparison(correct_a, correct_b) -> PairedComparison:
    """Compare two classifiers by their per-example correctness on the same examples.

    ``correct_a`` and ``correct_b`` are boolean arrays or tensors (True = right). The
    paired SE of the difference is ``sd(a_i - b_i) / sqrt(n)``; McNemar's exact test is a
    two-sided binomial test of the discordant pairs against p = 1/2.
    """
    from scipy.stats import binomtest

    a, b = _as_bool(correct_a), _as_bool(correct_b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two equally long, non-empty vectors; got {a.shape} and {b.shape}")
    n = a.size
    d = a.astype(float) - b.astype(float)
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    k = only_a + only_b
    p = 1.0 if k == 0 else float(binomtest(only_a, k, 0.5).pvalue)
    return PairedComparison(n, float(a.mean()), float(b.mean()), only_a, only_b, se, p)


@dataclass(frozen=True)
class MeanSpread:
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def sd(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else float("nan")

    def format(self, digits: int = 4) -> str:
        v = self.values
        return (
            f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} "
            f"(range {min(v):.{digits}f}–{max(v):.{digits}f}, {len(v)} seeds)"
        )

    def __str__(self) -> str:
        return self.format()


def mean_spread(values) -> MeanSpread:
    """Mean ± sample standard deviation and range of a metric over seeds."""
    vals = tuple(float(x) for x in np.asarray(values, dtype=float).ravel())
    if not vals:
        raise ValueError("need at least one value")
    return MeanSpread(vals)


@dataclass(frozen=True)
class SeedComparison:
    """Two settings run with the same seeds: the paired difference of a metric."""

    diffs: tuple[float, ...]  # a - b, seed by seed
    p_value: float  # two-sided paired t-test

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs))

    @property
    def se(self) -> float:
        return float(np.std(self.diffs, ddof=1) / math.sqrt(len(self.diffs)))

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def __str__(self) -> str:
        verdict = "a real difference" if self.significant else "a tie (inside the noise)"
        return (f"{self.mean:+.4f} ± {self.se:.4f} (paired over {len(self.diffs)} seeds; "
                f"t-test p = {self.p_value:.2g}) → {verdict}")


def compare_seeds(a, b) -> SeedComparison:
    """Compare a metric of two settings trained with the same seeds (paired by seed).

    Same seed = same initial weights and batch order, so the per-seed difference removes
    that source of noise. With few seeds the verdict uses Student's t with n - 1 degrees
    of freedom (for 3 seeds the difference must exceed 4.3 standard errors), not 2 SE.
    """
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two equally long vectors of at least 2 seeds; got {a.shape}, {b.shape}")
    d = a - b
    p = 1.0 if np.allclose(d, d[0]) and d[0] == 0 else float(ttest_rel(a, b).pvalue)
    return SeedComparison(tuple(float(x) for x in d), p)

"""Names as data: fixed splits and character vocabularies (lectures 08–10).

* :func:`chinese_names_split` — the course's one train/validation/test split of the
  name → gender table, stored as row indices in the package (``utils/splits/``), so
  every run, every model and every lecture use the same test set.
* :func:`makemore_split` — the split of the makemore lectures for ``names.txt``
  (``random.seed(42)``, shuffle, 80/10/10), so losses compare with published numbers.
* :class:`CharVocab` — a character vocabulary with padding/unknown/end tokens and
  batched encoding into padded tensors with lengths.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import resources

import numpy as np
import torch

__all__ = ["CharVocab", "chinese_names_split", "makemore_split"]

_SPLIT_FILE = "chinese_names_split.json"


def _make_chinese_names_split(n: int, seed: int = 2024, fractions=(0.15, 0.15)) -> dict:
    """How the stored split was made (kept for the record and for the test that checks it)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = (round(f * n) for f in fractions)
    return {
        "seed": seed,
        "n": n,
        "val": sorted(order[:n_val].tolist()),
        "test": sorted(order[n_val : n_val + n_test].tolist()),
    }


def chinese_names_split() -> dict[str, np.ndarray]:
    """Row indices of ``load_chinese_names()`` for ``"train"``, ``"val"`` and ``"test"``.

    70 / 15 / 15 %, drawn once with a fixed seed and stored in the package.
    """
    stored = json.loads(resources.files("utils").joinpath("splits", _SPLIT_FILE).read_text())
    n = stored["n"]
    val, test = np.array(stored["val"]), np.array(stored["test"])
    train = np.setdiff1d(np.arange(n), np.concatenate([val, test]))
    return {"train": train, "val": val, "test": test}


def makemore_split(words: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """The makemore split: ``random.seed(42)``, ``random.shuffle``, first 80 % / next 10 % / last 10 %.

    Uses its own ``random.Random(42)`` (the same stream as ``random.seed(42)``), so the
    global random state is left alone.
    """
    words = list(words)
    random.Random(42).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


class CharVocab:
    """Characters ↔ integer ids, with special tokens.

    ``CharVocab(names, max_size=None, min_count=1, specials=("<pad>", "<unk>"))`` keeps
    the most frequent characters (ties broken by the character, so the order never
    depends on hashing). Special tokens come first: ``<pad>`` is id 0.
    """

    def __init__(
        self,
        names: Iterable[str],
        *,
        max_size: int | None = None,
        min_count: int = 1,
        specials: Sequence[str] = ("<pad>", "<unk>"),
    ):
        counts = Counter(ch for name in names for ch in name)
        chars = sorted((c for c in counts if counts[c] >= min_count), key=lambda c: (-counts[c], c))
        if max_size is not None:
            chars = chars[: max_size - len(specials)]
        self.counts = counts
        self.itos: list[str] = [*specials, *chars]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.specials = tuple(specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} tokens: {len(self.specials)} special + {len(self) - len(self.specials)} characters)"

    def covers(self, name: str) -> bool:
        """True when every character of ``name`` is in the vocabulary."""
        return all(ch in self.stoi for ch in name)

    def encode(self, name: str, *, end: str | None = None) -> list[int]:
        """Ids of the characters (unknown ones → ``<unk>``), optionally followed by ``end``."""
        unk = self.stoi.get("<unk>")
        ids = []
        for ch in name:
            if ch in self.stoi:
                ids.append(self.stoi[ch])
            elif unk is not None:
                ids.append(unk)
            else:
                raise KeyError(f"character {ch!r} is not in the vocabulary and there is no <unk>")
        if end is not None:
            ids.append(self.stoi[end])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The string of ``ids``, stopping at padding and skipping special tokens."""
        out = []
        for i in ids:
            token = self.itos[int(i)]
            if token == "<pad>":
                break
            if token not in self.specials:
                out.append(token)
        return "".join(out)

    def encode_batch(
        self, names: Sequence[str], *, end: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A padded ``[batch, max_len]`` int64 tensor (``<pad>`` = 0) and the lengths."""
        encoded = [self.encode(n, end=end) for n in names]
        lengths = torch.tensor([len(e) for e in encoded])
        out = torch.full((len(encoded), int(lengths.max())), self.stoi.get("<pad>", 0))
        for row, ids in enumerate(encoded):
            out[row, : len(ids)] = torch.tensor(ids)
        return out, lengths

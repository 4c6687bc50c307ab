"""Dates written out in words → ISO dates: a translation task with a visible alignment.

Lecture 10 trains an encoder–decoder with and without attention on it. The task needs no
download, is generated with a fixed seed, and its alignment is easy to read: the digits
of the year come from the year's words, the month from the month's name, the day from
the ordinal, while the order of the parts differs between source and target::

    "the twenty third of march nineteen ninety eight"  ->  "1998-03-23"
    "march twenty third two thousand five"              ->  "2005-03-23"

* :func:`spell_date` — one date in one of three word orders (``rng`` chooses), with
  ``"and"`` / ``"the"`` / two spellings of years after 2009 as random variation.
* :func:`date_splits` — train / validation / test lists of ``(words, iso)`` pairs whose
  *dates* are disjoint, so the test set holds dates the model has never seen.
* :data:`SOURCE_WORDS`, :data:`TARGET_CHARS` — the two fixed vocabularies;
  :func:`encode_pairs` turns pairs into padded id tensors.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

import torch

__all__ = [
    "MONTHS",
    "SOURCE_WORDS",
    "TARGET_CHARS",
    "PAD",
    "START",
    "spell_number",
    "spell_ordinal",
    "spell_year",
    "spell_date",
    "date_splits",
    "encode_pairs",
    "decode_target",
]

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy",
         8: "eighty", 9: "ninety"}
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
        "nine": "ninth", "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth"}

PAD, START = "<pad>", "<s>"
TARGET_CHARS = [START] + list("0123456789-")  # decoder vocabulary: start token, digits, dash


def spell_number(n: int) -> list[str]:
    """0 ≤ n < 100 in words, one token per word: 42 → ['forty', 'two']."""
    if not 0 <= n < 100:
        raise ValueError(f"0 <= n < 100 expected, got {n}")
    if n < 20:
        return [_UNITS[n]]
    tens, units = divmod(n, 10)
    return [_TENS[tens]] + ([_UNITS[units]] if units else [])


def spell_ordinal(n: int) -> list[str]:
    """1 ≤ n ≤ 31 as an ordinal: 23 → ['twenty', 'third']."""
    words = spell_number(n)
    last = words[-1]
    words[-1] = _ORD.get(last, last + "th")
    return words


def spell_year(year: int, rng: random.Random | None = None) -> list[str]:
    """1950–2099 in words: 1998 → nineteen ninety eight; 2005 → two thousand five;
    2012 → twenty twelve or two thousand twelve (``rng`` picks; without it the first)."""
    century, rest = divmod(year, 100)
    if century == 19:
        return ["nineteen"] + (spell_number(rest) if rest >= 10 else ["oh"] + spell_number(rest))
    if century != 20:
        raise ValueError(f"years 1900-2099 only, got {year}")
    long_form = ["two", "thousand"] + (spell_number(rest) if rest else [])
    if rest < 10 or (rng is not None and rng.random() < 0.5):
        return long_form
    return ["twenty"] + spell_number(rest)


def spell_date(date: dt.date, rng: random.Random) -> list[str]:
    """A date as a list of words in one of three orders (chosen by ``rng``)::

        [the] <day> of <month> <year>   |   <month> [the] <day> <year>   |   <month> <year>, day <day>
    """
    day, month, year = spell_ordinal(date.day), [MONTHS[date.month - 1]], spell_year(date.year, rng)
    the = ["the"] if rng.random() < 0.5 else []
    form = rng.randrange(3)
    if form == 0:
        return the + day + ["of"] + month + year
    if form == 1:
        return month + the + day + year
    return month + year + ["day"] + day


def _all_words() -> list[str]:
    words = set(_UNITS) | set(_TENS.values()) | set(MONTHS)
    words |= {spell_ordinal(n)[-1] for n in range(1, 32)}
    words |= {"the", "of", "oh", "thousand", "day"}
    return sorted(words)


SOURCE_WORDS = [PAD] + _all_words()  # encoder vocabulary: padding id 0, then the words


def date_splits(
    n_train: int, n_val: int, n_test: int, seed: int = 0, first_year: int = 1950, last_year: int = 2029
) -> dict[str, list[tuple[list[str], str]]]:
    """``{"train", "val", "test"}`` → lists of ``(source words, "YYYY-MM-DD")``.

    Distinct dates between ``first_year`` and ``last_year`` are drawn without replacement
    with ``random.Random(seed)``, so no date appears in two splits; each is spelled once.
    """
    rng = random.Random(seed)
    start = dt.date(first_year, 1, 1)
    n_days = (dt.date(last_year, 12, 31) - start).days + 1
    total = n_train + n_val + n_test
    if total > n_days:
        raise ValueError(f"only {n_days} distinct dates between {first_year} and {last_year}")
    offsets = rng.sample(range(n_days), total)
    pairs = []
    for off in offsets:
        date = start + dt.timedelta(days=off)
        pairs.append((spell_date(date, rng), date.isoformat()))
    return {"train": pairs[:n_train], "val": pairs[n_train : n_train + n_val], "test": pairs[n_train + n_val :]}


def encode_pairs(pairs: Sequence[tuple[Sequence[str], str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids ``[N, S]`` (padded with 0 = ``<pad>``) and target ids ``[N, 10]`` (no start token)."""
    s_index = {w: i for i, w in enumerate(SOURCE_WORDS)}
    t_index = {c: i for i, c in enumerate(TARGET_CHARS)}
    S = max(len(src) for src, _ in pairs)
    X = torch.zeros(len(pairs), S, dtype=torch.int64)
    Y = torch.empty(len(pairs), 10, dtype=torch.int64)
    for i, (src, iso) in enumerate(pairs):
        X[i, : len(src)] = torch.tensor([s_index[w] for w in src])
        Y[i] = torch.tensor([t_index[c] for c in iso])
    return X, Y


def decode_target(ids: Sequence[int]) -> str:
    """Target ids back to a string (the start token, if present, is dropped)."""
    return "".join(TARGET_CHARS[i] for i in ids if TARGET_CHARS[i] != START)

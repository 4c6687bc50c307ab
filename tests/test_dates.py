"""utils.dates: the spelled-out dates → ISO dates task of lecture 10."""

import datetime as dt
import random

import pytest
import torch

from utils.dates import (
    MONTHS,
    SOURCE_WORDS,
    TARGET_CHARS,
    date_splits,
    decode_target,
    encode_pairs,
    spell_date,
    spell_number,
    spell_ordinal,
    spell_year,
)


@pytest.mark.parametrize("n,words", [(0, ["zero"]), (7, ["seven"]), (19, ["nineteen"]), (20, ["twenty"]),
                                     (42, ["forty", "two"]), (99, ["ninety", "nine"])])
def test_spell_number(n, words):
    assert spell_number(n) == words


@pytest.mark.parametrize("n,words", [(1, ["first"]), (2, ["second"]), (3, ["third"]), (5, ["fifth"]),
                                     (8, ["eighth"]), (9, ["ninth"]), (12, ["twelfth"]), (13, ["thirteenth"]),
                                     (20, ["twentieth"]), (21, ["twenty", "first"]), (23, ["twenty", "third"]),
                                     (30, ["thirtieth"]), (31, ["thirty", "first"])])
def test_spell_ordinal(n, words):
    assert spell_ordinal(n) == words


def test_spell_year_forms():
    assert spell_year(1998) == ["nineteen", "ninety", "eight"]
    assert spell_year(1905) == ["nineteen", "oh", "five"]
    assert spell_year(2000) == ["two", "thousand"]
    assert spell_year(2005) == ["two", "thousand", "five"]
    assert spell_year(2012) == ["twenty", "twelve"]
    forms = {tuple(spell_year(2012, random.Random(s))) for s in range(20)}
    assert forms == {("two", "thousand", "twelve"), ("twenty", "twelve")}
    with pytest.raises(ValueError):
        spell_year(1850)


def _parse(words):
    """An independent reader of the generated sentences (the inverse of spell_date)."""
    nums = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                        "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                                        "sixteen", "seventeen", "eighteen", "nineteen"])}
    tens = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
            "ninety": 90}
    month = next(MONTHS.index(w) + 1 for w in words if w in MONTHS)
    ords = {spell_ordinal(n)[-1]: n for n in [*range(1, 20), 20, 30]}
    # the day: the ordinal word, plus a preceding tens word if the ordinal is a unit
    k = next(i for i, w in enumerate(words) if w in ords and not (w in tens or w in nums))
    day = ords[words[k]]
    if day < 10 and k > 0 and words[k - 1] in tens:
        day += tens[words[k - 1]]
    rest = [w for i, w in enumerate(words) if w not in MONTHS and w not in ("the", "of", "day")
            and i not in (k, k - 1 if words[k - 1] in tens and ords[words[k]] < 10 else -1)]

    def number(ws):
        return sum(tens.get(w, 0) + nums.get(w, 0) for w in ws if w != "oh")

    if rest[:2] == ["two", "thousand"]:
        year = 2000 + number(rest[2:])
    else:
        year = (1900 if rest[0] == "nineteen" else 2000) + number(rest[1:])
    return dt.date(year, month, day)


def test_spelled_dates_read_back_to_the_same_date():
    rng = random.Random(1)
    start = dt.date(1950, 1, 1)
    for _ in range(3000):
        date = start + dt.timedelta(days=rng.randrange(80 * 365))
        words = spell_date(date, rng)
        assert all(w in SOURCE_WORDS for w in words)
        assert _parse(words) == date, (words, date)


def test_date_splits_are_disjoint_reproducible_and_encode():
    a = date_splits(300, 100, 100, seed=3)
    b = date_splits(300, 100, 100, seed=3)
    assert a == b and date_splits(300, 100, 100, seed=4) != a
    dates = {name: {iso for _, iso in pairs} for name, pairs in a.items()}
    assert [len(dates[k]) for k in ("train", "val", "test")] == [300, 100, 100]
    assert not (dates["train"] & dates["test"]) and not (dates["train"] & dates["val"])
    assert all(1950 <= int(iso[:4]) <= 2029 for d in dates.values() for iso in d)
    forms = {("of" in w) + 2 * ("day" in w) for w, _ in a["train"]}
    assert forms == {0, 1, 2}
    X, Y = encode_pairs(a["test"])
    assert X.shape == (100, max(len(w) for w, _ in a["test"])) and Y.shape == (100, 10)
    for i, (words, iso) in enumerate(a["test"]):
        assert [SOURCE_WORDS[j] for j in X[i, : len(words)].tolist()] == words
        assert torch.all(X[i, len(words):] == 0)
        assert decode_target(Y[i].tolist()) == iso
    assert decode_target([0] + Y[0].tolist()) == a["test"][0][1]  # the start token is dropped
    assert TARGET_CHARS[0] == "<s>" and SOURCE_WORDS[0] == "<pad>"
    with pytest.raises(ValueError):
        date_splits(30000, 0, 0)

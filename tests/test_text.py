"""utils.text: the fixed splits and the character vocabulary."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import utils
from utils import text


def test_chinese_names_split_is_the_stored_one_and_a_partition():
    split = text.chinese_names_split()
    table = utils.load_chinese_names()
    sizes = {k: len(v) for k, v in split.items()}
    assert sizes == {"train": 18_100, "val": 3_878, "test": 3_878}
    together = np.concatenate(list(split.values()))
    assert sorted(together.tolist()) == list(range(len(table)))  # disjoint and complete
    # the stored file is exactly what its recorded recipe produces
    recipe = text._make_chinese_names_split(len(table))
    assert recipe["test"] == split["test"].tolist() and recipe["val"] == split["val"].tolist()
    # both genders are represented in every part (not sorted by gender, say)
    for idx in split.values():
        share = (table["性别"].to_numpy()[idx] == "男").mean()
        assert 0.45 < share < 0.55


def test_makemore_split_equals_the_lectures_recipe():
    words = utils.load_english_names()
    state = random.getstate()
    train, dev, test = text.makemore_split(words)
    assert random.getstate() == state, "the global random state is left alone"
    shuffled = list(words)
    random.seed(42)
    random.shuffle(shuffled)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    assert (train, dev, test) == (shuffled[:n1], shuffled[n1:n2], shuffled[n2:])
    assert (len(train), len(dev), len(test)) == (25_626, 3_203, 3_204)
    assert train[:3] == ["yuheng", "diondre", "xavien"]


def test_char_vocab_orders_by_frequency_then_character():
    vocab = text.CharVocab(["bca", "ab", "a"], specials=("<pad>", "<unk>"))
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c"]
    small = text.CharVocab(["bca", "ab", "a"], max_size=4)
    assert small.itos == ["<pad>", "<unk>", "a", "b"]
    assert small.encode("abc") == [2, 3, 1]  # unknown → <unk>
    assert not small.covers("abc") and small.covers("ba")
    strict = text.CharVocab(["ab"], specials=("<pad>", "."))
    with pytest.raises(KeyError, match="'z'"):
        strict.encode("az")


def test_char_vocab_pads_batches_and_decodes():
    vocab = text.CharVocab(["emma", "ava"], specials=("<pad>", "."))
    X, lengths = vocab.encode_batch(["ava", "emma", "m"], end=".")
    assert X.shape == (3, 5) and lengths.tolist() == [4, 5, 2]
    assert X.dtype == torch.int64 and X[2, 2:].tolist() == [0, 0, 0]
    assert [vocab.decode(row) for row in X] == ["ava", "emma", "m"]

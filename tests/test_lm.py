"""utils.lm: the language-model toolkit of lectures 09 and 10."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import utils
from utils import lm
from utils.text import CharVocab, makemore_split

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "b", "charlotte", "amelia", "ev"]
VOCAB = lm.lm_vocab(WORDS)
V = len(VOCAB)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_words(seed: int, n: int = 40, letters: str = "abcdefghij", longest: int = 11) -> list[str]:
    g = gen(seed)
    lengths = torch.randint(1, longest + 1, (n,), generator=g).tolist()
    return ["".join(letters[i] for i in torch.randint(0, len(letters), (k,), generator=g).tolist())
            for k in lengths]


LETTERS = lm.lm_vocab(["abcdefghij"])  # 11 tokens


def small_model(cell: str = "gru", seed: int = 0, vocab_size: int = len(LETTERS), **kw) -> nn.Module:
    torch.manual_seed(seed)
    return lm.CharRNN(vocab_size, embed_dim=8, hidden_size=16, cell=cell, **kw).double().eval()


class Stateless(nn.Module):
    """The same network seen as a model that returns logits only (like a transformer)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)[0]


def one_word_at_a_time(model, words, vocab):
    """Total nats per word: '.' + word fed alone, unpadded, scored with plain cross_entropy."""
    totals = []
    with torch.no_grad():
        for w in words:
            ids = torch.tensor([0] + vocab.encode(w) + [0])
            logits, _ = model(ids[None, :-1])
            totals.append(F.cross_entropy(logits[0], ids[1:], reduction="sum"))
    return torch.stack(totals)


def test_vocabulary_has_the_boundary_first():
    assert VOCAB.itos[0] == lm.BOUNDARY == "." and VOCAB.stoi["."] == 0
    assert VOCAB.specials == (".",)
    assert len(lm.lm_vocab(WORDS, max_size=4)) == 4
    assert lm.lm_vocab(WORDS, max_size=4).itos[1:] == ["a", "i", "e"]  # most frequent first


def test_encode_words_layout():
    X, Y = lm.encode_words(["emma", "b"], VOCAB)
    e, m, a, b = (VOCAB.stoi[c] for c in "emab")
    assert X.dtype == Y.dtype == torch.int64 and X.shape == Y.shape == (2, 5)
    assert X[0].tolist() == [0, e, m, m, a] and Y[0].tolist() == [e, m, m, a, 0]
    assert X[1].tolist() == [0, b, 0, 0, 0] and Y[1].tolist() == [b, 0, -100, -100, -100]
    assert lm.IGNORE_INDEX == -100 == nn.CrossEntropyLoss().ignore_index
    assert lm.target_lengths(Y).tolist() == [5, 2]
    # the input is the target shifted right by one, with the boundary in front
    assert torch.equal(X[0, 1:], Y[0, :-1])
    Xw, Yw = lm.encode_words(["emma", "b"], VOCAB, block=8)
    assert Xw.shape == (2, 8) and torch.equal(Xw[:, :5], X) and torch.equal(Yw[:, :5], Y)
    assert (Yw[:, 5:] == -100).all()
    with pytest.raises(ValueError, match="too short"):
        lm.encode_words(["emma"], VOCAB, block=4)
    with pytest.raises(KeyError):
        lm.encode_words(["zoe"], VOCAB)  # no <unk> in this vocabulary


def test_makemore_split_counts_and_vocabulary():
    train, dev, test = makemore_split(utils.load_english_names())
    vocab = lm.lm_vocab(train)
    assert len(vocab) == 27
    counts = [int(lm.target_lengths(lm.encode_words(s, vocab)[1]).sum()) for s in (train, dev, test)]
    assert counts == [sum(len(w) + 1 for w in s) for s in (train, dev, test)]
    assert counts[1] == 22_655  # dev characters incl. end tokens: the denominator of "nats per char"


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_masked_loss_equals_words_one_at_a_time(cell):
    model = small_model(cell, num_layers=2)
    words = random_words(1)
    X, Y = lm.encode_words(words, LETTERS)
    per_word = one_word_at_a_time(model, words, LETTERS)
    with torch.no_grad():
        logits, _ = model(X)
        rows = lm.lm_loss(logits, Y, reduction="none")
        total = lm.lm_loss(logits, Y, reduction="sum")
        mean = lm.lm_loss(logits, Y)
    n_chars = sum(len(w) + 1 for w in words)
    torch.testing.assert_close(rows, per_word, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(total, per_word.sum(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mean, per_word.sum() / n_chars, rtol=1e-10, atol=1e-10)
    assert lm.nats_per_char(model, X, Y, batch_size=7) == pytest.approx(mean.item(), rel=1e-10)
    with pytest.raises(ValueError):
        lm.lm_loss(logits, Y, reduction="average")


def test_padding_content_and_extra_columns_do_not_matter_and_the_bug_is_caught():
    model = small_model("lstm")
    words = random_words(2)
    X, Y = lm.encode_words(words, LETTERS)
    Xw, Yw = lm.encode_words(words, LETTERS, block=X.shape[1] + 6)
    garbage = X.clone()
    pad = lm.target_lengths(Y)[:, None] <= torch.arange(X.shape[1])
    garbage[pad] = torch.randint(1, len(LETTERS), (int(pad.sum()),), generator=gen(3))
    with torch.no_grad():
        ref = lm.lm_loss(model(X)[0], Y)
        torch.testing.assert_close(lm.lm_loss(model(garbage)[0], Y), ref)
        torch.testing.assert_close(lm.lm_loss(model(Xw)[0], Yw), ref)
        bug = F.cross_entropy(model(X)[0].transpose(1, 2), Y.masked_fill(Y == -100, 0))
    assert abs(bug - ref) > 1e-3
    assert lm.nats_per_char(model, Xw, Yw) == pytest.approx(ref.item(), rel=1e-10)


def test_nats_per_char_restores_the_mode():
    model = small_model("gru", dropout=0.5, num_layers=2).train()
    X, Y = lm.encode_words(random_words(4), LETTERS)
    a = lm.nats_per_char(model, X, Y)
    assert model.training and a == lm.nats_per_char(model, X, Y)  # no dropout inside


def test_length_batches_cover_every_row_once():
    lengths = torch.randint(2, 15, (1000,), generator=gen(13))
    batches = lm.length_batches(lengths, 64, generator=gen(14))
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1000))
    assert max(len(b) for b in batches) == 64
    spread = sum((lengths[b].max() - lengths[b].min()).item() for b in batches) / len(batches)
    assert spread < 3  # similar lengths inside a batch (random batches: about 11)
    again = lm.length_batches(lengths, 64, generator=gen(14))
    assert all(torch.equal(p, q) for p, q in zip(batches, again))


@pytest.mark.parametrize("stateless", [False, True])
def test_train_lm_learns_and_records_history(stateless):
    words = ["a" + w for w in random_words(19, n=64)]  # a learnable pattern: every word starts with a
    X, Y = lm.encode_words(words, LETTERS)
    net = small_model("gru").float().train()
    model = Stateless(net) if stateless else net
    before = lm.nats_per_char(model, X, Y)
    hist = lm.train_lm(model, X, Y, epochs=4, batch_size=16, lr=1e-2, generator=gen(20), dev=(X, Y))
    assert {k: len(v) for k, v in hist.items()} == {"loss": 16, "grad_norm": 16, "lr": 16, "dev": 4,
                                                   "dev_step": 4}
    assert hist["dev_step"] == [4, 8, 12, 16] and hist["dev"][-1] < before - 0.1
    assert max(hist["lr"]) == pytest.approx(1e-2, rel=0.05) and hist["lr"][-1] < 1e-3
    assert hist["dev"][-1] == pytest.approx(lm.nats_per_char(model, X, Y), rel=1e-6)
    assert not model.training
    hist = lm.train_lm(model, X, Y, epochs=10, max_steps=5, batch_size=16, generator=gen(21), dev=(X, Y))
    assert len(hist["loss"]) == 5 and hist["dev_step"] == [4, 5]  # each epoch, and the last step


def test_train_lm_clips_and_accepts_a_loss_function():
    X, Y = lm.encode_words(random_words(22, n=32), LETTERS)
    model = small_model("rnn").float()
    seen = []

    def loss_fn(logits, Yb):
        seen.append(Yb.shape[1])
        return 100 * lm.lm_loss(logits, Yb)  # large gradients

    lm.train_lm(model, X, Y, epochs=1, batch_size=8, clip=0.5, generator=gen(23), loss_fn=loss_fn)
    assert len(seen) == 4 and max(seen) <= X.shape[1]
    # gradient norm after clipping: recompute one step by hand
    model2 = small_model("rnn").float()
    loss = loss_fn(model2(X[:8])[0], Y[:8])
    loss.backward()
    norm = nn.utils.clip_grad_norm_(model2.parameters(), 0.5)
    assert norm > 0.5
    assert torch.cat([p.grad.flatten() for p in model2.parameters()]).norm() <= 0.5 + 1e-5


def test_sample_next_never_leaves_the_top_k_and_follows_the_tempered_distribution():
    g = gen(6)
    logits = torch.randn(300, 12, generator=g) * 3
    allowed = logits.topk(3, dim=-1).indices
    for _ in range(20):
        draw = lm.sample_next(logits, temperature=1.5, top_k=3, generator=g)
        assert (allowed == draw[:, None]).any(dim=1).all()
    assert torch.equal(lm.sample_next(logits, 5.0, top_k=1, generator=g), logits.argmax(-1))
    for T in (0, 1e-4):
        assert torch.equal(lm.sample_next(logits, temperature=T, generator=g), logits.argmax(-1))
    z = torch.tensor([[1.0, 3.0, 0.2, 2.0, -1.0]])
    draws = lm.sample_next(z.expand(100_000, -1), temperature=2.0, top_k=3, generator=gen(7))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    expected = torch.zeros(5, dtype=torch.float64)
    expected[[1, 3, 0]] = torch.softmax(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64) / 2, 0)
    torch.testing.assert_close(freq, expected, rtol=0, atol=0.01)


def _drawn_positions(ids, k=1):
    """Mask over ids[:, k:] of the tokens really drawn (up to and including the first boundary)."""
    new = ids[:, k:]
    before = torch.cumsum((new == 0).long(), dim=1) - (new == 0).long() == 0
    return before


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_sample_respects_top_k_along_whole_words(cell):
    model = small_model(cell, seed=3).float()
    ids = lm.sample(model, LETTERS, 300, temperature=1.3, top_k=2, max_len=12, generator=gen(11),
                    return_ids=True)
    assert ids.shape[0] == 300 and ids.shape[1] <= 13 and (ids[:, 0] == 0).all()
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    in_top = (logits.topk(2, dim=-1).indices == ids[:, 1:, None]).any(dim=-1)
    mask = _drawn_positions(ids)
    assert mask.sum() > 300 and in_top[mask].all()
    assert (ids[:, 1:][~mask] == 0).all()  # boundary fill after the end


def test_sample_stateful_and_stateless_paths_agree():
    model = small_model("lstm", seed=5, num_layers=2).float()
    a = lm.sample(model, LETTERS, 200, temperature=1.0, max_len=15, generator=gen(30))
    b = lm.sample(Stateless(model), LETTERS, 200, temperature=1.0, max_len=15, generator=gen(30))
    assert a == b and len(a) == 200 and all(set(w) <= set("abcdefghij") for w in a)
    ids = lm.sample(model, LETTERS, 200, max_len=15, generator=gen(30), return_ids=True)
    words = []  # the words are the drawn ids up to the first boundary
    for row in ids[:, 1:].tolist():
        row = row[: row.index(0)] if 0 in row else row
        words.append("".join(LETTERS.itos[i] for i in row))
    assert words == a


def test_greedy_sampling_is_the_argmax_path_and_prefixes_are_kept():
    model = small_model("gru", seed=4).float()
    greedy = lm.sample(model, LETTERS, 5, temperature=0, max_len=10, return_ids=True)
    with torch.no_grad():
        logits, _ = model(greedy[:, :-1])
    mask = _drawn_positions(greedy)
    assert torch.equal(logits.argmax(-1)[mask], greedy[:, 1:][mask])
    assert torch.equal(lm.sample(model, LETTERS, 5, temperature=1e-6, max_len=10, generator=gen(1),
                                 return_ids=True), greedy)
    prefix = torch.tensor([[0, LETTERS.stoi["c"]], [0, LETTERS.stoi["j"]]])
    words = lm.sample(model, LETTERS, prefix=prefix, temperature=0, max_len=10)
    assert words[0].startswith("c") and words[1].startswith("j")
    with pytest.raises(ValueError):
        lm.sample(model, LETTERS)


def test_sample_never_draws_other_special_tokens_and_crops_context():
    vocab = CharVocab(["abcabc"], specials=(".", "<unk>"))
    torch.manual_seed(0)
    model = lm.CharRNN(len(vocab), embed_dim=4, hidden_size=8).eval()
    with torch.no_grad():
        model.head.bias[vocab.stoi["<unk>"]] = 50.0  # the model loves <unk>
    ids = lm.sample(model, vocab, 100, max_len=8, generator=gen(2), return_ids=True)
    assert (ids != vocab.stoi["<unk>"]).all()
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.append(x.shape[1])
            return torch.zeros(x.shape[0], x.shape[1], len(vocab)).index_fill_(2, torch.tensor([0]), -9.0)

    lm.sample(Recorder(), vocab, 3, max_len=10, context=4, generator=gen(3))
    assert max(seen) == 4 and seen[:4] == [1, 2, 3, 4]


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("gru", 2), ("lstm", 2)])
def test_char_rnn_shapes_and_state_carrying(cell, layers):
    torch.manual_seed(0)
    model = lm.CharRNN(11, embed_dim=8, hidden_size=16, num_layers=layers, cell=cell, dropout=0.1)
    x = torch.randint(0, 11, (5, 7))
    logits, state = model(x)
    assert logits.shape == (5, 7, 11)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (layers, 5, 16)
    model.eval()
    with torch.no_grad():
        full, _ = model(x)
        state, steps = None, []
        for t in range(x.shape[1]):
            out, state = model(x[:, t : t + 1], state)
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-6)


def test_makemore_gru_recipe_builds():
    model = lm.CharRNN(27, **lm.MAKEMORE_GRU["model"])
    assert sum(p.numel() for p in model.parameters()) == 255_963  # the GRU of lecture 09 on 27 tokens
    assert set(lm.MAKEMORE_GRU["train"]) <= set(lm.train_lm.__kwdefaults__)


def test_train_lm_weighs_every_character_the_same():
    """One full batch: the objective's gradient is that of nats per character over the data.

    With length-sorted batches, two half batches of short and long words: the default
    objective's gradients add up to the gradient of the whole set's nats per character
    (a per-batch mean would weight the short words' characters up).
    """
    words = ["ab", "ba", "abcdefghij", "jihgfedcba"]
    X, Y = lm.encode_words(words, LETTERS)
    n_chars = lm.target_lengths(Y).sum()
    model = small_model("gru", seed=8)
    per_batch = 2 * lm.target_lengths(Y).double().mean()
    grads = []
    for rows in ([0, 1], [2, 3]):
        model.zero_grad()
        (lm.lm_loss(model(X[rows])[0], Y[rows], reduction="sum") / per_batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad()
    lm.lm_loss(model(X)[0], Y).backward()
    whole = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close((grads[0] + grads[1]) / 2, whole, rtol=1e-10, atol=1e-12)
    assert n_chars == 2 * 3 + 2 * 11
    # and train_lm records each batch's own nats per character
    hist = lm.train_lm(small_model("gru", seed=8).float(), X, Y, epochs=1, batch_size=2, lr=0.0,
                       generator=gen(1))
    before = small_model("gru", seed=8).float()
    with torch.no_grad():
        own = sorted(lm.lm_loss(before(X[r])[0], Y[r]).item() for r in ([0, 1], [2, 3]))
    assert sorted(hist["loss"]) == pytest.approx(own, rel=1e-5)

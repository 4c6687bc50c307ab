"""Lecture 9: the name-generation pieces (masked loss, bigram, sampling, clipping, GRU cell)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nbdefs import definitions
from utils.text import CharVocab

nb = definitions("09_name_generation")

VOCAB = CharVocab(["abcdefghij"], specials=("<pad>", "<end>"))  # 12 tokens, <pad> = 0
V = len(VOCAB)
END = VOCAB.stoi["<end>"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_batch(seed: int, n: int = 40, pad_value: int | None = 0):
    """Right-padded rows of random characters ending in <end>, lengths 2..12 (with <end>)."""
    g = gen(seed)
    lengths = torch.randint(2, 13, (n,), generator=g)
    X = torch.randint(2, V, (n, int(lengths.max())), generator=g)
    for i, n_i in enumerate(lengths.tolist()):
        X[i, n_i - 1] = END
        X[i, n_i:] = pad_value if pad_value is not None else X[i, n_i:]  # None: garbage padding
    return X, lengths


def small_model(cell: str = "gru", seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return nb.CharRNN(V, embed_dim=8, hidden_size=16, cell=cell, **kw).double().eval()


def one_name_at_a_time(model, X, lengths):
    """Total nats per name, each name fed alone and unpadded; plain cross_entropy."""
    totals = []
    with torch.no_grad():
        for row, n in zip(X, lengths.tolist()):
            name = row[:n]
            logits, _ = model(name[None, :-1])
            totals.append(F.cross_entropy(logits[0], name[1:], reduction="sum"))
    return torch.stack(totals)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_padded_loss_equals_names_one_at_a_time(cell):
    model = small_model(cell, num_layers=2)
    X, lengths = random_batch(1)
    per_name = one_name_at_a_time(model, X, lengths)
    with torch.no_grad():
        mean = nb.sequence_loss(model, X, lengths)
        total = nb.sequence_loss(model, X, lengths, reduction="sum")
        rows = nb.sequence_loss(model, X, lengths, reduction="none")
    torch.testing.assert_close(rows, per_name, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(total, per_name.sum(), rtol=1e-10, atol=1e-10)
    # nats per character: all characters of all names count equally (not a mean of name means)
    torch.testing.assert_close(mean, per_name.sum() / (lengths - 1).sum(), rtol=1e-10, atol=1e-10)


def test_the_masking_bug_would_be_caught():
    model = small_model()
    X, lengths = random_batch(2)
    with torch.no_grad():
        correct = nb.sequence_loss(model, X, lengths)
        logits, _ = model(X[:, :-1])
        pad_as_data = F.cross_entropy(logits.transpose(1, 2), X[:, 1:])
    assert abs(pad_as_data - correct) > 1e-3


def test_padding_content_and_extra_columns_do_not_matter():
    model = small_model("lstm")
    X, lengths = random_batch(3)
    X_garbage, _ = random_batch(3, pad_value=None)  # same names, random tokens as padding
    X_wide = torch.cat([X, torch.zeros(len(X), 5, dtype=X.dtype)], dim=1)
    with torch.no_grad():
        ref = nb.sequence_loss(model, X, lengths)
        torch.testing.assert_close(nb.sequence_loss(model, X_garbage, lengths), ref)
        torch.testing.assert_close(nb.sequence_loss(model, X_wide, lengths), ref)


def test_evaluate_loss_is_nats_per_character_over_the_data_set():
    model = small_model()
    X, lengths = random_batch(4, n=50)
    expected = one_name_at_a_time(model, X, lengths).sum() / (lengths - 1).sum()
    got = nb.evaluate_loss(model, X, lengths, batch_size=7)  # uneven batches
    assert got == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("gru", 2), ("lstm", 2)])
def test_char_rnn_shapes(cell, layers):
    torch.manual_seed(0)
    model = nb.CharRNN(V, embed_dim=8, hidden_size=16, num_layers=layers, cell=cell, dropout=0.1)
    x = torch.randint(0, V, (5, 7))
    logits, state = model(x)
    assert logits.shape == (5, 7, V)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (layers, 5, 16)
    # carrying the state one step at a time gives the same logits as the whole sequence
    model.eval()
    with torch.no_grad():
        full, _ = model(x)
        state, steps = None, []
        for t in range(x.shape[1]):
            out, state = model(x[:, t : t + 1], state)
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-6)


def test_bigram_probabilities_sum_to_one_and_match_counts():
    X, lengths = random_batch(5, n=200)
    P = nb.bigram_probs(X, lengths, V, alpha=0.5)
    torch.testing.assert_close(P.sum(dim=1), torch.ones(V, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (P[:, 0] == 0).all() and (P[:, 1:] > 0).all()
    counts = torch.zeros(V, V, dtype=torch.float64)
    for row, n in zip(X, lengths.tolist()):
        for a, b in zip(row[: n - 1].tolist(), row[1:n].tolist()):
            counts[a, b] += 1
    counts[:, 1:] += 0.5
    torch.testing.assert_close(P, counts / counts.sum(dim=1, keepdim=True), rtol=0, atol=1e-12)
    # as a language model, its loss is the mean of -log P over the real pairs
    nll, n_pairs = 0.0, 0
    for row, n in zip(X, lengths.tolist()):
        for a, b in zip(row[: n - 1].tolist(), row[1:n].tolist()):
            nll -= torch.log(P[a, b]).item()
            n_pairs += 1
    expected = nll / n_pairs
    assert nb.evaluate_loss(nb.BigramLM(P), X, lengths) == pytest.approx(expected, rel=1e-10)


def test_sample_next_never_leaves_the_top_k():
    g = gen(6)
    logits = torch.randn(300, V, generator=g) * 3
    allowed = logits.topk(3, dim=-1).indices
    for _ in range(20):
        draw = nb.sample_next(logits, temperature=1.5, top_k=3, generator=g)
        assert (allowed == draw[:, None]).any(dim=1).all()
    # top_k=1 is greedy whatever the temperature
    assert torch.equal(nb.sample_next(logits, 5.0, top_k=1, generator=g), logits.argmax(-1))


def test_sample_next_frequencies_follow_the_tempered_top_k_distribution():
    z = torch.tensor([[1.0, 3.0, 0.2, 2.0, -1.0]])
    draws = nb.sample_next(z.expand(100_000, -1), temperature=2.0, top_k=3, generator=gen(7))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    expected = torch.zeros(5, dtype=torch.float64)
    expected[[1, 3, 0]] = torch.softmax(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64) / 2, 0)
    torch.testing.assert_close(freq, expected, rtol=0, atol=0.01)


def test_temperature_to_zero_gives_argmax():
    logits = torch.randn(200, V, generator=gen(8))
    for T in (0, 1e-4):
        assert torch.equal(nb.sample_next(logits, temperature=T, generator=gen(9)), logits.argmax(-1))


def _teacher_forced_logits(model, ids):
    """Logits the model gives at each generated step (banned tokens masked as in `sample`)."""
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    logits = logits.clone()
    logits[..., VOCAB.stoi["<pad>"]] = float("-inf")
    return logits  # logits[:, t] is the distribution of ids[:, t + 1]


def _generated_positions(ids):
    """Mask of positions 1.. that were really drawn (up to and including <end>)."""
    before_end = torch.cumsum((ids == END).long(), dim=1) - (ids == END).long() == 0
    return before_end[:, 1:] & (ids[:, 1:] != 0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_sample_respects_top_k_along_whole_names(cell):
    model = small_model(cell, seed=3).float()
    first = torch.randint(2, V, (200,), generator=gen(10))
    ids = nb.sample(model, VOCAB, first, end="<end>", temperature=1.3, top_k=2, max_len=12,
                    generator=gen(11), return_ids=True)
    assert ids.shape[0] == 200 and ids.shape[1] <= 13
    assert torch.equal(ids[:, 0], first)
    logits = _teacher_forced_logits(model, ids)
    top2 = logits.topk(2, dim=-1).indices
    in_top = (top2 == ids[:, 1:, None]).any(dim=-1)
    mask = _generated_positions(ids)
    assert mask.sum() > 200
    assert in_top[mask].all()
    assert (ids != 0).any() and (ids[:, 1:][~mask] == 0).all()  # padding only after <end>


def test_greedy_sampling_is_the_argmax_path_and_small_temperature_matches():
    model = small_model("gru", seed=4).float()
    first = torch.arange(2, V)
    greedy = nb.sample(model, VOCAB, first, end="<end>", temperature=0, max_len=10, return_ids=True)
    logits = _teacher_forced_logits(model, greedy)
    mask = _generated_positions(greedy)
    assert torch.equal(logits.argmax(-1)[mask], greedy[:, 1:][mask])
    cold = nb.sample(model, VOCAB, first, end="<end>", temperature=1e-5, max_len=10,
                     generator=gen(12), return_ids=True)
    assert torch.equal(cold, greedy)
    names = nb.sample(model, VOCAB, first, end="<end>", temperature=0, max_len=10)
    assert names == [VOCAB.decode(row) for row in greedy]
    assert all("<" not in s for s in names)


def test_length_batches_cover_every_row_once():
    lengths = torch.randint(2, 15, (1000,), generator=gen(13))
    batches = nb.length_batches(lengths, 64, generator=gen(14))
    everything = torch.cat(batches).sort().values
    assert torch.equal(everything, torch.arange(1000))
    assert max(len(b) for b in batches) == 64
    spread = sum((lengths[b].max() - lengths[b].min()).item() for b in batches) / len(batches)
    assert spread < 3  # similar lengths inside a batch (random batches: about 11)


def test_clip_gradients_matches_torch():
    nets = [small_model("rnn", seed=5) for _ in range(2)]
    X, lengths = random_batch(15)
    for net in nets:
        net.train()
        (50 * nb.sequence_loss(net, X, lengths)).backward()
    ours = nb.clip_gradients(list(nets[0].parameters()), 0.5)
    theirs = nn.utils.clip_grad_norm_(nets[1].parameters(), 0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-14)
    assert torch.cat([p.grad.flatten() for p in nets[0].parameters()]).norm() <= 0.5 + 1e-9


def test_gru_cell_matches_torch_and_the_course_variant_differs():
    torch.manual_seed(16)
    cell = nn.GRUCell(7, 9).double()
    x, h = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    params = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    with torch.no_grad():
        torch.testing.assert_close(nb.gru_cell(x, h, *params), cell(x, h), rtol=1e-12, atol=1e-12)
        other = nb.gru_cell(x, h, *params, reset_after=False)
    assert (other - cell(x, h)).abs().max() > 1e-3


def test_jacobian_through_time_matches_autograd():
    g = gen(17)
    W_hh = torch.randn(6, 6, generator=g, dtype=torch.float64) / 2
    W_xh = torch.randn(6, 3, generator=g, dtype=torch.float64)
    xs = torch.randn(9, 3, generator=g, dtype=torch.float64)
    h1 = torch.randn(6, generator=g, dtype=torch.float64)
    states = nb.rnn_states(W_hh, W_xh, h1, xs)
    assert len(states) == 10
    expected = torch.autograd.functional.jacobian(lambda h: nb.rnn_states(W_hh, W_xh, h, xs)[-1], h1)
    torch.testing.assert_close(nb.jacobian_through_time(W_hh, states), expected, rtol=1e-10, atol=1e-12)


def test_with_spectral_radius():
    W = torch.randn(20, 20, generator=gen(18), dtype=torch.float64)
    for rho in (0.5, 1.3):
        assert torch.linalg.eigvals(nb.with_spectral_radius(W, rho)).abs().max().item() == pytest.approx(rho)


def test_train_lm_reduces_the_loss_and_records_history():
    X, lengths = random_batch(19, n=64)
    X[:, 0] = 2  # a learnable pattern: every name starts with the same character
    model = small_model("gru").float().train()
    before = nb.evaluate_loss(model, X, lengths)
    hist = nb.train_lm(model, X, lengths, epochs=4, batch_size=16, lr=1e-2, generator=gen(20),
                       X_val=X, L_val=lengths)
    assert len(hist["loss"]) == 16 and len(hist["grad_norm"]) == 16 and len(hist["val"]) == 4
    assert hist["val"][-1] < before
    hist = nb.train_lm(model, X, lengths, epochs=10, max_steps=5, batch_size=16, generator=gen(21))
    assert len(hist["loss"]) == 5 and hist["val"] == []

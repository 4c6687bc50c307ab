"""Lecture 10 (attention): the notebook's attention functions and modules against PyTorch or
closed forms, on fresh random inputs; masks, causality, padding, positional encodings, the
date translator's attention and BERT's masking (no data download needed)."""

import math

import pytest
import torch
import torch.nn.functional as F
from nbdefs import definitions
from torch import nn

nb = definitions("10_attention")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _qkv(B, H, Lq, Lk, d, dv=None, dtype=torch.float32):
    dv = dv or d
    return (torch.randn(B, H, Lq, d, dtype=dtype), torch.randn(B, H, Lk, d, dtype=dtype),
            torch.randn(B, H, Lk, dv, dtype=dtype))


# ------------------------------------------------------------ scaled dot-product attention
@pytest.mark.parametrize("shape", [(2, 3, 5, 5, 8, 8), (1, 1, 4, 9, 16, 3), (4, 2, 7, 7, 4, 6)])
def test_sdpa_matches_torch_without_mask(shape):
    B, H, Lq, Lk, d, dv = shape
    q, k, v = _qkv(B, H, Lq, Lk, d, dv)
    out, w = nb.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, Lq), atol=1e-6, rtol=0)


@pytest.mark.parametrize("L", [1, 6, 11])
def test_sdpa_matches_torch_with_causal_mask(L):
    q, k, v = _qkv(3, 2, L, L, 8)
    out, _ = nb.scaled_dot_product_attention(q, k, v, nb.causal_mask(L))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-6, rtol=0)


def test_sdpa_matches_torch_with_boolean_padding_mask_and_both_masks():
    B, H, L, d = 4, 3, 9, 8
    q, k, v = _qkv(B, H, L, L, d)
    lengths = torch.tensor([9, 5, 1, 7])
    keep = nb.padding_mask(lengths, L)
    assert keep.dtype == torch.bool and keep.shape == (B, L)
    keep = keep[:, None, None, :]
    for mask in (keep, nb.causal_mask(L) & keep):
        ours, _ = nb.scaled_dot_product_attention(q, k, v, mask)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_sdpa_float64_and_custom_scale():
    q, k, v = _qkv(2, 2, 5, 6, 7, dtype=torch.float64)
    out, _ = nb.scaled_dot_product_attention(q, k, v, scale=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_masked_keys_receive_exactly_zero_weight():
    B, H, L = 3, 2, 8
    q, k, v = _qkv(B, H, L, L, 4)
    q, k = 30 * q, 30 * k  # large scores: a -1e4 style mask would leak, -inf does not
    allowed = nb.causal_mask(L) & nb.padding_mask(torch.tensor([8, 3, 5]), L)[:, None, None, :]
    _, w = nb.scaled_dot_product_attention(q, k, v, allowed)
    assert torch.all(w[~allowed.expand_as(w)] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L), atol=1e-6, rtol=0)


def test_causal_output_at_t_ignores_future_tokens():
    L, t = 10, 4
    q, k, v = _qkv(2, 2, L, L, 8)
    k2, v2 = k.clone(), v.clone()
    k2[..., t + 1 :, :] = torch.randn_like(k2[..., t + 1 :, :])
    v2[..., t + 1 :, :] = torch.randn_like(v2[..., t + 1 :, :])
    mask = nb.causal_mask(L)
    out1, _ = nb.scaled_dot_product_attention(q, k, v, mask)
    out2, _ = nb.scaled_dot_product_attention(q, k2, v2, mask)
    torch.testing.assert_close(out1[..., : t + 1, :], out2[..., : t + 1, :], atol=1e-6, rtol=0)
    assert not torch.allclose(out1[..., t + 1 :, :], out2[..., t + 1 :, :])


def test_zero_mask_bug_is_really_wrong():
    # the notebook's deliberately buggy version must differ from the reference
    q, k, v = _qkv(2, 1, 6, 6, 8)
    mask = nb.causal_mask(6)
    buggy, w = nb.attention_zero_mask_bug(q, k, v, mask)
    assert (w[..., ~mask] > 0).all()
    assert not torch.allclose(buggy, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-3)


# --------------------------------------------------------------------- additive attention
def test_additive_attention_matches_the_formula():
    Lq, Lk, dq, dk, dv, h = 4, 6, 3, 5, 2, 7
    q, k, v = (torch.randn(Lq, dq, dtype=torch.float64), torch.randn(Lk, dk, dtype=torch.float64),
               torch.randn(Lk, dv, dtype=torch.float64))
    W_q, W_k, w = (torch.randn(h, dq, dtype=torch.float64), torch.randn(h, dk, dtype=torch.float64),
                   torch.randn(h, dtype=torch.float64))
    e = torch.stack([torch.stack([w @ torch.tanh(W_q @ q[i] + W_k @ k[j]) for j in range(Lk)])
                     for i in range(Lq)])
    mask = torch.rand(Lq, Lk) < 0.6
    mask[:, 0] = True
    a = torch.softmax(e.masked_fill(~mask, -math.inf), dim=1)
    ctx, weights = nb.additive_attention(q, k, v, W_q, W_k, w, mask=mask)
    torch.testing.assert_close(weights, a, atol=1e-12, rtol=0)
    torch.testing.assert_close(ctx, a @ v, atol=1e-12, rtol=0)
    assert torch.all(weights[~mask] == 0)


# ---------------------------------------------------------------- self / multi-head attention
def test_self_attention_is_sdpa_of_projections_and_permutation_equivariant():
    x = torch.randn(6, 8, dtype=torch.float64)
    W_q, W_k, W_v = (torch.randn(4, 8, dtype=torch.float64) for _ in range(3))
    out, _ = nb.self_attention(x, W_q, W_k, W_v)
    ref = F.scaled_dot_product_attention(x @ W_q.T, x @ W_k.T, x @ W_v.T)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    perm = torch.randperm(6)
    torch.testing.assert_close(nb.self_attention(x[perm], W_q, W_k, W_v)[0], out[perm],
                               atol=1e-12, rtol=0)


def _mha_pair(d_model, n_heads):
    ref = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    with torch.no_grad():  # non-trivial biases, so a bias mix-up shows
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    return nb.copy_mha_weights(nb.MultiHeadAttention(d_model, n_heads), ref), ref


@pytest.mark.parametrize("d_model,n_heads", [(12, 3), (16, 1), (32, 8)])
def test_multi_head_attention_matches_nn_multiheadattention(d_model, n_heads):
    ours, ref = _mha_pair(d_model, n_heads)
    B, L, Lm = 3, 7, 5
    x, mem = torch.randn(B, L, d_model), torch.randn(B, Lm, d_model)
    pad = torch.arange(L) >= torch.tensor([7, 4, 2])[:, None]  # True = padding
    pad_mem = torch.arange(Lm) >= torch.tensor([1, 5, 3])[:, None]
    future = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = forbidden
    rect = torch.rand(L, Lm) < 0.3
    rect[:, 0] = False
    cases = [
        ((x, x, x), {}),
        ((x, x, x), {"key_padding_mask": pad}),
        ((x, x, x), {"attn_mask": future}),
        ((x, x, x), {"key_padding_mask": pad, "attn_mask": future}),
        ((x, mem, mem), {"key_padding_mask": pad_mem}),
        ((x, mem, mem), {"key_padding_mask": pad_mem, "attn_mask": rect}),
    ]
    for inputs, masks in cases:
        out, w = ours(*inputs, **masks)
        ref_out, ref_w = ref(*inputs, **masks)
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
        torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)
        _, w_heads = ours(*inputs, **masks, average_attn_weights=False)
        _, ref_heads = ref(*inputs, **masks, average_attn_weights=False)
        torch.testing.assert_close(w_heads, ref_heads, atol=1e-6, rtol=0)


def test_multi_head_attention_padding_gets_zero_weight_and_no_influence():
    ours, _ = _mha_pair(16, 4)
    x = torch.randn(2, 6, 16)
    pad = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    out, w = ours(x, x, x, key_padding_mask=pad, average_attn_weights=False)
    assert torch.all(w[0, :, :, 4:] == 0)
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, 16)  # change the padded tokens only
    out2, _ = ours(x2, x2, x2, key_padding_mask=pad)
    torch.testing.assert_close(out2[0, :4], out[0, :4], atol=1e-6, rtol=0)


def test_multi_head_attention_rejects_float_masks():
    ours, _ = _mha_pair(8, 2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(TypeError):
        ours(x, x, x, attn_mask=torch.zeros(3, 3))


# ------------------------------------------------------------------------- the models
def test_attention_pool_classifier_masks_padding():
    model = nb.AttentionPoolClassifier(vocab_size=20, max_len=5, d=8).eval()
    x = torch.tensor([[3, 4, 5, 0, 0], [7, 8, 0, 0, 0], [2, 9, 11, 12, 13]])
    logits, w = model(x, return_weights=True)
    assert logits.shape == (3, 2) and w.shape == (3, 5)
    assert torch.all(w[x == 0] == 0)
    torch.testing.assert_close(w.sum(1), torch.ones(3), atol=1e-6, rtol=0)
    # the same names with less padding give the same logits
    torch.testing.assert_close(model(x[:2, :3]), logits[:2], atol=1e-6, rtol=0)


def test_gru_classifier_ignores_trailing_padding():
    model = nb.GRUClassifier(vocab_size=20, d=8, hidden=12).eval()
    x = torch.tensor([[3, 4, 5], [7, 8, 0]])
    longer = torch.cat([x, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(longer), model(x), atol=1e-6, rtol=0)


def test_char_transformer_is_causal():
    model = nb.CharTransformer(vocab_size=27, block_size=12, d_model=16, n_heads=4, n_layers=2).eval()
    x = torch.randint(0, 27, (5, 12))
    t = 6
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randint(0, 27, (5, 12 - t - 1))
    with torch.no_grad():
        a, b = model(x), model(x2)
        _, attention = model(x, return_attention=True)
    assert a.shape == (5, 12, 27)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])
    for w in attention:
        assert w.shape == (5, 4, 12, 12)
        assert torch.all(torch.triu(w, diagonal=1) == 0)


def test_char_transformer_bidirectional_mode_sees_the_future():
    bert = nb.CharTransformer(vocab_size=11, block_size=8, d_model=16, n_heads=2, n_layers=1, causal=False).eval()
    x = torch.randint(0, 11, (3, 8))
    x2 = x.clone()
    x2[:, -1] = (x[:, -1] + 1) % 11
    with torch.no_grad():
        assert not torch.allclose(bert(x)[:, 0], bert(x2)[:, 0])  # position 0 sees the last token


def test_mask_for_mlm_follows_berts_recipe():
    from utils.lm import encode_words, lm_vocab

    words = ["emma", "olivia", "ava", "isabella", "sophia", "mia"] * 400
    vocab = lm_vocab(words)
    X, Y = encode_words(words, vocab)
    mask_id = len(vocab)
    Xc, T = nb.mask_for_mlm(X, Y, torch.Generator().manual_seed(0), mask_id, len(vocab), rate=0.3)
    picked = T != -100
    real = torch.zeros_like(picked)
    real[:, 1:] = Y[:, :-1] > 0
    assert not (picked & ~real).any()  # never the boundary token or padding
    assert torch.equal(T[picked], X[picked])  # targets are the original characters
    assert torch.equal(Xc[~picked], X[~picked])  # nothing else changes
    frac = picked.sum() / real.sum()
    assert 0.27 < frac < 0.33
    share_mask = (Xc[picked] == mask_id).float().mean()
    share_same = (Xc[picked] == X[picked]).float().mean()
    assert 0.76 < share_mask < 0.84 and 0.08 < share_same < 0.16
    assert ((Xc[picked] >= 1) & (Xc[picked] <= mask_id)).all()


def test_nats_per_word_adds_up_to_nats_per_char():
    from utils.lm import CharRNN, encode_words, lm_vocab, nats_per_char

    words = ["anna", "bob", "christina", "dee"]
    vocab = lm_vocab(words)
    X, Y = encode_words(words, vocab)
    model = CharRNN(len(vocab), embed_dim=8, hidden_size=8)
    per_word = nb.nats_per_word(model, X, Y)
    chars = (Y != -100).sum(1)
    assert per_word.shape == (4,)
    assert abs(per_word.sum().item() / chars.sum().item() - nats_per_char(model, X, Y)) < 1e-6



@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_bigram_log_probs_match_counts_by_hand(alpha):
    from utils.lm import encode_words, lm_vocab

    words = ["anna", "bob", "christina", "dee", "ada", "bo"]
    vocab = lm_vocab(words)
    X, Y = encode_words(words, vocab)
    V = len(vocab)
    log_p = nb.bigram_log_probs(X, Y, V, alpha=alpha)
    counts = torch.full((V, V), alpha, dtype=torch.float64)
    for w in words:  # the pairs (previous, next) of ". w ." counted one by one
        ids = [0] + [vocab.stoi[c] for c in w] + [0]
        for a, b in zip(ids[:-1], ids[1:]):
            counts[a, b] += 1
    torch.testing.assert_close(log_p, (counts / counts.sum(1, keepdim=True)).log(), atol=1e-12, rtol=0)
    torch.testing.assert_close(log_p.exp().sum(1), torch.ones(V, dtype=torch.float64), atol=1e-12, rtol=0)

# ------------------------------------------------------------ positional encodings, local attention
@pytest.mark.parametrize("length,d", [(7, 4), (30, 16), (50, 32)])
def test_sinusoidal_positions_closed_form_and_shift_property(length, d):
    pe = nb.sinusoidal_positions(length, d)
    assert pe.shape == (length, d)
    for p in (0, 1, length - 1):
        for j in range(d):
            f = math.sin if j % 2 == 0 else math.cos
            assert abs(pe[p, j].item() - f(p / 10000 ** ((j - j % 2) / d))) < 1e-12
    k = 2
    omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    c, s = torch.cos(k * omega), torch.sin(k * omega)
    shifted = torch.empty_like(pe[:-k])
    shifted[:, 0::2] = pe[:-k, 0::2] * c + pe[:-k, 1::2] * s  # sin(a + b)
    shifted[:, 1::2] = pe[:-k, 1::2] * c - pe[:-k, 0::2] * s  # cos(a + b)
    torch.testing.assert_close(pe[k:], shifted, atol=1e-12, rtol=0)


@pytest.mark.parametrize("L,width", [(5, 0), (8, 2), (9, 10)])
def test_local_mask_is_a_band_and_matches_torch(L, width):
    m = nb.local_mask(L, width)
    i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    assert torch.equal(m, (i - j).abs() <= width)
    q, k, v = _qkv(2, 2, L, L, 4)
    ours, _ = nb.scaled_dot_product_attention(q, k, v, m)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=m), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- the date translator
def _translator(attention=True):
    from utils.dates import SOURCE_WORDS, TARGET_CHARS

    return nb.DateTranslator(len(SOURCE_WORDS), len(TARGET_CHARS), d=8, hidden=12, attention=attention, d_att=6).eval()


def _date_batch():
    from utils.dates import date_splits, encode_pairs

    return encode_pairs(date_splits(20, 0, 0, seed=5)["train"])


def test_date_translator_attention_matches_the_formula_and_masks_padding():
    model = _translator()
    X, Y = _date_batch()
    with torch.no_grad():
        logits, a = model(X, nb.shift_right(Y), return_weights=True)
        H, summary, keep = model.encode(X)
        s0 = torch.tanh(model.init(summary))
        e = torch.empty(X.shape)
        for b in range(len(X)):
            for j in range(X.shape[1]):
                e[b, j] = model.w @ torch.tanh(model.W_q @ s0[b] + model.W_k @ H[b, j])
        e = e.masked_fill(~keep, float("-inf"))
        torch.testing.assert_close(a[:, 0], torch.softmax(e, dim=1), atol=1e-6, rtol=0)
    assert logits.shape == (20, 10, 12) and a.shape == (20, 10, X.shape[1])
    assert torch.all(a[~keep[:, None].expand_as(a)] == 0)
    torch.testing.assert_close(a.sum(-1), torch.ones(20, 10), atol=1e-6, rtol=0)


@pytest.mark.parametrize("attention", [True, False])
def test_date_translator_ignores_extra_padding_and_decodes_greedily(attention):
    model = _translator(attention)
    X, Y = _date_batch()
    padded = torch.cat([X, torch.zeros(len(X), 3, dtype=torch.int64)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, nb.shift_right(Y)), model(X, nb.shift_right(Y)), atol=1e-5, rtol=0)
        ids = model.translate(X)
        # greedy decoding = teacher forcing on the model's own output
        step_logits = model(X, nb.shift_right(ids))
    assert ids.shape == (20, 10)
    assert torch.equal(step_logits.argmax(-1), ids)
    assert nb.exact_match(model, X, ids).all()
    assert torch.equal(nb.shift_right(Y)[:, 1:], Y[:, :-1]) and torch.all(nb.shift_right(Y)[:, 0] == 0)

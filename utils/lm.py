"""Character-level language models on lists of words: one convention, one code path.

Lectures 09 (recurrent name generators) and 10 (a causal transformer) train, score and
sample their language models with these functions, so that a number such as "GRU,
nats per character on the makemore dev split" means the same thing in both.

The token convention
--------------------
* One **boundary token** ``"."`` (:data:`BOUNDARY`), id 0 of the vocabulary made by
  :func:`lm_vocab`: it is the start token read before the first character *and* the end
  token the model must predict after the last one (as in makemore). On ``names.txt``:
  26 letters + ``"."`` = 27 tokens. No padding token is needed.
* :func:`encode_words` turns words into two ``[N, T]`` int64 tensors, ``T`` = longest
  word + 1::

      "emma" -> X: .  e  m  m  a  .  .  ...     (inputs; padding = the boundary id)
                Y: e  m  m  a  .  -100 -100 ...  (targets; padding = IGNORE_INDEX)

  A word of n characters gives n + 1 targets (its end included). :data:`IGNORE_INDEX`
  is -100, PyTorch's default ``ignore_index``. Input padding sits after the real tokens,
  so a left-to-right model never reads it at a position that is scored.
* A model maps ids ``[B, T]`` to logits ``[B, T, V]``. It may instead return
  ``(logits, state)`` and accept ``model(x, state)`` (a recurrent net, :class:`CharRNN`):
  :func:`sample` then feeds one token per step and carries the state.

The functions
-------------
``lm_vocab(words, max_size=None)``
    ``CharVocab`` with the boundary token first (most frequent characters kept).
``encode_words(words, vocab, block=None)`` → ``(X, Y)``
    as above; ``block`` pads to a fixed width (e.g. a transformer's context).
``target_lengths(Y)`` → ``[N]``: the number of scored targets per row.
``lm_loss(logits, Y, reduction="mean")``
    masked next-token cross-entropy in nats: ``"mean"`` = nats per character (every real
    target of every word weighs the same), ``"sum"``, ``"none"`` = total nats per word.
``nats_per_char(model, X, Y, batch_size=2048)`` → float
    the loss of a whole split, eval mode, no gradient.
``length_batches(lengths, batch_size, generator=None)``
    random batches (index tensors) of words with similar lengths: less padding.
``train_lm(model, X, Y, *, epochs, batch_size, lr, ...)`` → history dict
    AdamW (``weight_decay=0`` is Adam) with a one-cycle schedule (``OneCycleLR``: warm-up,
    cosine decay; it also cycles Adam's β1 between 0.85 and 0.95), gradient-norm clipping,
    a plain progress bar, the dev loss after every epoch. Each character of the training
    set weighs the same in the objective, whatever the lengths in its batch. History:
    ``loss``, ``grad_norm`` (before clipping) and ``lr`` per step; ``dev`` and ``dev_step``
    per evaluation.
``sample_next(logits, temperature=1.0, top_k=None, generator=None)``
    one draw per row from ``softmax(top_k(logits) / T)``; ``T = 0`` is the arg-max.
``sample(model, vocab, n, *, temperature=1.0, top_k=None, ...)`` → list of words
    draws ``n`` words in parallel (or continues given prefixes).
``CharRNN(vocab_size, embed_dim, hidden_size, num_layers, cell, dropout)``
    embedding → ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` → linear read-out.
``MAKEMORE_GRU``
    the English-names GRU of lecture 09 (a recipe fixed for a CPU budget of under a
    minute; its dev loss is reported there), so that lecture 10 can train the same model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .text import CharVocab
from .training import progress_bar

__all__ = [
    "BOUNDARY",
    "IGNORE_INDEX",
    "MAKEMORE_GRU",
    "CharRNN",
    "encode_words",
    "length_batches",
    "lm_loss",
    "lm_vocab",
    "nats_per_char",
    "sample",
    "sample_next",
    "target_lengths",
    "train_lm",
]

BOUNDARY = "."
IGNORE_INDEX = -100

#: The English-names GRU of lecture 09 (trained and scored on the makemore split there):
#: ``CharRNN(len(vocab), **MAKEMORE_GRU["model"])`` after ``torch.manual_seed(seed)``,
#: trained by ``train_lm(..., **MAKEMORE_GRU["train"], generator=Generator().manual_seed(seed))``.
MAKEMORE_GRU = {
    "model": {"embed_dim": 64, "hidden_size": 256, "num_layers": 1, "cell": "gru", "dropout": 0.1},
    "train": {"epochs": 8, "batch_size": 64, "lr": 3e-3, "clip": 1.0},
    "seed": 0,
}


def lm_vocab(words: Sequence[str], max_size: int | None = None) -> CharVocab:
    """The vocabulary of the convention: ``"."`` (id 0) + the characters, most frequent first.

    ``max_size`` counts the boundary token: ``max_size=51`` keeps the 50 most frequent
    characters.
    """
    return CharVocab(words, max_size=max_size, specials=(BOUNDARY,))


def encode_words(
    words: Sequence[str], vocab: CharVocab, block: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``X`` (". w o r d", padded with ".") and targets ``Y`` ("w o r d .", padded with -100).

    Both ``[len(words), T]`` int64 with ``T = block`` or the longest word + 1. Every
    character must be in ``vocab`` (or ``vocab`` must have ``<unk>``).
    """
    b = vocab.stoi[BOUNDARY]
    encoded = [vocab.encode(w) for w in words]
    longest = max((len(e) for e in encoded), default=0) + 1
    T = longest if block is None else block
    if T < longest:
        raise ValueError(f"block={block} is too short: the longest word needs {longest} positions")
    X = torch.full((len(words), T), b, dtype=torch.int64)
    Y = torch.full((len(words), T), IGNORE_INDEX, dtype=torch.int64)
    for i, ids in enumerate(encoded):
        n = len(ids)
        row = torch.tensor(ids, dtype=torch.int64)
        X[i, 1 : n + 1] = row
        Y[i, :n] = row
        Y[i, n] = b
    return X, Y


def target_lengths(Y: torch.Tensor) -> torch.Tensor:
    """Number of scored targets in each row of ``Y`` (word length + 1)."""
    return (Y != IGNORE_INDEX).sum(dim=1)


def _logits(out):
    """A model's logits, whether it returns them alone or as ``(logits, state)``."""
    return out[0] if isinstance(out, tuple) else out


def lm_loss(logits: torch.Tensor, Y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Masked next-token cross-entropy in nats; targets equal to -100 contribute nothing.

    ``logits [B, T, V]``, ``Y [B, T]``. ``"mean"``: total nats / number of real targets
    (nats per character); ``"sum"``: total nats; ``"none"``: total nats of each row ``[B]``.
    """
    nll = F.cross_entropy(logits.transpose(1, 2), Y, ignore_index=IGNORE_INDEX, reduction="none")
    if reduction == "none":
        return nll.sum(dim=1)
    if reduction == "sum":
        return nll.sum()
    if reduction == "mean":
        return nll.sum() / (Y != IGNORE_INDEX).sum()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _trimmed(X: torch.Tensor, Y: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the columns that are padding in every row, move to ``device``."""
    T = max(int(target_lengths(Y).max()), 1)
    return X[:, :T].to(device), Y[:, :T].to(device)


@torch.no_grad()
def nats_per_char(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, batch_size: int = 2048) -> float:
    """Nats per character (end tokens included) of ``model`` on a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(X), batch_size):
        Xb, Yb = _trimmed(X[i : i + batch_size], Y[i : i + batch_size], device)
        total += lm_loss(_logits(model(Xb)).double(), Yb, reduction="sum").item()
        count += int((Yb != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / count


def length_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None = None, block: int = 32
) -> list[torch.Tensor]:
    """Random mini-batches (index tensors) of rows with similar lengths, each row once.

    Shuffle, cut into chunks of ``block`` batches, sort each chunk by length, cut it into
    batches, shuffle the batches: little padding, yet random batches.
    """
    order = torch.randperm(len(lengths), generator=generator)
    batches: list[torch.Tensor] = []
    for chunk in order.split(batch_size * block):
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches.extend(chunk.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def train_lm(
    model: nn.Module,
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    clip: float | None = 1.0,
    warmup: float = 0.05,
    max_steps: int | None = None,
    generator: torch.Generator | None = None,
    dev: tuple[torch.Tensor, torch.Tensor] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    desc: str = "training",
) -> dict[str, list]:
    """Train a language model on ``(X, Y)`` from :func:`encode_words`; returns its history.

    AdamW (Adam when ``weight_decay=0``) with ``OneCycleLR`` peaking at ``lr`` after a
    ``warmup`` fraction of the steps; gradient norm clipped at ``clip`` (None: never);
    batches of similar lengths (:func:`length_batches`). ``epochs`` passes over the data,
    cut short at ``max_steps`` if given. With ``dev=(X_dev, Y_dev)`` the dev loss is
    computed after every epoch (and after the last step). The model is left in eval mode.

    The objective is the batch's total nats divided by the *expected* number of targets in
    a batch (``batch_size`` × (mean word length + 1)), so that it is an unbiased estimate of
    the training set's nats per character: batches of short names do not weigh more. The
    history's ``loss`` is each batch's own nats per character. ``loss_fn(logits, Y)``
    replaces the objective (and is what the history records).
    """
    device = next(model.parameters()).device
    lengths = target_lengths(Y)
    # The default objective: the batch's total nats / the expected number of targets in a batch,
    # so every character of the data weighs the same whatever the lengths in its batch. (Dividing
    # by each batch's own count would give batches of short names, and so end tokens, more weight.)
    per_batch = batch_size * lengths.double().mean().item()
    steps = epochs * math.ceil(len(X) / batch_size)
    if max_steps is not None:
        steps = min(steps, max_steps)
    if steps < 1:
        raise ValueError("nothing to train: zero steps")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
    history: dict[str, list] = {"loss": [], "grad_norm": [], "lr": [], "dev": [], "dev_step": []}

    def evaluate():
        history["dev"].append(nats_per_char(model, *dev))
        history["dev_step"].append(len(history["loss"]))
        bar.set_postfix(dev=f"{history['dev'][-1]:.3f}")

    model.train()
    bar = progress_bar(total=steps, desc=desc)
    while len(history["loss"]) < steps:
        for idx in length_batches(lengths, batch_size, generator):
            Xb, Yb = _trimmed(X[idx], Y[idx], device)
            logits = _logits(model(Xb))
            if loss_fn is None:
                total = lm_loss(logits, Yb, reduction="sum")
                loss = total / per_batch
                shown = total.item() / int((Yb != IGNORE_INDEX).sum())  # the batch's nats per character
            else:
                loss = loss_fn(logits, Yb)
                shown = loss.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), clip if clip else float("inf"))
            history["lr"].append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.step()
            history["loss"].append(shown)
            history["grad_norm"].append(norm.item())
            bar.update()
            if len(history["loss"]) == steps:
                break
        if dev is not None:
            evaluate()
            model.train()
    bar.close()
    model.eval()
    return history


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of ``logits [B, V]``: keep the ``top_k`` largest, softmax(z / T), draw.

    ``temperature == 0`` means greedy: the arg-max.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    if top_k is not None:
        kth_largest = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample(
    model: nn.Module,
    vocab: CharVocab,
    n: int | None = None,
    *,
    prefix: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    max_len: int = 30,
    context: int | None = None,
    generator: torch.Generator | None = None,
    return_ids: bool = False,
) -> list[str] | torch.Tensor:
    """Draw ``n`` words in parallel, each until the model emits the boundary token.

    ``prefix`` (instead of ``n``): ``[n, k]`` ids the model reads first; by default every
    row starts with the boundary token alone. At most ``max_len`` tokens are drawn per row.
    A model that returns ``(logits, state)`` is fed one token per step with its state;
    otherwise the whole sequence is fed again each step, cut to its last ``context``
    tokens if given. Special tokens other than the boundary are never drawn. Returns the
    words (prefix characters included, boundary tokens not), or with ``return_ids`` the
    ``[n, k + steps]`` ids, filled with the boundary id after each word's end.
    """
    model.eval()
    device = next(model.parameters()).device
    b = vocab.stoi[BOUNDARY]
    if prefix is None:
        if n is None:
            raise ValueError("give n or prefix")
        prefix = torch.full((n, 1), b, dtype=torch.int64)
    prefix = prefix.reshape(len(prefix), -1).cpu()
    banned = [vocab.stoi[s] for s in vocab.specials if s != BOUNDARY]
    ids = prefix
    done = torch.zeros(len(prefix), dtype=torch.bool)
    x, state, stateful = prefix.to(device), None, None
    for _ in range(max_len):
        if context is not None:
            x = x[:, -context:]
        out = model(x) if state is None else model(x, state)
        if stateful is None:
            stateful = isinstance(out, tuple)
        if stateful:
            logits, state = out
        else:
            logits = out
        logits = logits[:, -1].float().cpu()
        if banned:
            logits[:, banned] = float("-inf")
        nxt = sample_next(logits, temperature, top_k, generator).masked_fill(done, b)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == b
        if done.all():
            break
        x = nxt[:, None].to(device) if stateful else ids.to(device)
    if return_ids:
        return ids
    k = prefix.shape[1]
    words = []
    for row_prefix, row_new in zip(ids[:, :k].tolist(), ids[:, k:].tolist()):
        new = row_new[: row_new.index(b)] if b in row_new else row_new
        words.append("".join(vocab.itos[i] for i in row_prefix + new if i != b))
    return words


class CharRNN(nn.Module):
    """Embedding → recurrent layers → linear read-out of next-token logits.

    ``cell`` is ``"rnn"``, ``"gru"`` or ``"lstm"``; ``forward(x, state=None)`` maps ids
    ``[B, T]`` to ``(logits [B, T, V], final state)``, so generation can carry the state.
    Dropout acts on the embeddings, between stacked layers and before the read-out.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int = 64,
        hidden_size: int = 256,
        num_layers: int = 1,
        cell: str = "gru",
        dropout: float = 0.0,
    ):
        super().__init__()
        recurrent = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = recurrent(
            embed_dim, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.rnn(self.drop(self.embed(x)), state)
        return self.head(self.drop(out)), state

"""The word-class head: the language model says when a word of a class comes, the image says which.

Given groups of vocabulary ids (e.g. the colour words and the shape words), each choice of such a
word is split in two: the language model's share of the group (the logsumexp of its words'
logits) says how likely a word of the group comes next, and a softmax over the group of the
logits without the hidden state's term (the attended context, the bias and the word prior) says
which. A language model trained on captions that never say "yellow cross" then cannot veto
"cross" after "yellow" when the image shows one: the split between when and what of Neural Baby
Talk (Lu et al., 2018) and the lexical classes of Hendricks et al. (2016), over plain word groups.

- ``lm_weight`` lets the language model's own preference within a group back in, scaled (0: the
  image alone chooses, 1: the plain decoder); ``decoding_lm_weight`` is the one decoding uses,
  which a loaded model can change (:meth:`WordClasses.set_decoding`, ``head.decoding_lm_weight=``).
- ``pointer``: after a word of a class, the next step's attention scores also get, for every grid
  cell, how strongly that cell alone reads as the word just said (its features times that word's
  output weights, not trained through this path), times a learned weight per class: the shape is
  read where the colour was seen.
- ``logit_adjustment``: in teacher forcing only, each class word's logit within its class also
  gets the training captions' log-probability of that word after the previous word (logit
  adjustment for a label prior, Menon et al., 2021), so the image's side does not learn which
  shapes a colour never comes with; decoding never uses it and checkpoints never keep it.

Figures: benchmarks/README.md, "The demo recipe".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from captioner.errors import CaptionerError
from captioner.vocab import Vocabulary


class WordClasses(nn.Module):
    """The decoder's logits re-formed within word classes (see the module's text)."""

    def __init__(self, vocab_size: int, hidden_dim: int, groups: Sequence[Sequence[int]] = (), lm_weight: float = 0.3,
                 decoding_lm_weight: float | None = None, pointer: bool = False, logit_adjustment: bool = False,
                 sees_image: bool = True, attends: bool = False):
        super().__init__()
        self.groups = [list(group) for group in groups]
        self.hidden_dim = hidden_dim
        self.lm_weight = lm_weight
        self.decoding_lm_weight = lm_weight if decoding_lm_weight is None else decoding_lm_weight
        self.logit_adjustment = logit_adjustment
        _check(self.groups, vocab_size, (self.lm_weight, self.decoding_lm_weight), sees_image)
        if pointer and not attends:
            raise CaptionerError("the word-class pointer needs attention_dim > 0: it steers the attention")
        # each vocabulary id's class (-1: none). Ids as plain lists, not integer buffers: the weight
        # average (trainer.ema_decay) would average a buffer.
        self.class_of = [-1] * vocab_size
        for k, group in enumerate(self.groups):
            for word in group:
                self.class_of[word] = k
        self.pointer_scale = nn.Parameter(torch.ones(len(self.groups))) if pointer else None
        # (V, V) or None: teacher forcing's log-prior of each class word after each word (fit, set_prior)
        self.register_buffer("prior", None, persistent=False)

    def set_decoding(self, decoding_lm_weight: float) -> None:
        """Decode with this ``decoding_lm_weight`` from now on (e.g. one chosen on validation after training)."""
        _check(self.groups, len(self.class_of), (self.lm_weight, decoding_lm_weight), True)
        self.decoding_lm_weight = decoding_lm_weight

    @staticmethod
    def settings(config: dict, vocab: Vocabulary) -> dict:
        """The head's config as its constructor and checkpoints take it (:func:`with_word_ids`)."""
        return with_word_ids(config, vocab)

    def fit(self, captions: Iterable[Sequence[int]]) -> None:
        """With ``logit_adjustment``, set the prior from the training captions' ids; otherwise nothing."""
        if self.logit_adjustment:
            self.set_prior(class_bigram_log_prior(captions, len(self.class_of), self.groups))

    def set_prior(self, log_prior: torch.Tensor | None) -> None:
        """In teacher forcing, add ``log_prior[previous word, word]`` (V, V) to the class words' logits
        within their class; decoding never uses it. A buffer: it moves with the module."""
        if log_prior is not None and log_prior.shape != (len(self.class_of),) * 2:
            raise CaptionerError(f"a class prior has shape (vocabulary, vocabulary), got {tuple(log_prior.shape)}")
        self.prior = log_prior

    def forward(self, logits: torch.Tensor, outputs: torch.Tensor, out: nn.Linear, word_prior: torch.Tensor | None,
                previous: torch.Tensor, teacher_forcing: bool) -> torch.Tensor:
        """The plain logits (..., V), the decoder's outputs (..., H [+ C]), its output layer, the word
        prior (..., V) or None and the words before (...) -> logits (..., V) re-formed within each class."""
        weight_of_lm = self.lm_weight if teacher_forcing else self.decoding_lm_weight
        adjustment = self.prior[previous] if teacher_forcing and self.prior is not None else None  # (..., V)
        image = outputs[..., self.hidden_dim :]  # the attended context (empty without attention)
        for group in self.groups:
            index = torch.as_tensor(group, device=logits.device)
            weight = out.weight[index]  # (K, H [+ C])
            within = nn.functional.linear(image, weight[:, self.hidden_dim :], out.bias[index])
            if weight_of_lm:  # the language model's own preference, damped
                within = within + weight_of_lm * (outputs[..., : self.hidden_dim] @ weight[:, : self.hidden_dim].T)
            if word_prior is not None:
                within = within + word_prior[..., index]
            if adjustment is not None:
                within = within + adjustment[..., index]
            share = logits[..., index].logsumexp(-1, keepdim=True)  # the language model's: when
            logits = logits.index_copy(-1, index, (share + within.log_softmax(-1)).to(logits.dtype))  # the image: which
        return logits

    def attention_bias(self, tokens: torch.Tensor, locations: torch.Tensor, out: nn.Linear) -> torch.Tensor | None:
        """tokens (B, T), locations (B, L, C) -> (B, T, L) with ``pointer``: how strongly each cell alone
        reads as the class word just said, times its class's learned weight (0 after other words)."""
        if self.pointer_scale is None:
            return None
        classes = torch.as_tensor(self.class_of, device=tokens.device)[tokens]  # (B, T)
        readout = out.weight[tokens, self.hidden_dim :].detach()  # (B, T, C): naming is trained elsewhere
        scores = readout @ locations.transpose(1, 2).to(readout.dtype)  # (B, T, L)
        scale = torch.where(classes >= 0, self.pointer_scale[classes.clamp(min=0)], 0.0)  # (B, T)
        return scale.unsqueeze(2) * scores


def with_word_ids(head: dict, vocab: Vocabulary) -> dict:
    """A head config naming its classes' ``words`` -> the same with their vocabulary ids as ``groups``
    (what the constructor and checkpoints take); other heads as they are."""
    if "words" not in head:
        return dict(head)
    groups = head["words"]
    missing = [word for group in groups for word in group if word not in vocab.index]
    if missing:
        raise CaptionerError(f"model.decoder.head.words: {missing[0]!r} is not in the training captions' vocabulary")
    return {k: v for k, v in head.items() if k != "words"} | {"groups": [[vocab.index[w] for w in g] for g in groups]}


def class_bigram_log_prior(captions: Iterable[Sequence[int]], vocab_size: int, groups: list[list[int]],
                           smoothing: float = 1.0) -> torch.Tensor:
    """(V, V): entry [p, w] is the log-probability that word w follows word p among the words of
    w's class, counted over ``captions`` (token ids) with ``smoothing`` added to every count (a pair
    never seen gets a finite prior); 0 outside the classes."""
    pairs = torch.tensor([(previous, word) for ids in captions for previous, word in zip(ids, ids[1:])],
                         dtype=torch.long).view(-1, 2)
    counts = torch.bincount(pairs[:, 0] * vocab_size + pairs[:, 1], minlength=vocab_size * vocab_size)
    counts = counts.float().view(vocab_size, vocab_size)
    log_prior = torch.zeros(vocab_size, vocab_size)
    for group in groups:
        block = counts[:, group] + smoothing
        log_prior[:, group] = (block / block.sum(1, keepdim=True)).log()
    return log_prior


def _check(groups: list[list[int]], vocab_size: int, weights: tuple[float, float], sees_image: bool) -> None:
    words = [word for group in groups for word in group]
    if min(weights) < 0:
        raise CaptionerError(f"the word-class lm_weight and decoding_lm_weight must be >= 0, got {weights}")
    if not groups:
        raise CaptionerError("the word_classes head needs words: model.decoder.head.words=[[...], [...]]")
    if not sees_image:
        raise CaptionerError("word classes need word_prior or attention_dim > 0: the choice within a class reads "
                             "only the image")
    if any(len(group) < 2 for group in groups):
        raise CaptionerError("a word class needs at least two words")
    if len(set(words)) != len(words):
        raise CaptionerError("a word is in more than one word class")
    if any(not 0 <= word < vocab_size for word in words):
        raise CaptionerError(f"word class ids must lie in 0..{vocab_size - 1}")

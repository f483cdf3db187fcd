"""Caption search over any decoder with ``initial_state(features)`` and ``step(tokens, state)``.

Batched beam search (beam size 1 is greedy decoding) and sampling. Every image and every beam
lives in one tensor row, so a batch of images is searched with one decoder step per word. The
state is the decoder's own business: a search only asks it to ``reorder(index)`` its rows for the
beams and to ``repeat_interleave(k)`` them (as fairseq's ``reorder_incremental_state``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from captioner.decode_options import DecodeOptions

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # the words, without <bos> and <eos>
    log_prob: float  # the model's log-probability of the words and the final <eos> (if reached)


def decode(decoder, features: torch.Tensor, bos: int, eos: int, banned: list[int],
           options: DecodeOptions, max_length: int) -> list[list[Hypothesis]]:
    """``options.num_captions`` hypotheses per image, best first."""
    length = options.max_length or max_length
    if options.strategy == "sample":
        generator = torch.Generator(features.device)
        generator.manual_seed(options.seed if options.seed is not None else torch.seed())
        repeated = features.repeat_interleave(options.num_captions, dim=0)  # (B * R, F)
        tokens, log_probs = sample(decoder, repeated, bos, eos, length, options.temperature, options.top_k,
                                   options.top_p, banned, generator)
        tokens, log_probs = tokens.unflatten(0, (-1, options.num_captions)), log_probs.view(-1, options.num_captions)
    else:
        tokens, log_probs, _ = beam_search(decoder, features, bos, eos, length, options.beam_size,
                                           options.length_penalty, options.no_repeat_ngram_size, banned)
        tokens, log_probs = tokens[:, : options.num_captions], log_probs[:, : options.num_captions]
    return [[Hypothesis(words_before_eos(row, eos), lp) for row, lp in zip(rows, lps)]
            for rows, lps in zip(tokens.tolist(), log_probs.tolist())]


def words_before_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


@torch.no_grad()
def beam_search(decoder, features: torch.Tensor, bos: int, eos: int, max_length: int, beam_size: int = 3,
                length_penalty: float = 0.0, no_repeat_ngram_size: int = 0,
                banned: list[int] = ()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """features (B, F) -> tokens (B, K, T), log-probs (B, K) and scores (B, K), best beam first.

    A finished beam stays in the beam with its score frozen (its only continuation is <eos>
    at no cost), so the search ends when every beam of every image has finished, or after
    ``max_length`` words: then the unfinished beams are returned, ranked like the rest.
    """
    batch, beams, device = features.shape[0], beam_size, features.device
    state = decoder.initial_state(features).repeat_interleave(beams)  # B*K rows
    history = torch.full((batch * beams, 0), bos, dtype=torch.long, device=device)  # (B*K, t)
    last = torch.full((batch * beams,), bos, dtype=torch.long, device=device)  # (B*K,)
    log_probs = torch.full((batch, beams), NEG_INF, device=device)
    log_probs[:, 0] = 0.0  # one live beam per image at the start
    log_probs = log_probs.flatten()  # (B*K,)
    lengths = torch.zeros(batch * beams, dtype=torch.long, device=device)  # words incl. <eos>
    finished = torch.zeros(batch * beams, dtype=torch.bool, device=device)
    scores = log_probs.view(batch, beams)
    rows = torch.arange(batch, device=device).unsqueeze(1) * beams  # (B, 1): first row of each image
    for _ in range(max_length):
        logits, state = decoder.step(last, state)  # (B*K, V)
        step_log_probs = logits.float().log_softmax(dim=-1)  # (B*K, V)
        vocab_size = step_log_probs.shape[1]
        if banned:
            step_log_probs[:, banned] = NEG_INF
        if no_repeat_ngram_size:
            step_log_probs.masked_fill_(repeated_ngrams(history, no_repeat_ngram_size, vocab_size), NEG_INF)
        step_log_probs[finished] = NEG_INF
        step_log_probs[finished, eos] = 0.0  # a finished beam carries on unchanged
        candidates = log_probs.unsqueeze(1) + step_log_probs  # (B*K, V)
        new_lengths = lengths + (~finished).long()  # (B*K,)
        normalised = candidates / gnmt_penalty(new_lengths, length_penalty).unsqueeze(1)  # (B*K, V)
        scores, best = normalised.view(batch, beams * vocab_size).topk(beams, dim=1)  # (B, K)
        source = (rows + best // vocab_size).flatten()  # (B*K,): the beam each candidate extends
        last = (best % vocab_size).flatten()  # (B*K,)
        log_probs = candidates.view(batch, -1).gather(1, best).flatten()  # (B*K,)
        history = torch.cat([history[source], last.unsqueeze(1)], dim=1)  # (B*K, t+1)
        lengths = new_lengths[source]
        finished = finished[source] | (last == eos)
        state = state.reorder(source)
        if finished.all():
            break
    return history.view(batch, beams, -1), log_probs.view(batch, beams), scores


def gnmt_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """Wu et al. (2016), eq. 14: ((5 + |Y|) / 6) ** alpha; alpha 0 ranks by plain log-probability."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def repeated_ngrams(history: torch.Tensor, n: int, vocab_size: int) -> torch.Tensor:
    """(N, t) words so far -> (N, V) mask of the words that would repeat an n-gram."""
    rows, length = history.shape
    mask = torch.zeros(rows, vocab_size + 1, dtype=torch.bool, device=history.device)  # last column: no word
    if length >= n:
        windows = history.unfold(1, n, 1)  # (N, t-n+1, n): every n-gram so far
        prefix = history[:, length - n + 1 :]  # (N, n-1): what the next n-gram would start with
        match = (windows[:, :, :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (N, t-n+1)
        mask.scatter_(1, windows[:, :, -1].masked_fill(~match, vocab_size), True)
    return mask[:, :vocab_size]


def sample(decoder, features: torch.Tensor, bos: int, eos: int, max_length: int, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, banned: list[int] = (),
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """features (B, F) -> sampled tokens (B, T) and the model's log-probability of each (B,).

    With gradients enabled the log-probabilities carry them (self-critical training's policy
    gradient); every operation on the logits is out of place for that."""
    batch, device = features.shape[0], features.device
    state = decoder.initial_state(features)
    last = torch.full((batch,), bos, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    log_probs = torch.zeros(batch, device=device)
    outputs = []
    for _ in range(max_length):
        logits, state = decoder.step(last, state)  # (B, V)
        logits = logits.float()
        if banned:
            logits = logits.index_fill(1, torch.tensor(banned, device=device), NEG_INF)
        probs = filter_top_k_top_p((logits.detach() / temperature).softmax(dim=-1), top_k, top_p)  # (B, V)
        last = torch.multinomial(probs, 1, generator=generator).squeeze(1).masked_fill(finished, eos)  # (B,)
        chosen = logits.log_softmax(dim=-1).gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
        log_probs = log_probs + chosen.masked_fill(finished, 0.0)
        outputs.append(last)
        finished = finished | (last == eos)
        if finished.all():
            break
    return torch.stack(outputs, dim=1), log_probs


def filter_top_k_top_p(probs: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(B, V) probabilities -> the same with all but the top-k / nucleus (Holtzman et al., 2020) zeroed."""
    if top_k:
        kth = probs.topk(min(top_k, probs.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        probs = probs.masked_fill(probs < kth, 0.0)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (B, V): probability ranked above each word
        drop_sorted = mass_before >= top_p * sorted_probs.sum(dim=-1, keepdim=True)  # never the most likely word
        probs = probs.masked_fill(torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted), 0.0)
    return probs

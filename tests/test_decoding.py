"""Beam search, sampling and their options, on hand-made and real decoders."""

import math

import pytest
import torch

from captioner.decode_options import DecodeOptions
from captioner.decoding import beam_search, decode, filter_top_k_top_p, repeated_ngrams, sample
from captioner.errors import CaptionerError
from captioner.models.decoder import Decoder
from captioner.models.state import DecoderState

PAD, BOS, EOS, UNK = 0, 1, 2, 3


class MarkovDecoder:
    """Next-word probabilities depend on the last word only: ``table[last] -> probabilities``."""

    def __init__(self, table: dict[int, dict[int, float]], vocab_size: int = 8):
        self.log_probs = torch.full((vocab_size, vocab_size), -1e9)
        for last, nexts in table.items():
            for word, p in nexts.items():
                self.log_probs[last, word] = math.log(p)

    def initial_state(self, features):
        return DecoderState((torch.zeros(1, features.shape[0], 1),))  # (L, B, H): carries nothing

    def step(self, tokens, state):
        return self.log_probs[tokens], state


# the decoder's options that change what a search must carry along in the state
STATE_VARIANTS = [{}, {"image_input_dim": 5}, {"image_input_dim": 5, "word_prior": True},
                  {"image_input_dim": 5, "word_prior": True, "attention_dim": 4, "locations": 3},
                  {"word_prior": True, "attention_dim": 4, "locations": 3,
                   "head": {"name": "word_classes", "groups": [[4, 5, 6], [7, 8]], "pointer": True}}]


def real_decoder(vocab_size=12, seed=0, **options) -> Decoder:
    torch.manual_seed(seed)
    decoder = Decoder(vocab_size, feature_dim=6, embed_dim=8, hidden_dim=16, **options).eval()
    with torch.no_grad():  # a sharper, more varied distribution than the small initialisation
        decoder.init_state.weight.mul_(30)
        decoder.out.weight.mul_(3)
        decoder.word_head.weight.mul_(10)
    return decoder


def greedy_reference(decoder, features, max_length, banned=()):
    """The plain argmax loop beam size 1 must reproduce."""
    state = decoder.initial_state(features)
    tokens = torch.full((features.shape[0],), BOS)
    out, done = [], torch.zeros(features.shape[0], dtype=torch.bool)
    for _ in range(max_length):
        logits, state = decoder.step(tokens, state)
        logits[:, list(banned)] = float("-inf")
        tokens = logits.argmax(-1).masked_fill(done, EOS)
        out.append(tokens)
        done |= tokens == EOS
    rows = torch.stack(out, 1).tolist()
    return [row[: row.index(EOS)] if EOS in row else row for row in rows]


def teacher_forced_log_prob(decoder, features, words, reached_eos=True):
    tokens = torch.tensor([[BOS, *words, EOS]])
    logits = decoder(features.unsqueeze(0), tokens[:, :-1])  # (1, T, V)
    targets = tokens[0, 1:] if reached_eos else tokens[0, 1:-1]
    return logits[0, : len(targets)].log_softmax(-1).gather(1, targets.unsqueeze(1)).sum().item()


# --- beam search -----------------------------------------------------------------------

@pytest.mark.parametrize("options", STATE_VARIANTS)
def test_beam_size_one_is_greedy(options):
    decoder = real_decoder(**options)
    features = torch.randn(16, 6)
    hypotheses = decode(decoder, features, BOS, EOS, [PAD, BOS, UNK], DecodeOptions(beam_size=1), max_length=9)
    assert [h[0].tokens for h in hypotheses] == greedy_reference(decoder, features, 9, banned=(PAD, BOS, UNK))


def test_beam_finds_the_more_likely_caption_greedy_misses():
    # greedy: 4 (0.6) then 5 (0.55) = 0.33; beam: 7 (0.4) then <eos> (1.0) = 0.4
    table = {BOS: {4: 0.6, 7: 0.4}, 4: {5: 0.55, 6: 0.45}, 5: {EOS: 1.0}, 6: {EOS: 1.0}, 7: {EOS: 1.0}}
    decoder, features = MarkovDecoder(table), torch.zeros(1, 1)
    assert decode(decoder, features, BOS, EOS, [], DecodeOptions(beam_size=1), 5)[0][0].tokens == [4, 5]
    best = decode(decoder, features, BOS, EOS, [], DecodeOptions(beam_size=2, num_captions=2), 5)[0]
    assert [h.tokens for h in best] == [[7], [4, 5]]
    assert best[0].log_prob == pytest.approx(math.log(0.4), abs=1e-6)
    assert best[1].log_prob == pytest.approx(math.log(0.33), abs=1e-6)


def test_beams_that_never_finish_return_the_best_unfinished_one():
    table = {w: {4: 0.7, 5: 0.3} for w in (BOS, 4, 5)}  # <eos> has probability 0
    tokens, log_probs, _ = beam_search(MarkovDecoder(table), torch.zeros(2, 1), BOS, EOS, max_length=6, beam_size=3)
    assert tokens.shape == (2, 3, 6)
    assert tokens[:, 0].tolist() == [[4] * 6] * 2
    assert log_probs[0, 0].item() == pytest.approx(6 * math.log(0.7), abs=1e-5)


@pytest.mark.parametrize("options", STATE_VARIANTS)
def test_batched_search_equals_one_image_at_a_time(options):
    decoder = real_decoder(seed=1, **options)
    features = torch.randn(10, 6)
    options = DecodeOptions(beam_size=4, num_captions=4, length_penalty=0.7)
    batched = decode(decoder, features, BOS, EOS, [PAD, BOS, UNK], options, 10)
    single = [decode(decoder, features[i : i + 1], BOS, EOS, [PAD, BOS, UNK], options, 10)[0] for i in range(10)]
    assert [[h.tokens for h in image] for image in batched] == [[h.tokens for h in image] for image in single]
    for b, s in zip(batched, single):
        assert [h.log_prob for h in b] == pytest.approx([h.log_prob for h in s], abs=1e-5)


def test_returned_log_probs_are_the_models_and_sorted_best_first():
    decoder = real_decoder(seed=2)
    features = torch.randn(4, 6)
    results = decode(decoder, features, BOS, EOS, [], DecodeOptions(beam_size=5, num_captions=5), 12)
    for image, hypotheses in enumerate(results):
        assert len({tuple(h.tokens) for h in hypotheses}) == 5
        log_probs = [h.log_prob for h in hypotheses]
        assert log_probs == sorted(log_probs, reverse=True)  # length penalty 0: ranked by log-prob
        for h in hypotheses:
            finished = len(h.tokens) < 12
            assert h.log_prob == pytest.approx(teacher_forced_log_prob(decoder, features[image], h.tokens, finished),
                                               abs=1e-4)


def test_length_penalty_favours_longer_captions():
    # short: 4 <eos> = 0.5 * 0.5; long: 5 6 6 6 <eos> = 0.5 * 0.9^4 * 0.3 (lower in total, higher per word)
    table = {BOS: {4: 0.5, 5: 0.5}, 4: {EOS: 0.5, 7: 0.5}, 7: {EOS: 1.0}, 5: {6: 1.0}, 6: {6: 0.7, EOS: 0.3}}
    decoder, features = MarkovDecoder(table), torch.zeros(1, 1)
    plain = decode(decoder, features, BOS, EOS, [], DecodeOptions(beam_size=3), 4)[0][0]
    penalised = decode(decoder, features, BOS, EOS, [], DecodeOptions(beam_size=3, length_penalty=2.0), 4)[0][0]
    assert len(penalised.tokens) > len(plain.tokens)


def test_no_repeat_ngram_and_unk_suppression():
    table = {w: {UNK: 0.5, 4: 0.3, 5: 0.1, 6: 0.05, EOS: 0.05} for w in (BOS, UNK, 4, 5, 6)}
    decoder, features = MarkovDecoder(table), torch.zeros(1, 1)
    free = decode(decoder, features, BOS, EOS, [], DecodeOptions(beam_size=2, suppress_unk=False), 6)[0][0]
    assert free.tokens == [UNK] * 6
    no_unk = decode(decoder, features, BOS, EOS, [UNK], DecodeOptions(beam_size=2), 6)[0][0]
    assert UNK not in no_unk.tokens
    once = decode(decoder, features, BOS, EOS, [UNK], DecodeOptions(beam_size=2, no_repeat_ngram_size=1), 6)[0][0]
    assert once.tokens == [4, 5, 6]  # every word at most once, then <eos> is all that is left
    pairs = decode(decoder, features, BOS, EOS, [UNK], DecodeOptions(beam_size=2, no_repeat_ngram_size=2), 8)[0][0]
    bigrams = list(zip(pairs.tokens, pairs.tokens[1:]))
    assert len(bigrams) == len(set(bigrams)) and len(pairs.tokens) > 3


def test_repeated_ngrams_mask():
    history = torch.tensor([[4, 5, 4, 6, 4]])
    assert repeated_ngrams(history, 2, 8)[0].nonzero().flatten().tolist() == [5, 6]  # "4 5" and "4 6" seen
    assert repeated_ngrams(history, 1, 8)[0].nonzero().flatten().tolist() == [4, 5, 6]
    assert not repeated_ngrams(history[:, :1], 2, 8).any()


# --- sampling --------------------------------------------------------------------------

def test_sampling_is_seeded_and_top_k_one_is_greedy():
    decoder = real_decoder(seed=3)
    features = torch.randn(8, 6)
    options = DecodeOptions(strategy="sample", seed=5, temperature=1.5)
    first = decode(decoder, features, BOS, EOS, [UNK], options, 10)
    assert first == decode(decoder, features, BOS, EOS, [UNK], options, 10)
    other = decode(decoder, features, BOS, EOS, [UNK], DecodeOptions(strategy="sample", seed=6, temperature=1.5), 10)
    assert first != other
    top1 = decode(decoder, features, BOS, EOS, [UNK], DecodeOptions(strategy="sample", top_k=1), 10)
    assert [h[0].tokens for h in top1] == greedy_reference(decoder, features, 10, banned=(UNK,))


def test_sampled_log_probs_are_the_models():
    decoder = real_decoder(seed=4)
    features = torch.randn(3, 6)
    results = decode(decoder, features, BOS, EOS, [], DecodeOptions(strategy="sample", num_captions=4), 15)
    for image, hypotheses in enumerate(results):
        assert len(hypotheses) == 4
        for h in hypotheses:
            expected = teacher_forced_log_prob(decoder, features[image], h.tokens, len(h.tokens) < 15)
            assert h.log_prob == pytest.approx(expected, abs=1e-4)


def test_top_k_and_top_p_filters():
    def kept(probs, **settings):
        return filter_top_k_top_p(torch.tensor([probs]), **settings)[0].nonzero().flatten().tolist()

    assert kept([0.5, 0.3, 0.15, 0.05], top_k=2) == [0, 1]
    assert kept([0.5, 0.3, 0.15, 0.05], top_p=0.75) == [0, 1]
    assert kept([0.5, 0.3, 0.15, 0.05], top_p=0.85) == [0, 1, 2]
    assert kept([0.5, 0.3, 0.15, 0.05], top_p=0.1) == [0]  # the most likely word always stays
    assert kept([0.15, 0.5, 0.05, 0.3], top_p=0.75) == [1, 3]
    assert kept([0.15, 0.5, 0.05, 0.3], top_k=3, top_p=0.99) == [0, 1, 3]


def test_sample_stops_at_eos():
    table = {BOS: {4: 1.0}, 4: {EOS: 1.0}}
    tokens, log_probs = sample(MarkovDecoder(table), torch.zeros(3, 1), BOS, EOS, max_length=9)
    assert tokens.tolist() == [[4, EOS]] * 3 and log_probs.tolist() == pytest.approx([0.0] * 3, abs=1e-6)


@pytest.mark.parametrize("bad", [{"beam_size": 0}, {"num_captions": 3, "beam_size": 2}, {"strategy": "nucleus"},
                                 {"temperature": 0}, {"top_p": 1.5}, {"max_length": 0}])
def test_bad_options_are_refused_with_the_setting_named(bad):
    with pytest.raises(CaptionerError, match="decode."):
        DecodeOptions(**bad)

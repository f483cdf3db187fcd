"""The word-class head: the language model says when a class word comes, the image says which."""

import pytest
import torch

from captioner.errors import CaptionerError
from captioner.models.decoder import Decoder, head_settings
from captioner.models.word_classes import class_bigram_log_prior, with_word_ids
from captioner.vocab import Vocabulary

GROUPS = [[4, 5, 6], [7, 8]]


def classed_and_plain(decoding_lm_weight=None, **options) -> tuple[Decoder, Decoder]:
    """The same weights with the GROUPS head (the image alone chooses within them in training) and without."""
    torch.manual_seed(0)
    settings = dict(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", locations=3, **options)
    head = {"name": "word_classes", "groups": GROUPS, "lm_weight": 0.0, "decoding_lm_weight": decoding_lm_weight}
    classed = Decoder(**settings, head=head).eval()
    plain = Decoder(**settings).eval()
    plain.load_state_dict(classed.state_dict())
    return classed, plain


@pytest.mark.parametrize("options", [{"word_prior": True}, {"word_prior": True, "attention_dim": 5}])
def test_word_classes_keep_the_language_models_share_of_each_class(options):
    classed, plain = classed_and_plain(**options)
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    with_classes, without = classed(features, tokens).log_softmax(-1), plain(features, tokens).log_softmax(-1)
    others = [w for w in range(12) if w not in sum(GROUPS, [])]
    assert torch.allclose(with_classes[..., others], without[..., others], atol=1e-5)
    for group in GROUPS:
        assert torch.allclose(with_classes[..., group].logsumexp(-1), without[..., group].logsumexp(-1), atol=1e-5)
        assert not torch.allclose(with_classes[..., group], without[..., group])  # but not how it is shared


@pytest.mark.parametrize("options", [{"word_prior": True}, {"word_prior": True, "attention_dim": 5}])
def test_the_language_model_has_no_say_within_a_class(options):
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    within, shares = {}, {}
    for name, decoder in zip(("classed", "plain"), classed_and_plain(**options)):
        log_probs = []
        for scale in (1.0, 20.0):  # the hidden state's weights for the class words, from weak to overruling
            with torch.no_grad():
                decoder.out.weight[:, :8][[4, 5, 6]] *= scale
            log_probs.append(decoder(features, tokens).log_softmax(-1)[..., [4, 5, 6]])
        within[name] = [p.log_softmax(-1) for p in log_probs]
        shares[name] = [p.logsumexp(-1) for p in log_probs]
    assert torch.allclose(*within["classed"], atol=1e-5)  # which word of the class: the image's choice alone
    assert not torch.allclose(*within["plain"], atol=1e-2)  # without classes the language model decides it too
    assert not torch.allclose(*shares["classed"], atol=1e-2)  # when a word of the class comes: the language model's


def test_lm_weight_blends_from_the_image_alone_to_the_plain_decoder():
    classed, plain = classed_and_plain(word_prior=True, attention_dim=5)  # lm_weight 0: the image alone
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    alone = classed(features, tokens)
    assert not torch.allclose(alone, plain(features, tokens), atol=1e-3)
    classed.head.lm_weight = 1.0
    assert torch.allclose(classed(features, tokens), plain(features, tokens), atol=1e-5)


def test_decoding_has_its_own_lm_weight_which_a_trained_model_can_change():
    classed, plain = classed_and_plain(word_prior=True, attention_dim=5, decoding_lm_weight=1.0)
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 1))
    state = classed.initial_state(features)
    assert torch.allclose(classed.step(tokens[:, 0], state)[0], plain.step(tokens[:, 0], state)[0], atol=1e-5)
    as_trained = classed.as_trained().step(tokens[:, 0], state)[0]  # teacher forcing's lm_weight 0
    assert torch.allclose(as_trained, classed(features, tokens)[:, 0], atol=1e-5)
    assert not torch.allclose(as_trained, classed.step(tokens[:, 0], state)[0], atol=1e-3)
    classed.set_head_decoding(decoding_lm_weight=0.0, unused_by_this_call=None)  # None keeps a setting
    assert torch.equal(classed.step(tokens[:, 0], state)[0], as_trained) and classed.head.lm_weight == 0.0
    with pytest.raises(CaptionerError, match="must be >= 0"):
        classed.set_head_decoding(decoding_lm_weight=-1.0)
    with pytest.raises(CaptionerError, match=r"head.lm_weight: the word_classes head .* \(it has: decoding_lm_w"):
        classed.set_head_decoding(lm_weight=1.0)
    with pytest.raises(CaptionerError, match="head.decoding_lm_weight: the plain head of this model has no such"):
        plain.set_head_decoding(decoding_lm_weight=0.5)


def attention_contexts(decoder: Decoder, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The context (B, T, C) each teacher-forcing step attends to."""
    contexts = []
    hook = decoder.attention.register_forward_hook(lambda _module, _inputs, output: contexts.append(output[0]))
    decoder(features, tokens)
    hook.remove()
    return contexts[0]


def test_pointer_attends_where_the_class_word_just_said_is_seen():
    torch.manual_seed(0)
    settings = dict(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", attention_dim=5, locations=3)
    head = {"name": "word_classes", "groups": GROUPS}
    pointing, plain = Decoder(**settings, head=head | {"pointer": True}).eval(), Decoder(**settings, head=head).eval()
    plain.load_state_dict(pointing.state_dict(), strict=False)
    with torch.no_grad():
        pointing.out.weight[4, 8:] = torch.tensor([1.0, 0.0])  # word 4 is read from channel 0, word 7 from channel 1
        pointing.out.weight[7, 8:] = torch.tensor([0.0, 1.0])
        pointing.head.pointer_scale.fill_(20.0)
    features = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0, 3.0]])  # channel-major: cell 1 shows channel 0, cell 2 channel 1
    tokens = torch.tensor([[4, 7, 9]])  # after word 4, after word 7, after a word of no class
    pointed = attention_contexts(pointing, features, tokens)[0]
    assert torch.allclose(pointed[0], torch.tensor([3.0, 0.0]), atol=1e-3)  # cell 1
    assert torch.allclose(pointed[1], torch.tensor([0.0, 3.0]), atol=1e-3)  # cell 2
    assert torch.allclose(pointed[2], attention_contexts(plain, features, tokens)[0, 2], atol=1e-6)  # no pointer
    with torch.no_grad():
        pointing.head.pointer_scale.fill_(1.0)  # unsaturated, so that gradients flow
    attention_contexts(pointing, features, tokens).sum().backward()
    assert pointing.head.pointer_scale.grad.abs().sum() > 0  # the pointer learns its scale
    assert pointing.out.weight.grad is None  # and not the words' readout


def test_class_bigram_log_prior_counts_each_class_word_after_each_word():
    prior = class_bigram_log_prior([[1, 4, 7], [1, 4, 7], [1, 5, 8]], vocab_size=12, groups=GROUPS)
    assert torch.allclose(prior[4, [7, 8]].exp(), torch.tensor([3 / 4, 1 / 4]))  # counts 2 and 0, plus one each
    assert torch.allclose(prior[1, [4, 5, 6]].exp(), torch.tensor([3 / 6, 2 / 6, 1 / 6]))
    assert torch.allclose(prior[9, [7, 8]].exp(), torch.tensor([1 / 2, 1 / 2]))  # never seen before the class: even
    assert not prior[:, [0, 1, 2, 3, 9, 10, 11]].any()  # words of no class are left alone


def test_the_prior_adjusts_teacher_forcing_within_classes_only():
    classed, _ = classed_and_plain(word_prior=True, attention_dim=5)
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    without, state = classed(features, tokens).log_softmax(-1), classed.initial_state(features)
    first_step = classed.step(tokens[:, 0], state)[0]
    log_prior = torch.randn(12, 12)
    classed.head.set_prior(log_prior)
    adjusted = classed(features, tokens).log_softmax(-1)
    for group in GROUPS:
        assert torch.allclose(adjusted[..., group].logsumexp(-1), without[..., group].logsumexp(-1), atol=1e-5)
        assert torch.allclose(adjusted[..., group].log_softmax(-1),
                              (without[..., group] + log_prior[tokens][..., group]).log_softmax(-1), atol=1e-5)
    others = [w for w in range(12) if w not in sum(GROUPS, [])]
    assert torch.allclose(adjusted[..., others], without[..., others], atol=1e-5)
    assert torch.equal(classed.step(tokens[:, 0], state)[0], first_step)  # decoding never uses it
    assert not any("prior" in key for key in classed.state_dict())  # nor do checkpoints keep it
    with pytest.raises(CaptionerError, match="shape \\(vocabulary, vocabulary\\), got \\(12, 11\\)"):
        classed.head.set_prior(torch.zeros(12, 11))


def test_fitting_the_head_sets_the_prior_only_with_logit_adjustment_and_a_plain_head_needs_nothing():
    for adjusted in (False, True):
        decoder = Decoder(12, 6, word_prior=True, head={"name": "word_classes", "groups": GROUPS,
                                                        "logit_adjustment": adjusted})
        decoder.fit_head([[1, 4, 7], [1, 5, 8]])
        assert (decoder.head.prior is not None) == adjusted
    Decoder(12, 6).fit_head([[1, 4, 7]])
    assert head_settings({"name": "plain"}, Vocabulary.build(["a red circle"])) == {"name": "plain"}


def test_words_become_vocabulary_ids():
    vocab = Vocabulary.build(["a red circle", "a blue square"])
    head = with_word_ids({"name": "word_classes", "words": [["red", "blue"], ["circle", "square"]], "pointer": True},
                         vocab)
    assert head == {"name": "word_classes", "pointer": True, "groups": [[vocab.index["red"], vocab.index["blue"]],
                                                                       [vocab.index["circle"], vocab.index["square"]]]}
    assert with_word_ids({"name": "plain"}, vocab) == {"name": "plain"}
    with pytest.raises(CaptionerError, match="'violett' is not in the training captions' vocabulary"):
        with_word_ids({"name": "word_classes", "words": [["red", "violett"]]}, vocab)


@pytest.mark.parametrize("options, head, message", [
    ({"word_prior": True}, {"groups": [[4, 5]], "pointer": True}, "pointer needs attention_dim > 0"),
    ({}, {"groups": [[4, 5]]}, "need word_prior or attention_dim"),
    ({"word_prior": True}, {}, "needs words"),
    ({"word_prior": True}, {"groups": [[4]]}, "at least two words"),
    ({"word_prior": True}, {"groups": [[4, 5], [5, 6]]}, "more than one word class"),
    ({"word_prior": True}, {"groups": [[4, 12]]}, "must lie in 0..11"),
    ({"word_prior": True}, {"groups": [[4, 5]], "decoding_lm_weight": -0.1}, "must be >= 0"),
])
def test_invalid_word_classes_are_refused(options, head, message):
    with pytest.raises(CaptionerError, match=message):
        Decoder(vocab_size=12, feature_dim=6, head={"name": "word_classes"} | head, **options)

import pytest
import torch

from captioner.decoding import DecodeOptions, beam_search
from captioner.errors import CaptionerError
from captioner.models.captioner import CaptionModel
from captioner.models.decoder import Decoder, class_bigram_log_prior
from captioner.models.encoder import Encoder


@pytest.mark.parametrize("name, channels", [("resnet18", 512), ("mobilenet_v3_small", 576)])
def test_encoder_keeps_a_grid_of_the_last_feature_map(name, channels):
    encoder = Encoder(name, grid_size=2)
    assert encoder.feature_dim == channels * 4
    assert encoder(torch.randn(3, 3, 64, 64)).shape == (3, channels * 4)


def test_encoder_features_depend_on_position():
    encoder = Encoder("resnet18", grid_size=2).eval()
    left, right = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    left[..., 20:40, 2:22] = 3.0
    right[..., 20:40, 42:62] = 3.0
    grid_left, grid_right = encoder(left).view(512, 4), encoder(right).view(512, 4)  # (C, grid cells)
    # the object's side shows in which grid cells respond: left cells (0, 2) vs right cells (1, 3)
    assert (grid_left[:, [0, 2]] - grid_left[:, [1, 3]]).abs().sum() > 0
    assert not torch.allclose(grid_left, grid_right)


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(CaptionerError, match="unknown encoder 'resnet1'.*resnet18"):
        Encoder("resnet1")


@pytest.mark.parametrize("cell, num_states", [("lstm", 2), ("gru", 1), ("rnn", 1)])
def test_decoder_shapes_for_every_cell(cell, num_states):
    decoder = Decoder(vocab_size=30, feature_dim=40, embed_dim=8, hidden_dim=16, num_layers=2, cell=cell)
    features, tokens = torch.randn(4, 40), torch.randint(0, 30, (4, 7))
    assert decoder(features, tokens).shape == (4, 7, 30)
    state = decoder.initial_state(features)
    assert len(state) == num_states and all(s.shape == (2, 4, 16) for s in state)
    logits, state = decoder.step(tokens[:, 0], state)
    assert logits.shape == (4, 30) and all(s.shape == (2, 4, 16) for s in state)


def test_image_features_initialise_every_layer_state():
    decoder = Decoder(vocab_size=10, feature_dim=6, hidden_dim=5, num_layers=3, cell="lstm")
    h, c = decoder.initial_state(torch.randn(2, 6))
    assert not torch.allclose(h[0], h[1]) and not torch.allclose(h[1], h[2]) and not torch.allclose(c[0], c[2])


WORD_CLASSES = [[4, 5, 6], [7, 8]]


@pytest.mark.parametrize("cell, image_input_dim, word_prior, attention_dim, word_classes, class_pointer", [
    ("lstm", 0, False, 0, None, False), ("gru", 0, False, 0, None, False), ("lstm", 3, False, 0, None, False),
    ("gru", 3, True, 0, None, False), ("lstm", 0, True, 0, None, False), ("lstm", 0, False, 5, None, False),
    ("gru", 3, True, 5, None, False), ("gru", 3, True, 5, WORD_CLASSES, False),
    ("lstm", 0, False, 5, WORD_CLASSES, False), ("gru", 3, True, 5, WORD_CLASSES, True)])
def test_step_by_step_equals_teacher_forcing(cell, image_input_dim, word_prior, attention_dim, word_classes,
                                             class_pointer):
    decoder = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell=cell,
                      image_input_dim=image_input_dim, word_prior=word_prior, attention_dim=attention_dim,
                      locations=3, word_classes=word_classes, class_pointer=class_pointer).eval()
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    full = decoder(features, tokens)
    state, steps = decoder.initial_state(features), []
    for t in range(5):
        logits, state = decoder.step(tokens[:, t], state)
        steps.append(logits)
    assert torch.allclose(full, torch.stack(steps, 1), atol=1e-5)


def test_unknown_cell_lists_valid_cells():
    with pytest.raises(CaptionerError, match="lstm, gru, rnn"):
        Decoder(10, 4, cell="transformer")


def test_decoding_stops_at_eos_or_max_length():
    model = CaptionModel(9, {"name": "resnet18", "grid_size": 1}, {"embed_dim": 4, "hidden_dim": 8}).eval()
    features = model.encoder(torch.randn(3, 3, 32, 32))
    with torch.no_grad():
        model.decoder.out.bias[2] = 100.0  # <eos> always wins: every caption ends at once
    tokens, _, _ = beam_search(model.decoder, features, bos=1, eos=2, max_length=6, beam_size=2)  # (B, K, T)
    assert tokens[:, 0, 0].tolist() == [2, 2, 2]  # the best beam ends at once (the others may run on)
    with torch.no_grad():
        model.decoder.out.bias[2], model.decoder.out.bias[5] = -100.0, 100.0  # never ends
    tokens, _, _ = beam_search(model.decoder, features, bos=1, eos=2, max_length=6, beam_size=2)
    assert tokens[:, 0].tolist() == [[5] * 6] * 3


def test_par_inject_feeds_the_image_with_every_word():
    decoder = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", image_input_dim=3).eval()
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    state = decoder.initial_state(features)
    assert [s.shape for s in state] == [(1, 2, 8), (1, 2, 3)]  # h, then the projected image
    # the same hidden state with another image's projection: the next word's logits change
    swapped = (state[0], state[1].flip(1))
    assert not torch.allclose(decoder.step(tokens[:, 0], state)[0], decoder.step(tokens[:, 0], swapped)[0])
    _, after = decoder.step(tokens[:, 0], state)
    assert torch.equal(after[1], state[1])  # carried unchanged from step to step


def test_word_prior_adds_the_word_heads_log_probabilities_to_every_step():
    torch.manual_seed(0)
    with_prior = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", image_input_dim=3,
                         word_prior=True).eval()
    plain = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", image_input_dim=3).eval()
    plain.load_state_dict(with_prior.state_dict())
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    prior = torch.nn.functional.logsigmoid(with_prior.word_logits(features))  # (B, V)
    assert torch.allclose(with_prior(features, tokens) - plain(features, tokens), prior.unsqueeze(1), atol=1e-5)
    state = with_prior.initial_state(features)
    assert [s.shape for s in state] == [(1, 2, 8), (1, 2, 3), (1, 2, 12)]  # h, projected image, prior
    logits, after = with_prior.step(tokens[:, 0], state)
    assert torch.allclose(logits - plain.step(tokens[:, 0], state[:2])[0], prior, atol=1e-5)
    assert torch.equal(after[2], state[2])  # carried unchanged from step to step


def test_attention_mixes_the_encoders_grid_cells_by_query():
    decoder = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", attention_dim=5,
                      locations=3).eval()
    features = torch.randn(2, 6)
    _, locations, _ = decoder.initial_state(features)
    # the encoder flattens its (C, grid cells) map channel-major: cell l of channel c is feature c * 3 + l
    assert torch.equal(locations, features.view(2, 2, 3).permute(2, 0, 1))  # (L, B, C)
    cells, queries = torch.randn(1, 3, 2), torch.randn(1, 4, 8)  # 3 cells of 2 channels, 4 steps' queries
    contexts = decoder.attention(cells, decoder.attention.keys(cells), queries)  # (1, 4, 2)
    assert not torch.allclose(contexts[0, 0], contexts[0, 1])  # each step looks elsewhere
    assert (contexts >= cells.min(1, keepdim=True).values - 1e-6).all()  # a weighted mean of the cells
    assert (contexts <= cells.max(1, keepdim=True).values + 1e-6).all()
    same = torch.tensor([0.5, -2.0]).expand(1, 3, 2)
    assert torch.allclose(decoder.attention(same, decoder.attention.keys(same), queries), same[:, :1].expand(1, 4, 2))


def test_attention_needs_features_that_split_into_its_locations():
    with pytest.raises(CaptionerError, match="does not split into 4 locations"):
        Decoder(vocab_size=12, feature_dim=6, attention_dim=5, locations=4)


def classed_and_plain(decoding_class_lm_weight=None, **options) -> tuple[Decoder, Decoder]:
    """The same weights with WORD_CLASSES (the image alone chooses within them) and without."""
    torch.manual_seed(0)
    settings = dict(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", locations=3, **options)
    classed = Decoder(**settings, word_classes=WORD_CLASSES, class_lm_weight=0.0,
                      decoding_class_lm_weight=decoding_class_lm_weight).eval()
    plain = Decoder(**settings).eval()
    plain.load_state_dict(classed.state_dict())
    return classed, plain


@pytest.mark.parametrize("options", [{"word_prior": True}, {"word_prior": True, "attention_dim": 5}])
def test_word_classes_keep_the_language_models_share_of_each_class(options):
    classed, plain = classed_and_plain(**options)
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    with_classes, without = classed(features, tokens).log_softmax(-1), plain(features, tokens).log_softmax(-1)
    others = [w for w in range(12) if w not in sum(WORD_CLASSES, [])]
    assert torch.allclose(with_classes[..., others], without[..., others], atol=1e-5)
    for group in WORD_CLASSES:
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


def test_class_lm_weight_blends_from_the_image_alone_to_the_plain_decoder():
    classed, plain = classed_and_plain(word_prior=True, attention_dim=5)  # class_lm_weight 0: the image alone
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    alone = classed(features, tokens)
    assert not torch.allclose(alone, plain(features, tokens), atol=1e-3)
    classed.class_lm_weight = 1.0
    assert torch.allclose(classed(features, tokens), plain(features, tokens), atol=1e-5)


def test_decoding_has_its_own_class_lm_weight_which_decode_options_override():
    classed, plain = classed_and_plain(word_prior=True, attention_dim=5, decoding_class_lm_weight=1.0)
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 1))
    state = classed.initial_state(features)
    assert torch.allclose(classed.step(tokens[:, 0], state)[0], plain.step(tokens[:, 0], state)[0], atol=1e-5)
    with classed.decoding_with_class_lm_weight(0.0):  # as trained: teacher forcing uses class_lm_weight 0
        assert torch.allclose(classed.step(tokens[:, 0], state)[0], classed(features, tokens)[:, 0], atol=1e-5)
    assert classed.decoding_class_lm_weight == 1.0  # restored after the block
    with pytest.raises(CaptionerError, match="class_lm_weight must be >= 0"):
        DecodeOptions(class_lm_weight=-1.0)


def attention_contexts(decoder: Decoder, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The context (B, T, C) each teacher-forcing step attends to."""
    contexts = []
    hook = decoder.attention.register_forward_hook(lambda _module, _inputs, output: contexts.append(output))
    decoder(features, tokens)
    hook.remove()
    return contexts[0]


def test_class_pointer_attends_where_the_class_word_just_said_is_seen():
    torch.manual_seed(0)
    settings = dict(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", attention_dim=5, locations=3,
                    word_classes=WORD_CLASSES)
    pointing, plain = Decoder(**settings, class_pointer=True).eval(), Decoder(**settings).eval()
    plain.load_state_dict(pointing.state_dict(), strict=False)
    with torch.no_grad():
        pointing.out.weight[4, 8:] = torch.tensor([1.0, 0.0])  # word 4 is read from channel 0, word 7 from channel 1
        pointing.out.weight[7, 8:] = torch.tensor([0.0, 1.0])
        pointing.pointer_scale.fill_(20.0)
    features = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0, 3.0]])  # channel-major: cell 1 shows channel 0, cell 2 channel 1
    tokens = torch.tensor([[4, 7, 9]])  # after word 4, after word 7, after a word of no class
    pointed = attention_contexts(pointing, features, tokens)[0]
    assert torch.allclose(pointed[0], torch.tensor([3.0, 0.0]), atol=1e-3)  # cell 1
    assert torch.allclose(pointed[1], torch.tensor([0.0, 3.0]), atol=1e-3)  # cell 2
    assert torch.allclose(pointed[2], attention_contexts(plain, features, tokens)[0, 2], atol=1e-6)  # no pointer
    with torch.no_grad():
        pointing.pointer_scale.fill_(1.0)  # unsaturated, so that gradients flow
    attention_contexts(pointing, features, tokens).sum().backward()
    assert pointing.pointer_scale.grad.abs().sum() > 0  # the pointer learns its scale
    assert pointing.out.weight.grad is None  # and not the words' readout


def test_class_bigram_log_prior_counts_each_class_word_after_each_word():
    prior = class_bigram_log_prior([[1, 4, 7], [1, 4, 7], [1, 5, 8]], vocab_size=12, groups=WORD_CLASSES)
    assert torch.allclose(prior[4, [7, 8]].exp(), torch.tensor([3 / 4, 1 / 4]))  # counts 2 and 0, plus one each
    assert torch.allclose(prior[1, [4, 5, 6]].exp(), torch.tensor([3 / 6, 2 / 6, 1 / 6]))
    assert torch.allclose(prior[9, [7, 8]].exp(), torch.tensor([1 / 2, 1 / 2]))  # never seen before the class: even
    assert not prior[:, [0, 1, 2, 3, 9, 10, 11]].any()  # words of no class are left alone


def test_class_prior_adjusts_teacher_forcing_within_classes_only():
    classed, _ = classed_and_plain(word_prior=True, attention_dim=5)
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    without, state = classed(features, tokens).log_softmax(-1), classed.initial_state(features)
    first_step = classed.step(tokens[:, 0], state)[0]
    log_prior = torch.randn(12, 12)
    classed.set_class_prior(log_prior)
    adjusted = classed(features, tokens).log_softmax(-1)
    for group in WORD_CLASSES:
        assert torch.allclose(adjusted[..., group].logsumexp(-1), without[..., group].logsumexp(-1), atol=1e-5)
        assert torch.allclose(adjusted[..., group].log_softmax(-1),
                              (without[..., group] + log_prior[tokens][..., group]).log_softmax(-1), atol=1e-5)
    others = [w for w in range(12) if w not in sum(WORD_CLASSES, [])]
    assert torch.allclose(adjusted[..., others], without[..., others], atol=1e-5)
    assert torch.equal(classed.step(tokens[:, 0], state)[0], first_step)  # decoding never uses it
    assert "class_prior" not in classed.state_dict()  # nor do checkpoints keep it
    with pytest.raises(CaptionerError, match="shape \\(vocabulary, vocabulary\\), got \\(12, 11\\)"):
        classed.set_class_prior(torch.zeros(12, 11))


@pytest.mark.parametrize("options, word_classes, message", [
    ({"word_prior": True, "class_pointer": True}, [[4, 5]], "class_pointer needs word classes and attention_dim"),
    ({"attention_dim": 5, "locations": 3, "class_pointer": True}, None, "class_pointer needs word classes"),
    ({}, [[4, 5]], "need word_prior or attention_dim"),
    ({"word_prior": True}, [[4]], "at least two words"),
    ({"word_prior": True}, [[4, 5], [5, 6]], "more than one word class"),
    ({"word_prior": True}, [[4, 12]], "must lie in 0..11"),
    ({"word_prior": True, "decoding_class_lm_weight": -0.1}, [[4, 5]], "must be >= 0"),
])
def test_invalid_word_classes_are_refused(options, word_classes, message):
    with pytest.raises(CaptionerError, match=message):
        Decoder(vocab_size=12, feature_dim=6, word_classes=word_classes, **options)

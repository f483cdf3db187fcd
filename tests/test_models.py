import pytest
import torch

from captioner.decoding import beam_search
from captioner.errors import CaptionerError
from captioner.models.decoder import Decoder
from captioner.models.encoder import Encoder
from captioner.models.model import CaptionModel
from captioner.models.state import DecoderState


@pytest.mark.parametrize("name, channels", [("resnet18", 512), ("mobilenet_v3_small", 576), ("regnet_x_400mf", 400)])
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
    assert len(state.hidden) == num_states and all(s.shape == (2, 4, 16) for s in state.hidden)
    assert state.image is state.locations is state.keys is state.prior is None  # the plain core carries nothing else
    logits, state = decoder.step(tokens[:, 0], state)
    assert logits.shape == (4, 30) and all(s.shape == (2, 4, 16) for s in state.hidden)


def test_image_features_initialise_every_layer_state():
    decoder = Decoder(vocab_size=10, feature_dim=6, hidden_dim=5, num_layers=3, cell="lstm")
    h, c = decoder.initial_state(torch.randn(2, 6)).hidden
    assert not torch.allclose(h[0], h[1]) and not torch.allclose(h[1], h[2]) and not torch.allclose(c[0], c[2])


CLASSES = {"name": "word_classes", "groups": [[4, 5, 6], [7, 8]]}


@pytest.mark.parametrize("cell, image_input_dim, word_prior, attention_dim, head", [
    ("lstm", 0, False, 0, None), ("gru", 0, False, 0, None), ("lstm", 3, False, 0, None),
    ("gru", 3, True, 0, None), ("lstm", 0, True, 0, None), ("lstm", 0, False, 5, None),
    ("gru", 3, True, 5, None), ("gru", 3, True, 5, CLASSES), ("lstm", 0, False, 5, CLASSES),
    ("gru", 3, True, 5, CLASSES | {"pointer": True})])
def test_step_by_step_equals_teacher_forcing(cell, image_input_dim, word_prior, attention_dim, head):
    decoder = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell=cell,
                      image_input_dim=image_input_dim, word_prior=word_prior, attention_dim=attention_dim,
                      locations=3, head=head).eval()
    features, tokens = torch.randn(2, 6), torch.randint(0, 12, (2, 5))
    full = decoder(features, tokens)
    state, steps = decoder.initial_state(features), []
    for t in range(5):
        logits, state = decoder.step(tokens[:, t], state)
        steps.append(logits)
    assert torch.allclose(full, torch.stack(steps, 1), atol=1e-5)


def test_unknown_cell_and_head_list_the_valid_ones():
    with pytest.raises(CaptionerError, match="lstm, gru, rnn"):
        Decoder(10, 4, cell="transformer")
    with pytest.raises(CaptionerError, match="unknown decoder head 'fancy'; choose one of: plain, word_classes"):
        Decoder(10, 4, head={"name": "fancy"})


def test_a_state_reorders_every_field_by_its_batch_rows():
    decoder = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="lstm", image_input_dim=3,
                      word_prior=True, attention_dim=5, locations=3).eval()
    state = decoder.initial_state(torch.randn(3, 6))
    rows = torch.tensor([2, 0, 0])
    reordered, repeated = state.reorder(rows), state.repeat_interleave(2)
    for name in ("image", "locations", "keys", "prior"):
        assert torch.equal(getattr(reordered, name), getattr(state, name)[:, rows]), name
        assert torch.equal(getattr(repeated, name), getattr(state, name)[:, [0, 0, 1, 1, 2, 2]]), name
    assert all(torch.equal(a, b[:, rows]) for a, b in zip(reordered.hidden, state.hidden))
    assert len(repeated.hidden) == 2 and repeated.hidden[1].shape == (1, 6, 8)
    logits, _ = decoder.step(torch.tensor([4, 5, 6]), state)
    again, _ = decoder.step(torch.tensor([6, 4, 4]), reordered)
    assert torch.allclose(again, logits[rows], atol=1e-6)  # a reordered state steps as its rows did


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
    assert state.hidden[0].shape == (1, 2, 8) and state.image.shape == (1, 2, 3)
    # the same hidden state with another image's projection: the next word's logits change
    swapped = DecoderState(state.hidden, image=state.image.flip(1))
    assert not torch.allclose(decoder.step(tokens[:, 0], state)[0], decoder.step(tokens[:, 0], swapped)[0])
    _, after = decoder.step(tokens[:, 0], state)
    assert torch.equal(after.image, state.image)  # carried unchanged from step to step


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
    assert state.prior.shape == (1, 2, 12)
    logits, after = with_prior.step(tokens[:, 0], state)
    without = DecoderState(state.hidden, image=state.image)
    assert torch.allclose(logits - plain.step(tokens[:, 0], without)[0], prior, atol=1e-5)
    assert torch.equal(after.prior, state.prior)  # carried unchanged from step to step


def test_attention_mixes_the_encoders_grid_cells_by_query():
    decoder = Decoder(vocab_size=12, feature_dim=6, embed_dim=4, hidden_dim=8, cell="gru", attention_dim=5,
                      locations=3).eval()
    features = torch.randn(2, 6)
    locations = decoder.initial_state(features).locations
    # the encoder flattens its (C, grid cells) map channel-major: cell l of channel c is feature c * 3 + l
    assert torch.equal(locations, features.view(2, 2, 3).permute(2, 0, 1))  # (L, B, C)
    cells, queries = torch.randn(1, 3, 2), torch.randn(1, 4, 8)  # 3 cells of 2 channels, 4 steps' queries
    contexts, weights = decoder.attention(cells, decoder.attention.keys(cells), queries)  # (1, 4, 2), (1, 4, 3)
    assert torch.allclose(weights.sum(2), torch.ones(1, 4)) and torch.allclose(contexts, weights @ cells)
    assert not torch.allclose(contexts[0, 0], contexts[0, 1])  # each step looks elsewhere
    assert (contexts >= cells.min(1, keepdim=True).values - 1e-6).all()  # a weighted mean of the cells
    assert (contexts <= cells.max(1, keepdim=True).values + 1e-6).all()
    same = torch.tensor([0.5, -2.0]).expand(1, 3, 2)
    assert torch.allclose(decoder.attention(same, decoder.attention.keys(same), queries)[0],
                          same[:, :1].expand(1, 4, 2))


def test_attention_weights_are_those_each_decoding_step_used():
    decoder = Decoder(vocab_size=12, feature_dim=8, embed_dim=4, hidden_dim=8, cell="lstm", attention_dim=5,
                      locations=4).eval()
    features, tokens = torch.randn(2, 8), torch.randint(0, 12, (2, 5))
    weights = decoder.attention_weights(features, tokens)  # (2, 5, 4)
    assert weights.shape == (2, 5, 4) and torch.allclose(weights.sum(2), torch.ones(2, 5))
    state = decoder.initial_state(features)
    for t in range(5):  # step by step, as decoding runs: the same weights
        _, _, step_weights = decoder._run(tokens[:, t : t + 1], state)
        assert torch.allclose(step_weights[:, 0], weights[:, t], atol=1e-6)
        _, state = decoder.step(tokens[:, t], state)
    with pytest.raises(CaptionerError, match="this model has no attention"):
        Decoder(vocab_size=12, feature_dim=8).attention_weights(features, tokens)


def test_attention_needs_features_that_split_into_its_locations():
    with pytest.raises(CaptionerError, match="does not split into 4 locations"):
        Decoder(vocab_size=12, feature_dim=6, attention_dim=5, locations=4)


@pytest.mark.parametrize("summary, size", [("mean", 64), ("cells", 49 * 8), ("grid", 64 * 49)])
def test_the_grid_summary_sets_what_the_state_par_inject_and_word_head_read(summary, size):
    decoder = Decoder(vocab_size=50, feature_dim=64 * 49, locations=49, hidden_dim=16, image_input_dim=4,
                      summary=summary, cell_dim=8)
    assert decoder.init_state.in_features == decoder.image_input.in_features == decoder.word_head.in_features == size
    features, tokens = torch.randn(3, 64 * 49), torch.randint(0, 50, (3, 5))
    assert decoder(features, tokens).shape == (3, 5, 50) and decoder.word_logits(features).shape == (3, 50)


def test_with_the_mean_summary_the_decoders_size_does_not_grow_with_the_grid():
    sizes = {sum(p.numel() for p in Decoder(vocab_size=100, feature_dim=64 * cells, locations=cells,
                                            attention_dim=8, word_prior=True).parameters()) for cells in (1, 4, 49)}
    assert len(sizes) == 1


def test_the_cells_summary_keeps_where_things_are_and_the_mean_does_not():
    left, right = torch.zeros(1, 16, 4), torch.zeros(1, 16, 4)  # (B, C, L): something in cell 0, or in cell 3
    left[0, :, 0], right[0, :, 3] = 1.0, 1.0
    cells = Decoder(vocab_size=20, feature_dim=64, locations=4, summary="cells", cell_dim=2).summary
    mean = Decoder(vocab_size=20, feature_dim=64, locations=4, summary="mean").summary
    assert not torch.allclose(cells(left.flatten(1)), cells(right.flatten(1)))
    assert torch.equal(mean(left.flatten(1)), mean(right.flatten(1)))


def test_an_unknown_summary_lists_the_valid_ones():
    with pytest.raises(CaptionerError, match="unknown image summary 'max'.*mean, cells, grid"):
        Decoder(vocab_size=20, feature_dim=64, locations=4, summary="max")

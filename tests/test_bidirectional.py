"""Bidirectional decoding: a reverse decoder learns the captions read backwards and re-ranks the beam."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_DECODER, TINY_ENCODER, interrupted_at_step, tiny_trainer

from captioner import Captioner, CaptionerError
from captioner.checkpoint import load_checkpoint
from captioner.decode_options import DecodeOptions
from captioner.decoding import decode
from captioner.models.decoder import Decoder
from captioner.models.model import CaptionModel, reverse_captions
from captioner.objectives import one_caption_per_image
from captioner.recipe import train
from captioner.reranking import BidirectionalReranking, reranker, reverse_log_probs

BOS, EOS, PAD = 1, 2, 0


def test_captions_read_backwards_keep_bos_eos_and_padding():
    tokens = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 2, 0, 0, 0], [1, 2, 0, 0, 0, 0]])
    assert reverse_captions(tokens, PAD).tolist() == [[1, 7, 6, 5, 2, 0], [1, 8, 2, 0, 0, 0], [1, 2, 0, 0, 0, 0]]


def bidirectional_decoder() -> Decoder:
    torch.manual_seed(0)
    return Decoder(vocab_size=12, feature_dim=8, embed_dim=4, hidden_dim=8, cell="gru", attention_dim=5, locations=4,
                   bidirectional=True).eval()


def test_the_reverse_decoder_scores_a_caption_as_a_step_by_step_pass_over_it_read_backwards():
    decoder, features = bidirectional_decoder(), torch.randn(3, 8)
    captions = [[5, 6, 7], [8], []]
    scores = reverse_log_probs(decoder.reverse, features, captions, BOS, EOS)
    for i, caption in enumerate(captions):
        state, total = decoder.reverse.initial_state(features[i : i + 1]), 0.0
        for previous, word in zip([BOS, *caption[::-1]], [*caption[::-1], EOS]):
            logits, state = decoder.reverse.step(torch.tensor([previous]), state)
            total += logits.log_softmax(-1)[0, word].item()
        assert scores[i].item() == pytest.approx(total, abs=1e-5)


def test_re_ranking_with_weight_0_keeps_the_beams_order_and_a_large_weight_follows_the_reverse_decoder():
    decoder, features = bidirectional_decoder(), torch.randn(2, 8)
    beam = DecodeOptions(beam_size=4, num_captions=4, max_length=6)
    plain = decode(decoder, features, BOS, EOS, [PAD, BOS], beam, 6)
    assert BidirectionalReranking(weight=0.0)(decoder, features, plain, BOS, EOS) == plain
    heavy = BidirectionalReranking(weight=1e6)(decoder, features, plain, BOS, EOS)
    for image, hypotheses in enumerate(heavy):
        backward = reverse_log_probs(decoder.reverse, features[image : image + 1].expand(4, -1),
                                     [h.tokens for h in hypotheses], BOS, EOS)
        assert backward.tolist() == sorted(backward.tolist(), reverse=True)
        same_candidates = sorted(tuple(h.tokens) for h in plain[image])
        assert sorted(tuple(h.tokens) for h in hypotheses) == same_candidates


def test_re_ranking_needs_a_reverse_decoder_and_a_beam_and_asks_the_search_for_all_its_candidates():
    with pytest.raises(CaptionerError, match="needs a model trained with model.decoder.bidirectional=true"):
        BidirectionalReranking().check(Decoder(vocab_size=12, feature_dim=8))
    with pytest.raises(CaptionerError, match="decode.strategy=beam"):
        BidirectionalReranking().search_options(DecodeOptions(strategy="sample"))
    assert BidirectionalReranking().search_options(DecodeOptions(beam_size=5)).num_captions == 5
    assert reranker("none") is None and reranker("bidirectional", weight=0.5).weight == 0.5
    for name, options, message in [("beamy", {}, "unknown rerank 'beamy'; choose one of: none, bidirectional"),
                                   ("bidirectional", {"wieght": 1}, "rerank.wieght: rerank=bidirectional takes weight"),
                                   ("bidirectional", {"weight": float("nan")}, "rerank.weight must be a number")]:
        with pytest.raises(CaptionerError, match=message):
            reranker(name, **options)


def test_a_bidirectional_model_trains_its_reverse_decoder_and_captions_with_re_ranking(tiny_records, tmp_path):
    settings = TINY_DECODER | {"bidirectional": True}
    train(tiny_records, tmp_path, TINY_ENCODER, settings, tiny_trainer(max_steps=3), image_size=32, test_split=None)
    trained = load_checkpoint(tmp_path / "last.pt")["state_dict"]
    vocab_size = len(load_checkpoint(tmp_path / "last.pt")["vocab"])
    torch.manual_seed(0)  # as train() seeds before building the model
    initial = CaptionModel(vocab_size, TINY_ENCODER, settings).state_dict()
    assert not torch.equal(initial["decoder.reverse.out.weight"], trained["decoder.reverse.out.weight"])
    torch.manual_seed(0)
    forward_only = CaptionModel(vocab_size, TINY_ENCODER, TINY_DECODER).state_dict()
    assert all(torch.equal(value, initial[key]) for key, value in forward_only.items())  # the reverse part comes last
    captioner = Captioner.load(tmp_path / "model.pt")
    paths = [r.path for r in tiny_records[:4]]
    reranked = Captioner.load(tmp_path / "model.pt", rerank={"name": "bidirectional"})
    assert len(reranked.caption(paths, beam_size=3)) == 4
    unweighted = Captioner.load(tmp_path / "model.pt", rerank=BidirectionalReranking(weight=0.0))
    assert unweighted.caption_candidates(paths, beam_size=3, num_captions=2) == \
        captioner.caption_candidates(paths, beam_size=3, num_captions=2)
    with pytest.raises(CaptionerError, match="decode.strategy=beam"):
        reranked.caption(paths, strategy="sample")


def test_one_caption_per_image_takes_each_images_captions_in_turn():
    image_index = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])  # images with 3, 2 and 4 captions, rows in order
    taken = [one_caption_per_image(image_index, 3, step).tolist() for step in range(4)]
    assert taken == [[0, 4, 7], [1, 3, 8], [2, 4, 5], [0, 3, 6]]
    assert one_caption_per_image(torch.tensor([0, 0, 2]), 3, 1).tolist() == [1, 2]  # an image without captions


def test_a_reverse_decoder_on_one_caption_per_image_trains_and_resumes_to_the_same_weights(tiny_records, tmp_path):
    settings = TINY_DECODER | {"bidirectional": True}
    config = {"max_epochs": 2, "checkpoint_every_steps": 4, "reverse_captions_per_image": "one"}
    torch.manual_seed(0)
    train(tiny_records, tmp_path / "a", TINY_ENCODER, settings, tiny_trainer(**config), image_size=32,
          test_split=None)
    torch.manual_seed(0)
    train(tiny_records, tmp_path / "all", TINY_ENCODER, settings,
          tiny_trainer(**config | {"reverse_captions_per_image": "all"}), image_size=32, test_split=None)
    with interrupted_at_step(), pytest.raises(Exception, match="interrupted"):
        torch.manual_seed(0)
        train(tiny_records, tmp_path / "b", TINY_ENCODER, settings, tiny_trainer(**config), image_size=32,
              test_split=None)
    torch.manual_seed(0)
    train(tiny_records, tmp_path / "b", TINY_ENCODER, settings, tiny_trainer(**config | {"resume": True}),
          image_size=32, test_split=None)
    one, resumed, every = (load_checkpoint(tmp_path / d / "last.pt")["state_dict"] for d in ("a", "b", "all"))
    assert all(torch.equal(value, resumed[key]) for key, value in one.items())
    assert not torch.equal(one["decoder.reverse.out.weight"], every["decoder.reverse.out.weight"])


def test_an_unknown_reverse_caption_setting_is_refused():
    with pytest.raises(CaptionerError, match="reverse_captions_per_image must be all or one, got 'some'"):
        tiny_trainer(reverse_captions_per_image="some")

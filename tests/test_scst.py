"""Self-critical training: the policy gradient's sign, the baselines, resuming, and a run from a trained model."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import interrupted_at_step, tiny_trainer
from PIL import Image

from captioner import Captioner, CaptionerError
from captioner.checkpoint import load_checkpoint
from captioner.recipe import train
from captioner.scst import self_critical_loss
from captioner.training_config import ScstConfig


class Rewards:
    """Hands out fixed rewards: the samples' first, then the greedy captions'."""

    def __init__(self, *batches):
        self.batches = list(batches)

    def scores(self, candidates, references):
        values = self.batches.pop(0)
        assert len(values) == len(candidates)
        return values


def sequence_log_prob(captioner: Captioner, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p of each sampled caption (up to and with its <eos>) by teacher forcing (a plain head: as step),
    over the words sampling may choose (never <pad>, <bos> or <unk>)."""
    vocab = captioner.vocab
    with torch.no_grad():
        inputs = torch.cat([torch.full((len(tokens), 1), vocab.bos), tokens[:, :-1]], dim=1)
        logits = captioner.model(pixels, inputs).logits
        logits[..., [vocab.pad, vocab.bos, vocab.unk]] = float("-inf")
        chosen = logits.log_softmax(-1).gather(2, tokens.unsqueeze(2)).squeeze(2)  # (N, T)
        after_eos = (tokens == vocab.eos).long().cumsum(1) - (tokens == vocab.eos).long()
        return chosen.masked_fill(after_eos > 0, 0.0).sum(1)


@pytest.mark.parametrize("rewards, direction", [((1.0, 0.0), 1), ((0.0, 1.0), -1)])
def test_a_step_makes_a_caption_above_its_baseline_likelier_and_one_below_less_likely(
        tiny_checkpoint, tiny_records, rewards, direction):
    torch.manual_seed(0)
    captioner = Captioner.load(tiny_checkpoint)
    captioner.model.eval()
    pixels = captioner.transform(Image.open(tiny_records[0].path).convert("RGB")).unsqueeze(0)
    sample_reward, greedy_reward = rewards
    loss, stats = self_critical_loss(captioner.model, pixels, [[[4, 5]]], Rewards([sample_reward], [greedy_reward]),
                                     captioner.vocab, ScstConfig(samples=1, baseline="greedy"), 12)
    assert stats["advantages"].tolist() == [sample_reward - greedy_reward]
    before = sequence_log_prob(captioner, pixels, stats["samples"])
    assert loss.item() == pytest.approx(-(sample_reward - greedy_reward) * before.item(), rel=1e-4)
    optimizer = torch.optim.SGD(captioner.model.parameters(), lr=1e-3)
    loss.backward()
    optimizer.step()
    after = sequence_log_prob(captioner, pixels, stats["samples"])
    assert torch.sign(after - before).item() == direction


def test_the_mean_baseline_is_the_other_samples_mean(tiny_checkpoint, tiny_records):
    captioner = Captioner.load(tiny_checkpoint)
    pixels = torch.stack([captioner.transform(Image.open(r.path).convert("RGB"))
                          for r in tiny_records[:2]])
    _, stats = self_critical_loss(captioner.model, pixels, [[[4]], [[5]]], Rewards([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]),
                                  captioner.vocab, ScstConfig(samples=3, baseline="mean"), 12)
    assert stats["advantages"].tolist() == pytest.approx([1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0])


def test_settings_are_checked():
    with pytest.raises(CaptionerError, match="the mean baseline needs at least 2"):
        ScstConfig(samples=1, baseline="mean")
    with pytest.raises(CaptionerError, match="trainer.scst.baseline must be one of greedy, mean"):
        ScstConfig(baseline="best")


def _scst(records, out_dir, checkpoint, **overrides):
    torch.manual_seed(0)
    trainer = tiny_trainer(**{"max_epochs": 2, "checkpoint_every_steps": 4, "objective": "scst",
                              "init_from": str(checkpoint), "lr": 1e-3, "warmup_steps": 1,
                              "scst": ScstConfig(samples=2)} | overrides)
    metrics = train(records, out_dir, {}, {}, trainer, test_split=None)
    return metrics, load_checkpoint(out_dir / "last.pt")


def test_scst_from_a_trained_model_trains_and_resumes_to_identical_weights(tiny_records, tiny_checkpoint, tmp_path):
    metrics, uninterrupted = _scst(tiny_records, tmp_path / "a", tiny_checkpoint)
    start = load_checkpoint(tiny_checkpoint)
    assert uninterrupted["vocab"] == start["vocab"] and uninterrupted["model_args"] == start["model_args"]
    assert not torch.equal(uninterrupted["state_dict"]["decoder.out.weight"], start["state_dict"]["decoder.out.weight"])
    rows = list(csv.DictReader((tmp_path / "a" / "training_curve.csv").open()))
    assert len(rows) == 2 and "val_CIDEr" in rows[0] and uninterrupted["step"] == 12
    assert 0.0 <= float(rows[0]["train_reward"]) and "train_reward" in metrics

    with interrupted_at_step(), pytest.raises(Exception, match="interrupted"):
        _scst(tiny_records, tmp_path / "b", tiny_checkpoint)
    _, resumed = _scst(tiny_records, tmp_path / "b", tiny_checkpoint, resume=True)
    assert resumed["step"] == 12
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def test_scst_needs_every_reference_per_step(tiny_records, tiny_checkpoint, tmp_path):
    with pytest.raises(CaptionerError, match="set trainer.captions_per_image=all"):
        _scst(tiny_records, tmp_path, tiny_checkpoint, captions_per_image="one")

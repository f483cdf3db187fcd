"""Self-critical sequence training (Rennie et al., CVPR 2017): fine-tune a captioner with REINFORCE
on the CIDEr-D of captions it samples, each sample's reward measured against a baseline: the
reward of the image's greedy caption (the paper's), or the mean reward of the image's other
samples (the "new SCST" of Luo, 2020, which needs no greedy decode).

The policy is the model in eval mode (no dropout, BatchNorm's running statistics), sampled through
the decoder's own ``step``, so the log-probabilities that get the gradient are those of the captions
as they were drawn; its logits are formed as in training (``Decoder.as_trained``: a word-class head's
training weight and logit adjustment; the same as decoding for a plain head). Sampling from the
decoding form instead taught the demo model to lean on the language prior: held-out colour-shape
pairs were named right far less often (benchmarks/README.md, "Self-critical training").
"""

from __future__ import annotations

import torch
from torch import nn

from captioner.data.formats import ImageRecord
from captioner.decoding import beam_search, sample
from captioner.models.model import CaptionModel
from captioner.rewards import CiderD
from captioner.training_config import ScstConfig
from captioner.vocab import Vocabulary


def caption_words(tokens: list[int], vocab: Vocabulary) -> list[int]:
    """Token ids -> the caption's word ids: up to the first <eos>, without <bos> or padding."""
    words = []
    for token in tokens:
        if token == vocab.eos:
            break
        if token not in (vocab.bos, vocab.pad):
            words.append(token)
    return words


def self_critical_loss(model: CaptionModel, pixels: torch.Tensor, references: list[list[list[int]]], reward: CiderD,
                       vocab: Vocabulary, config: ScstConfig, max_length: int) -> tuple[torch.Tensor, dict]:
    """Images (B, 3, S, S) and each image's reference word ids -> the policy-gradient loss
    ``-mean((reward - baseline) * log p(sample))`` over B x ``samples`` captions, and its figures
    (mean reward and baseline, the sampled tokens (B * K, T) and their advantages)."""
    features = model.encoder(pixels)  # (B, F)
    banned = [vocab.pad, vocab.bos, vocab.unk]  # as decoding by default: <unk> is never said
    policy = model.decoder.as_trained()  # the logits as teacher forcing forms them (see above)
    tokens, log_probs = sample(policy, features.repeat_interleave(config.samples, dim=0), vocab.bos, vocab.eos,
                               max_length, config.temperature, banned=banned)
    sampled_references = [refs for refs in references for _ in range(config.samples)]
    rewards = torch.tensor(reward.scores([caption_words(t, vocab) for t in tokens.tolist()], sampled_references),
                           dtype=torch.float32, device=log_probs.device)  # (B * K,)
    if config.baseline == "greedy":
        with torch.no_grad():
            greedy, _, _ = beam_search(policy, features.detach(), vocab.bos, vocab.eos, max_length, 1,
                                       banned=banned)  # (B, 1, T)
        greedy_rewards = reward.scores([caption_words(t, vocab) for t in greedy[:, 0].tolist()], references)
        baseline = torch.tensor(greedy_rewards, dtype=torch.float32, device=log_probs.device)
        baseline = baseline.repeat_interleave(config.samples)
    else:
        per_image = rewards.view(-1, config.samples)  # (B, K)
        baseline = ((per_image.sum(1, keepdim=True) - per_image) / (config.samples - 1)).flatten()
    loss = -((rewards - baseline) * log_probs).mean()
    return loss, {"reward": rewards.mean().item(), "baseline": baseline.mean().item(), "samples": tokens,
                  "advantages": (rewards - baseline).detach()}


class SelfCritical(nn.Module):
    """The self-critical objective (:mod:`captioner.objectives`' contract): each image's references are its
    captions in the batch; ``figures`` add the samples' mean reward. A module, so that DDP can wrap it and
    average the gradients over the processes (each samples its own share of the images)."""

    def __init__(self, model: CaptionModel, reward: CiderD, vocab: Vocabulary, config: ScstConfig, max_length: int):
        super().__init__()
        self.model = model
        self.reward, self.vocab, self.config, self.max_length = reward, vocab, config, max_length

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor,
                word_targets: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        references: list[list[list[int]]] = [[] for _ in range(len(pixels))]
        for row, image in zip(tokens.tolist(), image_index.tolist()):
            references[image].append(caption_words(row, self.vocab))
        loss, figures = self_critical_loss(self.model, pixels, references, self.reward, self.vocab, self.config,
                                           self.max_length)
        return loss, figures | {"loss": loss.item()}


def training_reward(records: list[ImageRecord], vocab: Vocabulary, max_length: int) -> CiderD:
    """CIDEr-D with the document frequencies of the training references (as the model reads them)."""
    return CiderD([[caption_words(vocab.encode(c, max_length), vocab) for c in r.captions] for r in records])

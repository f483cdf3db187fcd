"""The captioning network: encoder + decoder, built from plain keyword arguments."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from captioner.models.decoder import Decoder
from captioner.models.encoder import Encoder


@dataclass
class TeacherForced:
    """What teacher forcing gives: the next word's logits for each caption, and the logits of each word
    appearing in the image's captions (the word head); the reverse decoder's logits when it was asked."""

    logits: torch.Tensor  # (N, T, V)
    word_logits: torch.Tensor  # (B, V)
    reverse_logits: torch.Tensor | None = None  # (N', T, V): the captions read backwards


class CaptionModel(nn.Module):
    """Encoder and decoder, built from plain keyword arguments (stored in checkpoints)."""

    def __init__(self, vocab_size: int, encoder: dict, decoder: dict):
        super().__init__()
        self.args = {"vocab_size": vocab_size, "encoder": dict(encoder), "decoder": dict(decoder)}
        self.encoder = Encoder(**encoder)
        self.decoder = Decoder(vocab_size, self.encoder.feature_dim, locations=self.encoder.locations, **decoder)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor | None = None,
                reversed_tokens: torch.Tensor | None = None,
                reversed_index: torch.Tensor | None = None) -> TeacherForced:
        """Teacher forcing: images (B, 3, H, W) (or their cached grid features (B, F), see
        :meth:`Encoder.forward`), tokens (N, T) -> word logits (N, T, V), and
        the logits of each word appearing in the image's captions (B, V): the decoder's word head,
        trained by an auxiliary loss as a signal that reaches the encoder directly (Wu et al.,
        2016, "What value do explicit high level concepts have in vision to language problems?").

        ``image_index`` (N,) says which image each caption describes (several captions per
        image: one encoder pass); by default caption i describes image i. With ``reversed_tokens``
        (captions read backwards, :func:`reverse_captions`; ``reversed_index`` says whose, by
        default ``image_index``) a bidirectional decoder's reverse logits come too.
        """
        features = self.encoder(images)  # (B, F)
        outputs = TeacherForced(self.decoder(features, tokens, image_index), self.decoder.word_logits(features))
        if reversed_tokens is not None:
            reversed_index = image_index if reversed_index is None else reversed_index
            outputs.reverse_logits = self.decoder.reverse(features, reversed_tokens, reversed_index)
        return outputs


def reverse_captions(tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """Captions (N, T) as ``<bos> w1 .. wn <eos> <pad>..`` -> ``<bos> wn .. w1 <eos> <pad>..``."""
    words = (tokens != pad).sum(1, keepdim=True) - 2  # (N, 1)
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)  # (N, T)
    inside = (positions >= 1) & (positions <= words)
    return tokens.gather(1, torch.where(inside, words + 1 - positions, positions))

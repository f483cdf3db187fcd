"""Training objectives as parts with one contract, ``forward(pixels, tokens, image_index, word_targets, step)
-> (loss, figures)``: teacher forcing here, self-critical training in :mod:`captioner.scst`.

The loop (:mod:`captioner.training`) runs whichever it is given and knows neither; DDP wraps the
objective, so its gradients are averaged over the processes. A batch is what
:func:`captioner.data.dataset.collate_captions` gives: images (B, 3, S, S) or their cached features,
captions (N, T) as ``<bos> w1 .. wn <eos> <pad>..``, the image of each caption (N,), and which words
each image's captions use (B, V). ``figures["loss"]`` is the number the progress bar shows."""

from __future__ import annotations

import torch
from torch import nn

from captioner.models.model import CaptionModel, reverse_captions


class TeacherForcing(nn.Module):
    """Cross-entropy of each next word given the reference's words before it (Show and Tell), plus
    ``word_loss_weight`` x the word head's loss (which words the image's captions use: Wu et al. 2016, a
    signal that reaches the encoder directly) and, for a bidirectional decoder, the reverse decoder's
    loss on the captions read backwards (``reverse_one_per_image``: one caption of each image a step,
    each in turn, instead of all)."""

    def __init__(self, model: CaptionModel, pad: int, word_loss_weight: float = 1.0,
                 reverse_one_per_image: bool = False):
        super().__init__()
        self.model, self.pad = model, pad
        self.word_loss_weight, self.reverse_one_per_image = word_loss_weight, reverse_one_per_image
        self.loss_fn = nn.CrossEntropyLoss(ignore_index=pad)

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor,
                word_targets: torch.Tensor, step: int) -> tuple[torch.Tensor, dict]:
        backwards = reverse_index = None
        if self.model.decoder.reverse is not None:
            rows = one_caption_per_image(image_index, len(pixels), step) if self.reverse_one_per_image else slice(None)
            backwards, reverse_index = reverse_captions(tokens[rows], self.pad), image_index[rows]
        out = self.model(pixels, tokens[:, :-1], image_index, None if backwards is None else backwards[:, :-1],
                         reverse_index)
        caption_loss = self.loss_fn(out.logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        word_loss = nn.functional.binary_cross_entropy_with_logits(  # summed over the vocabulary, averaged over images
            out.word_logits.float(), word_targets, reduction="sum") / len(pixels)
        loss = caption_loss + self.word_loss_weight * word_loss
        if out.reverse_logits is not None:  # the reverse decoder learns the captions read backwards, as much
            loss = loss + self.loss_fn(out.reverse_logits.flatten(0, 1).float(), backwards[:, 1:].flatten())
        return loss, {"loss": caption_loss.item()}


def one_caption_per_image(image_index: torch.Tensor, images: int, step: int) -> torch.Tensor:
    """Rows of a batch whose rows ``image_index`` assigns to ``images`` images (an image's rows consecutive):
    one per image, each image's captions taken in turn as ``step`` advances. No random numbers: a resumed
    run takes the same rows."""
    counts = torch.bincount(image_index, minlength=images)
    starts = counts.cumsum(0) - counts
    turn = (step + torch.arange(images, device=image_index.device)) % counts.clamp(min=1)
    return (starts + turn)[counts > 0]

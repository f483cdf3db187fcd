"""Soft attention over the encoder's grid cells (Show, Attend and Tell, Xu et al., 2015)."""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Scaled dot-product attention: queries (B, T, H) weigh the locations (B, L, C) into contexts (B, T, C).

    Dot-product rather than additive (Bahdanau et al., 2015) scores: about as accurate, and cheaper
    per training step (benchmarks/README.md, "The demo recipe").
    """

    def __init__(self, location_dim: int, query_dim: int, attention_dim: int):
        super().__init__()
        self.keys = nn.Linear(location_dim, attention_dim)
        self.query = nn.Linear(query_dim, attention_dim, bias=False)

    def forward(self, locations: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor,
                bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """locations (B, L, C), keys (B, L, A) = ``self.keys(locations)``, queries (B, T, H), and a
        bias (B, T, L) added to the scores or None -> contexts (B, T, C) and the weights (B, T, L)."""
        scores = self.query(queries) @ keys.transpose(1, 2) / keys.shape[2] ** 0.5  # (B, T, L)
        if bias is not None:
            scores = scores + bias
        weights = scores.softmax(2)
        return weights @ locations, weights

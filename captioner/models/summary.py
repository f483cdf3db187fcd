"""The image as one vector: how the encoder's grid (B, C x L) becomes what sets the decoder's state,
feeds par-inject and the word head.

- ``mean``: the mean over the grid cells (B, C), as Show, Attend and Tell initialises its state from
  the mean annotation vector (Xu et al., 2015); with a 1x1 grid, Show and Tell's pooled vector.
  Its size is the encoder's channels, whatever the grid.
- ``cells``: each cell projected by one shared linear layer to ``cell_dim``, then flattened
  (B, L x cell_dim): where things are is kept, for a decoder whose state must know it at the start;
  the parameters grow with the cells times ``cell_dim``, not times the channels.
- ``grid``: the grid flattened as it is (B, C x L). Its layers grow with channels x cells (a 7x7 grid of
  ResNet-50: 100,352 features, a word head of 952M parameters at COCO's vocabulary); version-3
  checkpoints were trained this way and load with it.
"""

from __future__ import annotations

import torch
from torch import nn

from captioner.errors import CaptionerError

SUMMARIES = ("mean", "cells", "grid")


class GridSummary(nn.Module):
    """Grid features (B, C x L), channel-major (channel c of cell l at c x L + l) -> one vector (B, dim)."""

    def __init__(self, feature_dim: int, locations: int, kind: str = "mean", cell_dim: int = 32):
        super().__init__()
        if kind not in SUMMARIES:
            raise CaptionerError(f"unknown image summary {kind!r}; choose one of: {', '.join(SUMMARIES)}")
        if kind == "cells" and cell_dim < 1:
            raise CaptionerError(f"model.decoder.cell_dim must be >= 1 for the cells summary, got {cell_dim}")
        self.kind, self.locations = kind, locations
        channels = feature_dim // locations
        self.project = nn.Linear(channels, cell_dim) if kind == "cells" else None
        self.dim = {"mean": channels, "cells": locations * cell_dim, "grid": feature_dim}[kind]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "grid":
            return features  # (B, C * L)
        cells = features.view(features.shape[0], -1, self.locations)  # (B, C, L)
        if self.kind == "mean":
            return cells.mean(2)  # (B, C)
        return self.project(cells.transpose(1, 2)).flatten(1)  # (B, L * cell_dim)

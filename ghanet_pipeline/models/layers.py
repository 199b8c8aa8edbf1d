"""Layers several models share."""

from __future__ import annotations

import torch
from torch import nn


class GatedAttention(nn.Module):
    """CLAM's and MCAT's Attn_Net_Gated: tanh and sigmoid branches (dropout 0.25 on each when
    asked), their product -> one score per patch (N x 1, before the softmax)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.b = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.c = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.c(self.a(h) * self.b(h))

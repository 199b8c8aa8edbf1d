"""ABMIL, the standard slide-only baseline."""

from __future__ import annotations

import torch
from torch import nn

from .survival import check_bag, survival_outputs


class ABMIL(nn.Module):
    """Baseline, slides only: gated-attention MIL (Ilse et al. 2018) as in MCAT's AttnMIL."""

    def __init__(self, in_dim: int = 1024, dim: int = 512, n_bins: int = 4, dropout: float = 0.25):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.att_a = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Dropout(dropout))
        self.att_b = nn.Sequential(nn.Linear(dim, dim // 2), nn.Sigmoid(), nn.Dropout(dropout))
        self.att_c = nn.Linear(dim // 2, 1)
        self.rho = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(dim // 2, n_bins)

    def forward(self, x: torch.Tensor) -> dict:
        check_bag(x)
        h = self.embed(x)
        a = self.att_c(self.att_a(h) * self.att_b(h)).T.softmax(dim=-1)  # 1 x N
        out = survival_outputs(self.classifier(self.rho(a @ h)))
        out["morphology_attention"] = a
        return out

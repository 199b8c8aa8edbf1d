"""Deep Sets: sum pooling, as MCAT's MIL_Sum_FC_surv."""

from __future__ import annotations

import torch
from torch import nn

from .survival import check_bag, survival_outputs


class DeepSets(nn.Module):
    """Deep Sets (Zaheer et al. 2017) as MCAT's survival baseline MIL_Sum_FC_surv
    (github.com/mahmoodlab/MCAT, models/model_set_mil.py), slides only: phi (Linear+ReLU+Dropout to
    `dim`) summed over patches, rho (Linear+ReLU+Dropout to dim/2) -> logits."""

    def __init__(self, in_dim: int, dim: int = 512, n_bins: int = 4, dropout: float = 0.25):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.rho = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(dim // 2, n_bins)

    def forward(self, x: torch.Tensor) -> dict:
        check_bag(x)
        return survival_outputs(self.classifier(self.rho(self.phi(x).sum(dim=0, keepdim=True))))

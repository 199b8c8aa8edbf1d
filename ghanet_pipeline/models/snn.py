"""The genomics-only baselines: our SNN on the fold's selected features, and MCAT's SNN on every
omic column (Klambauer et al., NeurIPS 2017, self-normalising networks)."""

from __future__ import annotations

import torch
from torch import nn

from .survival import survival_outputs


def snn_block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """MCAT's SNN_Block: Linear, ELU, AlphaDropout."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ELU(), nn.AlphaDropout(dropout))


def _lecun_init(module: nn.Module) -> None:
    """MCAT's init_max_weights: N(0, 1/sqrt(fan_in)) weights, zero biases, on every Linear."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, m.in_features ** -0.5)
            nn.init.zeros_(m.bias)


class SNN(nn.Module):
    """Baseline, genomics only: a two-layer self-normalising network (Klambauer et al. 2017) on the
    fold's selected features; MCAT's SNN baseline has the same blocks but takes all omics."""

    def __init__(self, in_dim: int, dim: int = 256, n_bins: int = 4, dropout: float = 0.25):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.ELU(), nn.AlphaDropout(dropout),
                                 nn.Linear(dim, dim), nn.ELU(), nn.AlphaDropout(dropout))
        self.classifier = nn.Linear(dim, n_bins)
        _lecun_init(self)  # LeCun-normal init keeps the activations self-normalising

    def forward(self, omics: torch.Tensor) -> dict:
        return survival_outputs(self.classifier(self.net(omics.view(1, -1))))


class SNNMCAT(nn.Module):
    """MCAT's genomic baseline SNN (models/model_genomic.py, "small"): every omic feature of the
    table (standardised on the fold's training patients, as MCAT's dataset does), four SNN blocks of
    256 with alpha-dropout 0.25, LeCun-normal weights -> logits. Ours (`snn`) differs: two blocks
    on the fold's selected features only."""

    def __init__(self, in_dim: int, n_bins: int = 4, dropout: float = 0.25):
        super().__init__()
        widths = [in_dim, 256, 256, 256, 256]
        self.net = nn.Sequential(*(snn_block(a, b, dropout) for a, b in zip(widths, widths[1:])))
        self.classifier = nn.Linear(256, n_bins)
        _lecun_init(self)

    def forward(self, omics: torch.Tensor) -> dict:
        return survival_outputs(self.classifier(self.net(omics.view(1, -1))))

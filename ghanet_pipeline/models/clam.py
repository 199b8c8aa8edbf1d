"""CLAM-SB: CLAM's single-branch gated attention pooling."""

from __future__ import annotations

import torch
from torch import nn

from .layers import GatedAttention
from .survival import check_bag, survival_outputs


class CLAMSB(nn.Module):
    """CLAM-SB (Lu et al., Nat. Biomed. Eng. 2021; github.com/mahmoodlab/CLAM, models/model_clam.py),
    "small" with dropout: Linear+ReLU+Dropout to `dim`, gated attention (dim -> dim/2 -> 1), the
    attention-pooled bag -> logits. Its instance loss is left out: CLAM trains instance classifiers
    on pseudo-labels, the top-k attended patches positive and the bottom-k negative *for the bag's
    class* (and, when subtyping, negative for the other classes). A survival bag has a time and a
    censoring flag, not a class, so that loss has no target here; a time bin used as a class would
    be a model of our own, not CLAM's."""

    def __init__(self, in_dim: int, dim: int = 512, n_bins: int = 4, dropout: float = 0.25):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(dim, dim // 2, dropout)
        self.classifier = nn.Linear(dim, n_bins)

    def forward(self, x: torch.Tensor) -> dict:
        check_bag(x)
        h = self.fc(x)
        a = self.attention(h).T.softmax(dim=-1)  # 1 x N
        out = survival_outputs(self.classifier(a @ h))
        out["morphology_attention"] = a
        return out

"""DSMIL: dual-stream multiple-instance learning."""

from __future__ import annotations

import math

import torch
from torch import nn

from .survival import check_bag, survival_outputs


class DSMIL(nn.Module):
    """DSMIL (Li et al., CVPR 2021; github.com/binli123/dsmil-wsi, dsmil.py with train_tcga.py's
    defaults for precomputed features): an instance classifier (one Linear to n_bins logits per
    patch) and the bag classifier: per output, the highest-scoring (critical) patch is the query;
    every patch's attention is softmax(q_i . q_crit / sqrt(128)) over patches with q a two-layer
    ReLU/Tanh projection to 128; the attention-pooled features (values = the features themselves)
    -> a Conv1d over the feature axis, one logit per output. Survival: the outputs are the time bins;
    the loss is 0.5 NLL(bag logits) + 0.5 NLL(max-pooled instance logits), as DSMIL averages its
    bag and max-pooling losses; the risk is the bag prediction's (train_tcga.py's default)."""

    def __init__(self, in_dim: int, n_bins: int = 4):
        super().__init__()
        self.instance = nn.Linear(in_dim, n_bins)
        self.q = nn.Sequential(nn.Linear(in_dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.Tanh())
        self.fcc = nn.Conv1d(n_bins, n_bins, kernel_size=in_dim)

    def forward(self, x: torch.Tensor) -> dict:
        check_bag(x)
        c = self.instance(x)  # N x C
        q = self.q(x)  # N x 128
        q_crit = self.q(x[c.argmax(dim=0)])  # C x 128: each output's critical patch
        a = ((q @ q_crit.T) / math.sqrt(q.shape[1])).softmax(dim=0)  # N x C
        b = a.T @ x  # C x D
        out = survival_outputs(self.fcc(b.unsqueeze(0)).view(1, -1))
        out["max_logits"] = c.max(dim=0).values.view(1, -1)
        out["morphology_attention"] = a.mean(dim=1).view(1, -1)  # each column sums to 1, so does the mean
        return out

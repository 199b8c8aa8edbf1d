"""TransMIL: a transformer over the patches."""

from __future__ import annotations

import math

import torch
from torch import nn

from .survival import check_bag, survival_outputs


class TransMIL(nn.Module):
    """TransMIL (Shao et al., NeurIPS 2021; github.com/szc19990412/TransMIL, models/TransMIL.py):
    Linear+ReLU to `dim`, the sequence squared up by repeating its first patches, a class token, a
    Nystrom transformer layer, the PPEG (7/5/3 depthwise convolutions on the square grid), a second
    layer, LayerNorm, the class token -> logits. The attention layers are `nystrom_attention`'s
    NystromAttention, which the official code imports, with its settings (dim/8 per head, 8 heads,
    dim/2 landmarks, 6 pseudo-inverse iterations, residual value convolution, dropout 0.1)."""

    def __init__(self, in_dim: int, dim: int = 512, n_bins: int = 4):
        super().__init__()
        from nystrom_attention import NystromAttention

        self.fc1 = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1, self.attn2 = (
            NystromAttention(dim=dim, dim_head=dim // 8, heads=8, num_landmarks=dim // 2, pinv_iterations=6,
                             residual=True, dropout=0.1) for _ in range(2))
        self.ppeg = nn.ModuleList(nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim) for k in (7, 5, 3))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, n_bins)

    def forward(self, x: torch.Tensor) -> dict:
        check_bag(x)
        h = self.fc1(x).unsqueeze(0)  # 1 x N x dim
        n = h.shape[1]
        side = math.ceil(math.sqrt(n))
        h = torch.cat([h, h[:, : side * side - n]], dim=1)  # squared: the first patches again
        h = torch.cat([self.cls_token, h], dim=1)
        h = h + self.attn1(self.norm1(h))
        cls, grid = h[:, :1], h[:, 1:].transpose(1, 2).reshape(1, -1, side, side)
        grid = grid + sum(conv(grid) for conv in self.ppeg)
        h = torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)
        h = h + self.attn2(self.norm2(h))
        return survival_outputs(self.classifier(self.norm(h)[:, 0]))

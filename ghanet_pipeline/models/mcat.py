"""MCAT: genomic-guided co-attention of the slide and the six gene families."""

from __future__ import annotations

import torch
from torch import nn

from .layers import GatedAttention
from .snn import snn_block
from .survival import check_bag, survival_outputs


class MCAT(nn.Module):
    """MCAT (Chen et al., ICCV 2021; github.com/mahmoodlab/MCAT, models/model_coattn.py,
    MCAT_Surv "small", concat fusion): the bag -> Linear+ReLU+Dropout to dim/2; each of the six gene
    families' features (all of the family's omic columns, standardised) -> two SNN blocks of
    dim/2; genomic-guided co-attention (one head: the families query the patches); each side a
    two-layer transformer encoder (8 heads, feed-forward 2 x width, ReLU) and gated-attention
    pooling, rho; concatenated -> two Linear+ReLU -> logits. Needs omics at inference."""

    def __init__(self, in_dim: int, family_sizes: list[int], dim: int = 512, n_bins: int = 4,
                 dropout: float = 0.25):
        super().__init__()
        w = dim // 2
        self.wsi_net = nn.Sequential(nn.Linear(in_dim, w), nn.ReLU(), nn.Dropout(0.25))
        self.sig_networks = nn.ModuleList(nn.Sequential(snn_block(d, w, 0.25), snn_block(w, w, 0.25))
                                          for d in family_sizes)
        self.coattn = nn.MultiheadAttention(w, num_heads=1)

        def encoder():
            layer = nn.TransformerEncoderLayer(w, nhead=8, dim_feedforward=2 * w, dropout=dropout,
                                               activation="relu")
            return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

        self.path_transformer, self.omic_transformer = encoder(), encoder()
        self.path_attention, self.omic_attention = GatedAttention(w, w, dropout), GatedAttention(w, w, dropout)
        self.path_rho = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Dropout(dropout))
        self.omic_rho = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Dropout(dropout))
        self.mm = nn.Sequential(nn.Linear(2 * w, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU())
        self.classifier = nn.Linear(w, n_bins)

    def forward(self, x: torch.Tensor, families: list[torch.Tensor]) -> dict:
        check_bag(x)
        h_path = self.wsi_net(x).unsqueeze(1)  # N x 1 x w (sequence-first, as MCAT)
        h_omic = torch.stack([net(f.view(-1)) for net, f in zip(self.sig_networks, families)]).unsqueeze(1)
        co, a_co = self.coattn(h_omic, h_path, h_path)  # 6 x 1 x w; 1 x 6 x N
        pooled = []
        for seq, transformer, attention, rho in (
                (co, self.path_transformer, self.path_attention, self.path_rho),
                (h_omic, self.omic_transformer, self.omic_attention, self.omic_rho)):
            t = transformer(seq).squeeze(1)  # 6 x w
            pooled.append(rho(attention(t).T.softmax(dim=-1) @ t))
        out = survival_outputs(self.classifier(self.mm(torch.cat(pooled, dim=1))))
        out["coattention"] = a_co[0]  # 6 x N, each family's weights over the patches
        return out

"""DeepAttnMISL: phenotype clusters and attention over them, as MCAT's MIL_Cluster_FC_surv."""

from __future__ import annotations

import torch
from torch import nn

from .layers import GatedAttention
from .survival import check_bag, survival_outputs


class DeepAttnMISL(nn.Module):
    """DeepAttnMISL (Yao et al., MedIA 2020) as MCAT's MIL_Cluster_FC_surv (models/model_set_mil.py),
    slides only: the patches of each of 10 phenotype clusters pass that cluster's two-layer
    network (Linear+ReLU+Dropout twice, to `dim`) and are mean-pooled (an empty cluster gives zeros);
    gated attention over the clusters (after Linear+ReLU+Dropout), rho (to dim/2) -> logits.
    The phenotypes: MCAT reads each patch's cluster from a file it does not publish
    (fast_cluster_ids.pkl). Here they are k-means centroids of the fold's training patches
    (`fit_phenotypes`, before training), each patch going to its nearest centroid; as a buffer the
    centroids travel with the weights, so cluster k is the same phenotype for every patient, the
    training ones and new ones, which its per-cluster networks assume."""

    def __init__(self, in_dim: int, dim: int = 512, n_bins: int = 4, dropout: float = 0.25,
                 n_clusters: int = 10):
        super().__init__()
        self.n_clusters, self.dim = n_clusters, dim
        self.register_buffer("centroids", torch.zeros(n_clusters, in_dim))
        self.phis = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout)) for _ in range(n_clusters))
        self.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(dim, dim // 2, dropout)
        self.rho = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(dim // 2, n_bins)

    def fit_phenotypes(self, patches: torch.Tensor, seed: int) -> None:
        """K-means (scikit-learn, seeded) of training patches into the phenotype centroids."""
        from sklearn.cluster import KMeans

        x = patches.detach().float().cpu().numpy()
        k = min(self.n_clusters, len(x))
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
        c = torch.as_tensor(km.cluster_centers_, dtype=self.centroids.dtype)
        # fewer distinct patches than clusters: the spare centroids repeat the first (never nearest)
        self.centroids.copy_(torch.cat([c, c[:1].expand(self.n_clusters - k, -1)]))

    def clusters(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, self.centroids.to(x.dtype)).argmin(dim=1)

    def forward(self, x: torch.Tensor) -> dict:
        check_bag(x)
        clusters = self.clusters(x)
        pooled = [self.phis[k](x[clusters == k]).mean(dim=0) if bool((clusters == k).any())
                  else x.new_zeros(self.dim) for k in range(self.n_clusters)]
        h = self.fc(torch.stack(pooled))  # K x dim
        a = self.attention(h).T.softmax(dim=-1)  # 1 x K
        out = survival_outputs(self.classifier(self.rho(a @ h)))
        # a patch's share: its cluster's weight split evenly over the cluster's patches
        sizes = torch.bincount(clusters, minlength=self.n_clusters).clamp(min=1).to(a.dtype)
        out["morphology_attention"] = (a[0] / sizes)[clusters].view(1, -1)
        out["cluster_attention"] = a
        return out

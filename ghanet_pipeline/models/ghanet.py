"""G-HANet (Genome-informed Hyper-Attention Network), written from the specification in the
project's reference notes (shapes, defaults and the official code's behaviour), not from its code.

Forward input: one patient's patch features (N x in_dim; all slides concatenated). Genomics are
never an input: they are only reconstruction targets in the loss, so slide-only inference is the
same forward pass.

  CAB  (cross-modal associating branch): six learnable gene-family tokens attend over the patches
       twice; the result R (6 x d) is decoded into each family's selected omic features.
  HSB  (hyper-attention survival branch): hyperedges mix a gated-attention morphology weighting
       (E1) with the CAB's top-k genome-informed weighting (E2, no gradient); the six hyperedge
       features are fused with R, pass one transformer layer, and give n_bins hazards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .survival import check_bag, nll_survival_loss, survival_outputs


class CrossAttention(nn.Module):
    """Queries attend over a context; returns the output and the pre-softmax logits (H x Q x N)."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.scale = heads, head_dim, head_dim ** -0.5
        self.q = nn.Linear(dim, inner, bias=False)
        self.k = nn.Linear(dim, inner, bias=False)
        self.v = nn.Linear(dim, inner, bias=False)
        self.out = nn.Linear(inner, dim)
        self.drop = nn.Dropout(dropout)

    def keys_values(self, context: torch.Tensor):
        h, d = self.heads, self.head_dim
        k = self.k(context).view(-1, h, d).transpose(0, 1)  # H x N x d
        v = self.v(context).view(-1, h, d).transpose(0, 1)
        return k, v

    def forward(self, queries: torch.Tensor, context: torch.Tensor | None = None, kv=None):
        """`kv` from `keys_values(context)` may be passed instead of the context: with shared
        attention both CAB blocks attend over the same keys and values, computed once."""
        h, d = self.heads, self.head_dim
        q = self.q(queries).view(-1, h, d).transpose(0, 1)  # H x Q x d
        k, v = kv if kv is not None else self.keys_values(context)
        logits = (q @ k.transpose(1, 2)) * self.scale  # H x Q x N
        attn = self.drop(logits.softmax(dim=-1))
        out = (attn @ v).transpose(0, 1).reshape(queries.shape[0], h * d)
        return self.out(out), logits


class GEGLUFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        self.up = nn.Linear(dim, dim * mult * 2)
        self.down = nn.Linear(dim * mult, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        a, b = self.up(x).chunk(2, dim=-1)
        return self.drop(self.down(a * F.gelu(b)))


class GHANet(nn.Module):
    def __init__(self, family_dims: list[int], in_dim: int = 1024, dim: int = 512, heads: int = 4,
                 head_dim: int = 128, n_bins: int = 4, topk_ratio: float = 0.2, dropout: float = 0.25,
                 share_attention: bool = True):
        super().__init__()
        if any(d < 1 for d in family_dims):
            raise ValueError(f"every gene family needs at least one target feature, got {family_dims}")
        n_tokens = len(family_dims)
        self.topk_ratio, self.n_bins, self.share_attention = topk_ratio, n_bins, share_attention
        # --- CAB
        self.cab_embed = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.tokens = nn.Parameter(torch.randn(n_tokens, dim))
        self.ln_q1, self.ln_ctx1 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ca1 = CrossAttention(dim, heads, head_dim, dropout)
        self.ln_ff1, self.ff1 = nn.LayerNorm(dim), GEGLUFeedForward(dim, 4, dropout)
        self.ln_q2 = nn.LayerNorm(dim)
        # the official code reuses block 1's attention and context norm in block 2
        self.ca2 = self.ca1 if share_attention else CrossAttention(dim, heads, head_dim, dropout)
        self.ln_ctx2 = self.ln_ctx1 if share_attention else nn.LayerNorm(dim)
        self.ln_ff2, self.ff2 = nn.LayerNorm(dim), GEGLUFeedForward(dim, 4, dropout)
        self.ln_r = nn.LayerNorm(dim)
        self.heads_out = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ELU(), nn.Dropout(dropout),
                          nn.Linear(dim, d))
            for d in family_dims
        )
        # --- HSB
        self.hsb_embed = nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Dropout(dropout))
        self.att_a = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh())
        self.att_b = nn.Sequential(nn.Linear(dim, dim // 2), nn.Sigmoid())
        self.att_c = nn.Linear(dim // 2, 1)
        self.hyper = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU(),
                                   nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU())
        self.mhsa = CrossAttention(dim, heads, head_dim, dropout)
        self.ln_ff3, self.ff3 = nn.LayerNorm(dim), GEGLUFeedForward(dim, 4, dropout)
        self.compress = nn.Sequential(nn.Linear(dim, dim // 2), nn.LayerNorm(dim // 2), nn.ReLU(),
                                      nn.Dropout(dropout))
        self.classifier = nn.Linear(n_tokens * dim // 2, n_bins)

    def forward(self, x: torch.Tensor) -> dict:
        """x: N x in_dim features of one patient. Returns hazards, survival, risk, the per-family
        reconstructions and the attention maps (morphology 1 x N, per-family 6 x N)."""
        check_bag(x)
        # CAB
        hc = self.cab_embed(x)
        kv1 = self.ca1.keys_values(self.ln_ctx1(hc))  # the N-sized work of the CAB
        kv2 = kv1 if self.share_attention else self.ca2.keys_values(self.ln_ctx2(hc))
        r, _ = self.ca1(self.ln_q1(self.tokens), kv=kv1)
        r = self.ff1(self.ln_ff1(r)) + r
        r2, logits = self.ca2(self.ln_q2(self.tokens + r), kv=kv2)
        r = self.ln_r(self.ff2(self.ln_ff2(r2)) + r2)
        recon = [head(r_i) for head, r_i in zip(self.heads_out, r)]
        # HSB
        h = self.hsb_embed(x)
        e1 = self.att_c(self.att_a(h) * self.att_b(h)).T.softmax(dim=-1)  # 1 x N
        m = logits.detach().mean(dim=0)  # 6 x N, gradient stopped
        k = max(1, int(self.topk_ratio * m.shape[1]))  # the official int(0.2 N) is 0 for N < 5
        top = m.topk(k, dim=1).indices
        masked = torch.full_like(m, float("-inf")).scatter(1, top, m.gather(1, top))
        e2 = masked.softmax(dim=-1)
        g = (e1 + e2) / 2  # 6 x N hyperedges
        xh = g @ h
        y = self.hyper(xh) + xh
        f = (y + r) / 2
        f = self.mhsa(f, f)[0] + f
        f = self.ff3(self.ln_ff3(f)) + f
        out = survival_outputs(self.classifier(self.compress(f).reshape(1, -1)))
        out.update(reconstructions=recon, morphology_attention=e1, family_attention=e2, family_logits=m)
        return out


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - cos(pred, target))^3 + MSE(pred, target) for one gene family."""
    cos = F.cosine_similarity(pred.view(1, -1), target.view(1, -1), dim=1, eps=1e-8)
    return (1 - cos).pow(3).sum() + F.mse_loss(pred.view(-1), target.view(-1))


def ghanet_loss(out: dict, y, c, targets: list[torch.Tensor], recon_weight: float = 0.3) -> tuple:
    surv = nll_survival_loss(out["hazards"], out["survival"], y, c)
    recon = [reconstruction_loss(p, t) for p, t in zip(out["reconstructions"], targets)]
    return surv + recon_weight * torch.stack(recon).sum(), surv, recon

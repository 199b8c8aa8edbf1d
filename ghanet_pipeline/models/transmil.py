"""TransMIL: a transformer over the patches."""

from __future__ import annotations

import math

import torch
from nystrom_attention import NystromAttention as _PackageNystrom
from torch import nn

from .survival import check_bag, survival_outputs


class NystromAttention(_PackageNystrom):
    """`nystrom_attention.NystromAttention` (the module TransMIL's official code imports: the same
    parameters, settings and operations, dropout included), computed faster where the padding
    allows, with the same result up to float rounding (tests/test_models.py holds it against the
    package, outputs and gradients).

    The package pads the sequence at the front with zero rows to a multiple of the landmarks and
    averages every `l` tokens into a landmark; a landmark made only of padding is a zero vector, so
    the landmark attention `attn2` has identical rows and identical columns for those landmarks.
    Matrices of that shape ([[a I + b J, 1 c'], [d 1', A]] on the padding and real blocks) are
    closed under products, so the 6 Moore-Penrose iterations run on (r + 1) x (r + 1) matrices, r
    the landmarks that see a real token, instead of m x m: a bag of 60 patches (256 landmarks, 65
    real) costs ~1/60 of the package's pseudo-inverse; a bag of thousands, little less. And only
    the rows the layer returns (the real tokens) are multiplied through the inverse."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, m, iters = self.heads, self.num_landmarks, self.pinv_iterations
        pad = -n % m
        x = nn.functional.pad(x, (0, 0, pad, 0), value=0)
        q, k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        q = q * self.scale
        l = math.ceil(n / m)
        q_l = q.unflatten(2, (m, l)).sum(dim=3) / l
        k_l = k.unflatten(2, (m, l)).sum(dim=3) / l
        attn1 = (q[:, :, -n:] @ k_l.transpose(-1, -2)).softmax(dim=-1)  # only the rows the layer returns
        attn2 = (q_l @ k_l.transpose(-1, -2)).softmax(dim=-1)
        attn3 = (q_l @ k.transpose(-1, -2)).softmax(dim=-1)
        attn2_inv = _pinv(attn2, iters, zero_landmarks=pad // l)
        out = (attn1 @ attn2_inv) @ (attn3 @ v)
        out = nn.functional.pad(out, (0, 0, pad, 0))  # the padding's rows, dropped below, as the package's
        out = out + self.res_conv(v)
        out = self.to_out(out.transpose(1, 2).flatten(2))  # its dropout draws for every row, as the package's
        return out[:, -n:]


def _pinv(x: torch.Tensor, iters: int, zero_landmarks: int) -> torch.Tensor:
    """The package's `moore_penrose_iter_pinv(x, iters)`; where the first `zero_landmarks` (>= 2)
    landmarks are padding, on the compressed matrices (see NystromAttention)."""
    from nystrom_attention.nystrom_attention import moore_penrose_iter_pinv

    z = zero_landmarks
    if z < 2:
        return moore_penrose_iter_pinv(x, iters)
    # compressed: K = [[a + z b, z c'], [d, A]] and the scalar a; a product of two is (K1 K2, a1 a2)
    alpha = x[..., 0, 0] - x[..., 0, 1]
    beta = x[..., 0, 1]
    c, d, a_blk = x[..., 0, z:], x[..., z:, 0], x[..., z:, z:]
    top = torch.cat([(alpha + z * beta)[..., None], z * c], dim=-1)
    kx = torch.cat([top[..., None, :], torch.cat([d[..., None], a_blk], dim=-1)], dim=-2)
    # the package's scale: the largest absolute row sum times the largest absolute column sum
    pad_line = (alpha + beta).abs() + (z - 1) * beta.abs()
    row_sums = torch.cat([(pad_line + c.abs().sum(-1))[..., None], z * d.abs() + a_blk.abs().sum(-1)], dim=-1)
    col_sums = torch.cat([(pad_line + d.abs().sum(-1))[..., None], z * c.abs() + a_blk.abs().sum(-2)], dim=-1)
    scale = torch.max(row_sums) * torch.max(col_sums)
    kz = _transposed(kx, z) / scale
    az = alpha / scale
    eye = torch.eye(kx.shape[-1], dtype=x.dtype, device=x.device)
    for _ in range(iters):
        xz, axz = kx @ kz, alpha * az
        kz = 0.25 * kz @ (13 * eye - (xz @ (15 * eye - (xz @ (7 * eye - xz)))))
        az = 0.25 * az * (13 - axz * (15 - axz * (7 - axz)))
    return _expanded(kz, az, z)


def _transposed(k: torch.Tensor, z: int) -> torch.Tensor:
    """The compressed K of M' from M's: c and d swap (z c' on top, d below)."""
    top = torch.cat([k[..., :1, :1], z * k[..., 1:, 0].unsqueeze(-2)], dim=-1)
    rest = torch.cat([(k[..., 0, 1:] / z).unsqueeze(-1), k[..., 1:, 1:].transpose(-1, -2)], dim=-1)
    return torch.cat([top, rest], dim=-2)


def _expanded(k: torch.Tensor, a: torch.Tensor, z: int) -> torch.Tensor:
    """The m x m matrix of a compressed (K, a) with z padding landmarks."""
    r = k.shape[-1] - 1
    beta = (k[..., 0, 0] - a) / z
    pad_block = beta[..., None, None].expand(*beta.shape, z, z) + a[..., None, None] * torch.eye(
        z, dtype=k.dtype, device=k.device)
    top = torch.cat([pad_block, (k[..., 0, 1:] / z).unsqueeze(-2).expand(*k.shape[:-2], z, r)], dim=-1)
    bottom = torch.cat([k[..., 1:, :1].expand(*k.shape[:-2], r, z), k[..., 1:, 1:]], dim=-1)
    return torch.cat([top, bottom], dim=-2)


class TransMIL(nn.Module):
    """TransMIL (Shao et al., NeurIPS 2021; github.com/szc19990412/TransMIL, models/TransMIL.py):
    Linear+ReLU to `dim`, the sequence squared up by repeating its first patches, a class token, a
    Nystrom transformer layer, the PPEG (7/5/3 depthwise convolutions on the square grid), a second
    layer, LayerNorm, the class token -> logits. The attention layers are `nystrom_attention`'s
    NystromAttention, which the official code imports, with its settings (dim/8 per head, 8 heads,
    dim/2 landmarks, 6 pseudo-inverse iterations, residual value convolution, dropout 0.1), computed
    as above."""

    def __init__(self, in_dim: int, dim: int = 512, n_bins: int = 4):
        super().__init__()
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

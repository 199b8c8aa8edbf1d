"""What every model here shares: n_bins logits -> hazards, survival and risk, the discrete-time
survival loss (MCAT's NLLSurvLoss) and the check of a bag of patch features."""

from __future__ import annotations

import torch


def check_bag(x: torch.Tensor) -> None:
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty N x D bag of patch features, got {tuple(x.shape)}")


def survival_outputs(logits: torch.Tensor) -> dict:
    hazards = torch.sigmoid(logits)
    surv = torch.cumprod(1 - hazards, dim=1)
    return {"logits": logits, "hazards": hazards, "survival": surv, "risk": -surv.sum(dim=1)}


def nll_survival_loss(hazards: torch.Tensor, survival: torch.Tensor, y: torch.Tensor, c: torch.Tensor,
                      alpha: float = 0.0, eps: float = 1e-7) -> torch.Tensor:
    """Discrete-time negative log-likelihood (MCAT's NLLSurvLoss). y: bin index, c: 1 = censored.

    An event in bin y contributes -log S(y-1) - log h(y); a patient censored in bin y contributes
    -log S(y) (S(-1) = 1).
    """
    y = y.view(-1, 1).long()
    c = c.view(-1, 1).float()
    s_pad = torch.cat([torch.ones_like(c), survival], dim=1)
    uncensored = -(1 - c) * (torch.log(s_pad.gather(1, y).clamp(min=eps))
                             + torch.log(hazards.gather(1, y).clamp(min=eps)))
    censored = -c * torch.log(s_pad.gather(1, y + 1).clamp(min=eps))
    loss = (1 - alpha) * (censored + uncensored) + alpha * uncensored
    return loss.mean()

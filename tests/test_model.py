import math

import numpy as np
import pytest
import torch

from ghanet_pipeline.models.ghanet import GHANet, ghanet_loss, reconstruction_loss
from ghanet_pipeline.models.survival import nll_survival_loss


def test_nll_matches_a_brute_force_likelihood():
    h = [0.1, 0.3, 0.5, 0.6]
    hazards = torch.tensor([h], dtype=torch.float64)
    surv = torch.cumprod(1 - hazards, dim=1)
    for y in range(4):
        # event in bin y: survive bins 0..y-1, then the event in y
        p_event = h[y] * math.prod(1 - h[j] for j in range(y))
        got = nll_survival_loss(hazards, surv, torch.tensor([y]), torch.tensor([0]))
        assert got.item() == pytest.approx(-math.log(p_event), rel=1e-12)
        # censored in bin y: known to survive bins 0..y
        p_cens = math.prod(1 - h[j] for j in range(y + 1))
        got = nll_survival_loss(hazards, surv, torch.tensor([y]), torch.tensor([1]))
        assert got.item() == pytest.approx(-math.log(p_cens), rel=1e-12)
    # a batch is the mean over patients; probabilities are clamped at 1e-7
    both = nll_survival_loss(hazards.repeat(2, 1), surv.repeat(2, 1), torch.tensor([1, 2]), torch.tensor([0, 1]))
    one = nll_survival_loss(hazards, surv, torch.tensor([1]), torch.tensor([0]))
    two = nll_survival_loss(hazards, surv, torch.tensor([2]), torch.tensor([1]))
    assert both.item() == pytest.approx((one.item() + two.item()) / 2)
    zero = torch.zeros(1, 4, dtype=torch.float64)
    assert nll_survival_loss(zero, torch.ones_like(zero), torch.tensor([0]), torch.tensor([0])).item() == pytest.approx(-math.log(1e-7))


def test_reconstruction_term_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=7), rng.normal(size=7)
    cos = p @ t / np.linalg.norm(p) / np.linalg.norm(t)
    expected = (1 - cos) ** 3 + np.mean((p - t) ** 2)
    got = reconstruction_loss(torch.tensor(p), torch.tensor(t)).item()
    assert got == pytest.approx(expected, rel=1e-10)
    assert reconstruction_loss(torch.tensor(t), torch.tensor(t)).item() == pytest.approx(0, abs=1e-12)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return GHANet([3, 5, 1, 4, 2, 6], in_dim=64, dim=32, heads=4, head_dim=8, **kw)


def test_forward_shapes_and_outputs():
    m = _model().eval()
    out = m(torch.randn(37, 64))
    assert out["hazards"].shape == (1, 4) and out["survival"].shape == (1, 4)
    assert [r.shape[0] for r in out["reconstructions"]] == [3, 5, 1, 4, 2, 6]
    assert out["morphology_attention"].shape == (1, 37) and out["family_attention"].shape == (6, 37)
    assert torch.allclose(out["family_attention"].sum(1), torch.ones(6))
    # top-k keeps 20 % of the patches per family (int(0.2 * 37) = 7)
    assert ((out["family_attention"] > 0).sum(1) == 7).all()
    s = out["survival"][0]
    assert (s[1:] <= s[:-1]).all() and out["risk"].item() == pytest.approx(-s.sum().item())


@pytest.mark.parametrize("n", [1, 2, 4])
def test_tiny_bags_keep_at_least_one_patch(n):
    out = _model().eval()(torch.randn(n, 64))
    assert ((out["family_attention"] > 0).sum(1) == 1).all() and torch.isfinite(out["risk"]).all()


def test_no_zero_width_heads():
    with pytest.raises(ValueError, match="at least one target"):
        GHANet([3, 0, 2, 2, 2, 2], in_dim=64, dim=32)


def test_genome_informed_weights_carry_no_gradient_but_the_cab_trains():
    m = _model().train()
    out = m(torch.randn(20, 64))
    targets = [torch.randn(d) for d in [3, 5, 1, 4, 2, 6]]
    loss, surv, recon = ghanet_loss(out, torch.tensor([1]), torch.tensor([0]), targets)
    assert not out["family_attention"].requires_grad
    loss.backward()
    # the fusion F = (Y + R) / 2 lets the survival loss reach the CAB
    m.zero_grad()
    out = m(torch.randn(20, 64))
    nll_survival_loss(out["hazards"], out["survival"], torch.tensor([1]), torch.tensor([0])).backward()
    assert m.tokens.grad is not None and m.tokens.grad.abs().sum() > 0


def test_attention_sharing_switch():
    shared, separate = _model(), _model(share_attention=False)
    assert shared.ca2 is shared.ca1 and separate.ca2 is not separate.ca1
    n_shared = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in separate.parameters()) > n_shared


def test_deterministic_on_cpu_for_a_seed():
    x = torch.randn(50, 64)
    a = _model(seed=3).train()
    b = _model(seed=3).train()
    torch.manual_seed(1)
    ra = a(x)["risk"]
    torch.manual_seed(1)
    rb = b(x)["risk"]
    assert torch.equal(ra, rb)

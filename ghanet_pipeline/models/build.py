"""How each registry entry is built and what loss it trains with: the one place that maps an
entry's name to its network (each in a file of its own here, written from its paper and its
official code, read, not copied) and its loss. Sizes follow each source at its defaults
("small"), with `dim` standing for the 512-wide layer (model.hidden_dim, 512 by default) so that one
key sizes every slide model as it sizes ABMIL. Where a source cannot be followed for a survival bag,
its class says what was done instead."""

from __future__ import annotations

from torch import nn

from . import registry
from .abmil import ABMIL
from .clam import CLAMSB
from .deepattnmisl import DeepAttnMISL
from .deepsets import DeepSets
from .dsmil import DSMIL
from .ghanet import GHANet, ghanet_loss
from .mcat import MCAT
from .snn import SNN, SNNMCAT
from .survival import nll_survival_loss, survival_outputs
from .transmil import TransMIL


def _ghanet(mp: dict, d: registry.Dims):
    # without omics (ghanet_norecon on a survival-only cohort) the six family heads are never
    # trained or read; one output each keeps the network otherwise the same
    return GHANet(list(d.family_dims) or [1] * 6, in_dim=d.in_dim, dim=mp["hidden_dim"], heads=mp["heads"],
                  head_dim=mp["head_dim"], n_bins=d.n_bins, topk_ratio=mp["topk_ratio"],
                  dropout=mp["dropout"], share_attention=mp["share_attention"])


def _build(cls, *, sized: bool = True, dropout: bool = True):
    def build(mp: dict, d: registry.Dims):
        kw = {"dim": mp["hidden_dim"]} if sized else {}
        if dropout:
            kw["dropout"] = mp["dropout"]
        return cls(d.in_dim, n_bins=d.n_bins, **kw)
    return build


def _snn(mp: dict, d: registry.Dims):
    return SNN(d.omic_dim, n_bins=d.n_bins, dropout=mp["dropout"])


def _snn_mcat(mp: dict, d: registry.Dims):
    return SNNMCAT(d.all_omic_dim, n_bins=d.n_bins, dropout=mp["dropout"])


def _mcat(mp: dict, d: registry.Dims):
    return MCAT(d.in_dim, list(d.family_sizes), dim=mp["hidden_dim"], n_bins=d.n_bins, dropout=mp["dropout"])


BUILDERS = {
    "ghanet": _ghanet, "ghanet_norecon": _ghanet, "abmil": _build(ABMIL),
    "transmil": _build(TransMIL, dropout=False), "clam_sb": _build(CLAMSB),
    "dsmil": _build(DSMIL, sized=False, dropout=False), "deepsets": _build(DeepSets),
    "deepattnmisl": _build(DeepAttnMISL), "snn": _snn, "snn_mcat": _snn_mcat, "mcat": _mcat,
}


def build(name: str, model_params: dict, dims: registry.Dims) -> nn.Module:
    """The entry's network, sized by the config's `model` section and the fold's dims."""
    return BUILDERS[registry.spec(name).name](model_params, dims)


def loss(name: str, out: dict, y, c, targets: list, recon_weight: float) -> tuple:
    """(total, survival term, reconstruction terms) of one patient, by the entry's loss."""
    kind = registry.spec(name).loss
    if kind == "ghanet":
        total, surv, recon = ghanet_loss(out, y, c, targets, recon_weight)
        return total, surv, [r.item() for r in recon]
    surv = nll_survival_loss(out["hazards"], out["survival"], y, c)
    if kind == "dsmil":  # DSMIL: half the bag's loss, half the max-pooled instances'
        m = survival_outputs(out["max_logits"])
        return 0.5 * surv + 0.5 * nll_survival_loss(m["hazards"], m["survival"], y, c), surv, []
    return surv, surv, []

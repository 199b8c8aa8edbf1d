"""The model registry: every model the pipeline trains, as the encoders are entries of one table.

Each entry says what the model reads at inference (slides, omics or both), what it is given
(`inputs`, in the order of its forward's arguments), whether it can score new patients from their
slides alone, whether it gives patch attention (heatmaps), which config keys size it (the rerun
table), its group in the comparison and its published source. Training, evaluation, predict and
heatmaps use the entry, never the model's name.

Light on purpose: the workflow's Snakemake environment imports this module (names, groups, keys),
so it holds data only; `build.build` builds an entry's network and `build.loss` gives its loss.
"""

from __future__ import annotations

from dataclasses import dataclass

SLIDE_ONLY, GENOMICS_ONLY, MULTIMODAL = "slide-only", "genomics-only", "multimodal"
GROUPS = (SLIDE_ONLY, GENOMICS_ONLY, MULTIMODAL)
# what a model can be given, per patient:
#   bag       the patch features of all the patient's slides (N x D)
#   selected  the fold's selected omic features (standardised on the fold's training patients)
#   omics     every omic column of the table (standardised likewise)
#   families  the six gene families' omic columns, one vector per family (standardised likewise)


@dataclass(frozen=True)
class Dims:
    """What a model's size depends on, read from the fold (and kept in the checkpoint)."""
    n_bins: int
    in_dim: int = 0
    family_dims: tuple = ()  # selected features per family (G-HANet's reconstruction targets)
    omic_dim: int = 0  # selected features in all (our SNN)
    family_sizes: tuple = ()  # every omic column per family (MCAT)
    all_omic_dim: int = 0  # every omic column (MCAT's SNN)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str  # as tables and figures name it
    group: str
    inputs: tuple[str, ...]
    source: str
    sized_by: tuple[str, ...] = ("model.hidden_dim", "model.dropout")
    attention: bool = False  # gives `morphology_attention` (1 x N over the patches): heatmaps
    loss: str = "nll"  # nll | ghanet (+ reconstruction) | dsmil (bag and max-pooled instances)
    targets: bool = False  # trained against the fold's omics (G-HANet's reconstruction)
    question: str = ""  # what its row in the comparison answers

    @property
    def reads_slides(self) -> bool:
        return "bag" in self.inputs

    @property
    def reads_omics(self) -> bool:
        return any(i in ("selected", "omics", "families") for i in self.inputs)

    @property
    def predicts(self) -> bool:
        """Scores new patients from their slides alone."""
        return not self.reads_omics

    @property
    def needs_omics(self) -> bool:
        """Needs the cohort's omics to train (as inputs or as targets)."""
        return self.reads_omics or self.targets


GHANET_KEYS = ("model.*", "train.recon_weight")
REGISTRY: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("ghanet", "G-HANet", SLIDE_ONLY, ("bag",), sized_by=GHANET_KEYS, attention=True,
              loss="ghanet", targets=True,
              source="Wang et al., arXiv 2403.10040 / IEEE TMI 2025; github.com/ZacharyWang-007/G-HANet "
                     "(from the reference notes, not its code)",
              question="the model: slides at inference, genomics distilled in training"),
    ModelSpec("ghanet_norecon", "G-HANet without reconstruction", SLIDE_ONLY, ("bag",),
              sized_by=("model.*",), attention=True,
              source="G-HANet with recon_weight 0 (our ablation)",
              question="what the distillation adds: the same network trained on survival alone"),
    ModelSpec("abmil", "ABMIL", SLIDE_ONLY, ("bag",), attention=True,
              source="Ilse et al., ICML 2018; as MCAT's MIL_Attention_FC_surv (github.com/mahmoodlab/MCAT)",
              question="the standard slide-only baseline"),
    ModelSpec("transmil", "TransMIL", SLIDE_ONLY, ("bag",), sized_by=("model.hidden_dim",),
              source="Shao et al., NeurIPS 2021; github.com/szc19990412/TransMIL (models/TransMIL.py), "
                     "attention from the nystrom-attention package it imports",
              question="a transformer over the patches (correlated instances)"),
    ModelSpec("clam_sb", "CLAM-SB", SLIDE_ONLY, ("bag",), attention=True,
              source="Lu et al., Nat. Biomed. Eng. 2021; github.com/mahmoodlab/CLAM (models/model_clam.py); "
                     "without its instance loss (no class in a survival bag)",
              question="CLAM's attention pooling, as most pipelines run it"),
    ModelSpec("dsmil", "DSMIL", SLIDE_ONLY, ("bag",), sized_by=(), attention=True, loss="dsmil",
              source="Li et al., CVPR 2021; github.com/binli123/dsmil-wsi (dsmil.py, train_tcga.py)",
              question="dual-stream: critical-patch attention with a max-pooling stream"),
    ModelSpec("deepsets", "DeepSets", SLIDE_ONLY, ("bag",),
              source="Zaheer et al., NeurIPS 2017; as MCAT's MIL_Sum_FC_surv (github.com/mahmoodlab/MCAT)",
              question="no attention: sum pooling, the floor for attention to beat"),
    ModelSpec("deepattnmisl", "DeepAttnMISL", SLIDE_ONLY, ("bag",), attention=True,
              source="Yao et al., MedIA 2020; as MCAT's MIL_Cluster_FC_surv (github.com/mahmoodlab/MCAT); "
                     "phenotypes: k-means of the fold's training patches",
              question="phenotype clusters, attention over them"),
    ModelSpec("snn", "SNN (fold-selected genes)", GENOMICS_ONLY, ("selected",), sized_by=("model.dropout",),
              source="Klambauer et al., NeurIPS 2017; ours: two blocks on G-HANet's selected features",
              question="how much G-HANet's own reconstruction targets say about survival"),
    ModelSpec("snn_mcat", "SNN (MCAT, all omics)", GENOMICS_ONLY, ("omics",), sized_by=("model.dropout",),
              source="MCAT's SNN (github.com/mahmoodlab/MCAT, models/model_genomic.py)",
              question="the genomics-only bound as MCAT reports it"),
    ModelSpec("mcat", "MCAT", MULTIMODAL, ("bag", "families"),
              source="Chen et al., ICCV 2021; github.com/mahmoodlab/MCAT (models/model_coattn.py, MCAT_Surv)",
              question="the multimodal bound: slides and the six families at inference"),
]}
NAMES = tuple(REGISTRY)
SLIDE_ONLY_SET = tuple(n for n, s in REGISTRY.items() if s.group == SLIDE_ONLY)
# what train.models may name besides the models: the slide-only set, or every model
SETS = {"slide-only": SLIDE_ONLY_SET, "all": NAMES}
# what the bundled demo trains when train.models is empty: the comparison G-HANet's claim needs
# (the model, its ablation, the standard baseline) in the minutes of a quick start
DEMO_SET = ("ghanet", "ghanet_norecon", "abmil")


def spec(name: str) -> ModelSpec:
    from ..errors import GhanetError

    if name not in REGISTRY:
        raise GhanetError(f"unknown model {name!r}; train.models takes {', '.join(NAMES)} "
                          f"(or {', '.join(SETS)})")
    return REGISTRY[name]


def expand(names: list[str]) -> list[str]:
    """train.models as given (model names and set names) -> model names, in order, once each."""
    out: dict[str, None] = {}
    for n in names:
        out.update(dict.fromkeys(SETS.get(n, (n,))))
    return list(out)


def chosen(names: list[str] | None, demo: bool) -> list[str]:
    """The models a run trains: train.models expanded, or when it is empty the slide-only set (the
    demo's three for the bundled demo cohort)."""
    return expand(names or (DEMO_SET if demo else ["slide-only"]))


def having(flag: str) -> list[str]:
    """The entries whose `flag` (predicts, attention, ...) is true, in registry order."""
    return [n for n, s in REGISTRY.items() if getattr(s, flag)]


def label(name: str) -> str:
    return REGISTRY[name].label if name in REGISTRY else name

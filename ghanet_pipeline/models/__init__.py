"""The models: one registry of entries (`registry`, light: the Snakefile reads it), each entry's
network in a file of its own (ghanet, abmil, transmil, clam, dsmil, deepsets, deepattnmisl, snn,
mcat, with what they share in survival and layers), and `build`, which makes an entry's network
and gives its loss. Importing this package imports the registry only; the networks need torch."""

from .registry import (
    DEMO_SET, GENOMICS_ONLY, GROUPS, MULTIMODAL, NAMES, REGISTRY, SETS, SLIDE_ONLY, SLIDE_ONLY_SET, Dims, ModelSpec,
    chosen, expand, having, label, spec,
)

__all__ = ["DEMO_SET", "GENOMICS_ONLY", "GROUPS", "MULTIMODAL", "NAMES", "REGISTRY", "SETS", "SLIDE_ONLY",
           "SLIDE_ONLY_SET", "Dims", "ModelSpec", "chosen", "expand", "having", "label", "spec"]

"""Where a slide's feature file is kept: our layout (<dir>/<slide>.h5) and the ones users bring:
CLAM's h5_files/ and pt_files/, TRIDENT's and STAMP's flat .h5, MCAT's flat .pt.

Standard library only: the Snakefile finds imported feature files (cohort.features) with it, in
the user's Snakemake environment.
"""

from __future__ import annotations

from pathlib import Path

LAYOUTS = ("{id}.h5", "h5_files/{id}.h5", "{id}.pt", "pt_files/{id}.pt")


def find_feature_file(features_dir, slide_id: str) -> Path | None:
    d = Path(features_dir)
    return next((d / p.format(id=slide_id) for p in LAYOUTS if (d / p.format(id=slide_id)).exists()), None)


def feature_path(features_dir, slide_id: str) -> Path:
    """The slide's file in the first layout that has it; ours where none does (a reader names it)."""
    return find_feature_file(features_dir, slide_id) or Path(features_dir) / f"{slide_id}.h5"

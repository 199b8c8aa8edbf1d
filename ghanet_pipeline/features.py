"""Reading patch-feature files: ours, and the layouts users bring from other tools (CLAM and
TRIDENT HDF5, MCAT `.pt` tensors). Kept apart from `formats` because a `.pt` file needs torch,
which the slide stages (segment, tile) do not install.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .errors import GhanetError
from .formats import plain_attr


def feature_path(features_dir, slide_id: str) -> Path:
    """Our layout (<dir>/<slide>.h5) first, then the layouts users bring: CLAM's h5_files/ and
    pt_files/, TRIDENT's flat .h5, MCAT's flat .pt."""
    d = Path(features_dir)
    for cand in (d / f"{slide_id}.h5", d / "h5_files" / f"{slide_id}.h5", d / f"{slide_id}.pt",
                 d / "pt_files" / f"{slide_id}.pt"):
        if cand.exists():
            return cand
    return d / f"{slide_id}.h5"  # read_features names this path in its error


def read_features(path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Features (N x D float32), coords (or None) and attributes from any of the layouts users
    bring: ours, CLAM's or TRIDENT's HDF5 (`features` possibly 1 x N x D), or an MCAT `.pt` tensor."""
    path = Path(path)
    if not path.exists():
        raise GhanetError(f"feature file {path} not found; run the extract stage or fix features_dir")
    if path.suffix == ".pt":
        import torch

        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise GhanetError(f"feature file {path} unreadable ({exc}); re-extract it") from None
        feats = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
        coords, attrs = None, {}
    else:
        try:
            with h5py.File(path, "r") as f:
                feats = f["features"][:]
                coords = f["coords"][:] if "coords" in f else None
                attrs = {k: plain_attr(v) for k, v in f.attrs.items()}
        except (OSError, KeyError) as exc:
            raise GhanetError(f"feature file {path} unreadable or without a `features` dataset "
                              f"({exc}); re-extract it") from None
    if feats.ndim == 3 and feats.shape[0] == 1:  # TRIDENT/CLAM batch dimension
        feats = feats[0]
    if coords is not None and coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if feats.ndim != 2:
        raise GhanetError(f"feature file {path}: features have shape {feats.shape}, expected N x D")
    return feats.astype(np.float32, copy=False), coords, attrs


def feature_coords_attrs(path, fallback: dict) -> dict:
    """The tiling attributes (patch level, read size, ...) on the `coords` dataset of one of our
    feature files; `fallback` for files without them (CLAM/TRIDENT/MCAT)."""
    path = Path(path)
    if path.suffix != ".h5":
        return fallback
    with h5py.File(path, "r") as f:
        if "coords" not in f or not len(f["coords"].attrs):
            return fallback
        return {k: plain_attr(v) for k, v in f["coords"].attrs.items()}


def manifest(paths: list, out_csv, max_lost_fraction: float = 1.0):
    """One row per feature file (slide, tiles, width, encoder, status); refuses a cohort whose files
    disagree on the encoder or the width, naming the first slide that differs, and one where more
    than `max_lost_fraction` of the slides failed (recorded with cohort.on_slide_error: skip)."""
    import pandas as pd

    from .io import atomic_path

    rows = []
    for path in map(Path, paths):
        with h5py.File(path, "r") as f:
            shape = f["features"].shape
            attrs = {k: plain_attr(v) for k, v in f.attrs.items()}
        rows.append({"slide_id": path.stem, "n_tiles": shape[0], "dim": shape[-1],
                     "encoder": attrs.get("encoder", ""), "weights_sha256": attrs.get("weights_sha256", ""),
                     "path": str(path), "status": attrs.get("status", "ok"), "reason": attrs.get("reason", "")})
    table = pd.DataFrame(rows, columns=["slide_id", "n_tiles", "dim", "encoder", "weights_sha256", "path",
                                        "status", "reason"])
    usable = table[table.status != "failed"]
    for col in ("dim", "encoder", "weights_sha256"):
        if usable[col].nunique() > 1:
            first = usable[col].iloc[0]
            odd = usable[usable[col] != first].iloc[0]
            raise GhanetError(f"feature file of slide {odd.slide_id} has {col} {odd[col]}, slide "
                              f"{usable.slide_id.iloc[0]} {first}; re-extract it with the cohort's encoder")
    lost = table[table.status == "failed"]
    if len(table) and len(lost) / len(table) > max_lost_fraction:
        named = "; ".join(f"{r.slide_id}: {r.reason}" for r in lost.head(5).itertuples())
        raise GhanetError(f"{len(lost)} of {len(table)} slides failed, more than cohort.max_lost_fraction "
                          f"{max_lost_fraction:g} ({named}{'; ...' if len(lost) > 5 else ''}); fix those slides "
                          "(results/report/slides.csv lists them all) or raise cohort.max_lost_fraction")
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table

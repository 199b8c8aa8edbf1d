"""Reading patch-feature files: ours, and the ones users bring from other tools (CLAM and
TRIDENT HDF5, STAMP HDF5, MCAT/CLAM `.pt` tensors). Kept apart from `formats` because a `.pt` file
needs torch, which the slide stages (segment, tile) do not install.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .commands import Command
from .errors import GhanetError
from .formats import plain_attr
from .layouts import feature_path  # noqa: F401  (the readers' way to a slide's file)

FORMATS = {"ghanet": "ours", "clam": "CLAM HDF5", "trident": "TRIDENT HDF5", "stamp": "STAMP HDF5",
           "pt": "MCAT/CLAM .pt"}


# TRIDENT's encoder names (`enc_name` in trident/patch_encoder_models/load.py) for our entries; its
# `resnet50` is timm's ResNet-50 to layer3, pooled: CLAM's resnet50_trunc
TRIDENT_ENCODERS = {"resnet50": "resnet50_trunc", "uni_v1": "uni", "uni_v2": "uni2-h", "virchow": "virchow",
                    "virchow2": "virchow2", "hoptimus0": "h-optimus-0", "hoptimus1": "h-optimus-1",
                    "h0-mini": "h0-mini", "gigapath": "prov-gigapath", "phikon_v2": "phikon-v2"}


def _h5_attrs(f) -> tuple[str, dict]:
    """(format, file attributes with `format`; STAMP's extractor, and TRIDENT's encoder name, which
    TRIDENT keeps on the `features` dataset, as `encoder`) of an open HDF5."""
    kind = _h5_format(f)
    attrs = {k: plain_attr(v) for k, v in f.attrs.items()}
    if kind == "stamp" and "extractor" in attrs:
        attrs["encoder"] = attrs["extractor"]
    if kind == "trident":
        named = plain_attr(f["features"].attrs.get("encoder", ""))
        if named and named != "None":  # TRIDENT writes a missing name as the text 'None'
            attrs.update(trident_encoder=named, encoder=TRIDENT_ENCODERS.get(named, named))
    return kind, {**attrs, "format": kind}


def _h5_format(f) -> str:
    if "feats" in f:
        return "stamp"
    if "ghanet_version" in f.attrs or "encoder" in f.attrs:
        return "ghanet"
    if "coords" in f and "level0_magnification" in f["coords"].attrs:
        return "trident"
    return "clam"


def read_features(path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Features (N x D float32), coords (level-0 pixels, or None) and attributes from any of the
    files users bring: ours, CLAM's or TRIDENT's HDF5 (`features` possibly 1 x N x D), STAMP's
    (`feats`; its extractor becomes `encoder`; its coords are microns, so none are returned), or
    an MCAT/CLAM `.pt` tensor. `attrs["format"]` says which."""
    path = Path(path)
    if not path.exists():
        raise GhanetError(f"feature file {path} not found; run the extract stage or fix features_dir")
    if path.suffix == ".pt":
        import torch

        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise GhanetError(f"feature file {path} unreadable ({exc}); re-extract it") from None
        feats = t.float().numpy() if hasattr(t, "numpy") else np.asarray(t)
        coords, attrs = None, {"format": "pt"}
    else:
        try:
            with h5py.File(path, "r") as f:
                kind, attrs = _h5_attrs(f)
                feats = f["feats" if kind == "stamp" else "features"][:]
                coords = f["coords"][:] if "coords" in f and kind != "stamp" else None
        except (OSError, KeyError) as exc:
            raise GhanetError(f"feature file {path} unreadable or without a `features` (or STAMP `feats`) "
                              f"dataset ({exc}); re-extract it") from None
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


def _header(path: Path) -> tuple[tuple, dict]:
    """(shape, attributes) of a feature file without reading HDF5 features; a .pt is read whole."""
    if path.suffix == ".pt":
        feats, _, attrs = read_features(path)
        return feats.shape, attrs
    try:
        with h5py.File(path, "r") as f:
            kind, attrs = _h5_attrs(f)
            shape = f["feats" if kind == "stamp" else "features"].shape
    except (OSError, KeyError) as exc:
        raise GhanetError(f"feature file {path} unreadable or without a `features` (or STAMP `feats`) "
                          f"dataset ({exc}); re-extract it, or remove the slide from the cohort") from None
    return shape, attrs


def imported(features_dir, slide_ids: list[str], declared: str) -> list[Path]:
    """The feature files of a cohort given as features (cohort.features), one per slide, checked:
    every slide has one, and files of ours were made with the declared encoder (extract.encoder),
    which names the encoder of files that carry no name (CLAM, TRIDENT, MCAT)."""
    from .layouts import LAYOUTS, find_feature_file

    found = {sid: find_feature_file(features_dir, sid) for sid in slide_ids}
    missing = [sid for sid, p in found.items() if p is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise GhanetError(f"cohort.features {features_dir}: no feature file for {len(missing)} of {len(found)} "
                          f"slides ({shown}); looked for {', '.join(LAYOUTS).replace('{id}', '<slide_id>')}; "
                          "add them, or remove those slides from the slide sheet (or clinical table)")
    return list(found.values())


def manifest(paths: list, out_csv, max_lost_fraction: float = 1.0, declared: str | None = None,
             slide_ids: list[str] | None = None):
    """One row per feature file (slide, tiles, width, encoder, format, status); refuses a cohort whose
    files disagree on the encoder or the width, naming the first slide that differs, and one where more
    than `max_lost_fraction` of the slides failed (recorded with cohort.on_slide_error: skip).
    Imported files (`declared` given) take the declared encoder where they carry none."""
    import pandas as pd

    from .io import atomic_path

    rows = []
    for sid, path in zip(slide_ids or [Path(p).stem for p in paths], map(Path, paths)):
        shape, attrs = _header(path)
        encoder = attrs.get("encoder", "")
        if declared and attrs["format"] == "ghanet" and encoder != declared:
            raise GhanetError(f"feature file {path} of slide {sid} was made with encoder {encoder}, and "
                              f"extract.encoder says {declared}; set extract.encoder: {encoder}")
        if declared and attrs.get("trident_encoder") and encoder != declared:
            ours = (f"set extract.encoder: {encoder}" if attrs["trident_encoder"] in TRIDENT_ENCODERS else
                    "ghanet-pipeline has no entry for it, so new slides could not be scored alike; extract the "
                    "cohort with one of `ghanet encoders`")
            raise GhanetError(f"feature file {path} of slide {sid} was made by TRIDENT with encoder "
                              f"{attrs['trident_encoder']}, and extract.encoder says {declared}; {ours}")
        rows.append({"slide_id": sid, "n_tiles": shape[-2] if len(shape) > 1 else 0, "dim": shape[-1],
                     "encoder": encoder or declared or "", "weights_sha256": attrs.get("weights_sha256", ""),
                     "format": attrs["format"], "path": str(path), "status": attrs.get("status", "ok"),
                     "reason": attrs.get("reason", ""),
                     # patches left out over corrupt stored tiles, and where (extract)
                     "dropped_patches": attrs.get("dropped_patches", 0), "corrupt_tiles": attrs.get("corrupt_tiles", 0),
                     "corrupt_at": attrs.get("corrupt_at", "[]")})
    table = pd.DataFrame(rows, columns=["slide_id", "n_tiles", "dim", "encoder", "weights_sha256", "format",
                                        "path", "status", "reason", "dropped_patches", "corrupt_tiles", "corrupt_at"])
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


def declared_encoder(manifest_csv) -> str:
    """The cohort's encoder as its manifest has it (the files' own, or the declared one)."""
    import csv

    with open(manifest_csv, newline="") as fh:
        return next((r["encoder"] for r in csv.DictReader(fh) if r["status"] != "failed"), "")


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    p.add_argument("--features", nargs="*", default=[], help="our feature files")
    p.add_argument("--features-dir", default=None,
                   help="instead of --features: the folder of every cohort slide's file (ours, or those "
                        "cohort.features names), a slide list too long for a command line")
    p.add_argument("--slide-sheet", default=None, help="with --features-dir: the slides (else --clinical's)")
    p.add_argument("--clinical", default=None, help="with --features-dir and no sheet: MCAT table with slide_id")
    p.add_argument("--declared-encoder", default=None,
                   help="imported files: the encoder of those that carry no name (extract.encoder)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-lost-fraction", type=float, default=1.0,
                   help="stop when more than this fraction of the slides failed (cohort.max_lost_fraction)")


def _run(args) -> None:
    import logging

    from .sheet import cohort_slides

    if args.features_dir:  # every slide of the sheet (or clinical table): ours, or given (cohort.features)
        ids = list(cohort_slides(args.slide_sheet, args.clinical))
        paths = imported(args.features_dir, ids, args.declared_encoder)
        table = manifest(paths, args.out, args.max_lost_fraction, declared=args.declared_encoder, slide_ids=ids)
    else:
        table = manifest(args.features, args.out, args.max_lost_fraction)
    logging.getLogger("ghanet").info("features of %d slides, %d tiles", len(table), int(table.n_tiles.sum()))


COMMANDS = {"feature-manifest": Command(_arguments, _run)}

"""Cohort-level slide QC: the table of what segmentation and tiling made of every slide, and the
contact sheets of their QC images that the HTML report shows.

Reads only the stages' output files (segment stats JSON, coords HDF5, QC images). Slides with no
tile are flagged, so a slide that was kept going with `tile.on_empty: record` is never silently
empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import formats
from .commands import Command
from .io import atomic_path


def _damage(features_path) -> dict:
    """What extraction left out of a slide: patches over corrupt stored tiles, their count and where."""
    import h5py

    try:
        with h5py.File(features_path, "r") as f:
            a = {k: formats.plain_attr(f.attrs[k]) for k in ("dropped_patches", "corrupt_tiles", "corrupt_at") if k in f.attrs}
    except OSError:
        return {}
    return {"dropped_patches": a.get("dropped_patches", 0), "corrupt_tiles": a.get("corrupt_tiles", 0),
            "corrupt_at": a.get("corrupt_at", "[]")}


def slide_table(stats_paths: list, coords_paths: list, features_paths: list | None = None) -> pd.DataFrame:
    rows = []
    for i, (stats_path, coords_path) in enumerate(zip(stats_paths, coords_paths)):
        stats = json.loads(Path(stats_path).read_text())
        coords, attrs = formats.read_coords(coords_path)
        n = len(coords)
        failed = stats.get("status") == "failed" or attrs.get("status") == "failed"
        if failed:  # recorded with cohort.on_slide_error: skip
            rows.append({"slide_id": stats["slide_id"], "n_tiles": 0, "n_pieces": 0, "n_holes": 0,
                         "tissue_area_mm2": 0.0, "pen_area_mm2": 0.0, "level0_mpp": stats.get("level0_mpp"),
                         "patch_level": None, "patch_size_level0": None, "status": "failed",
                         "reason": stats.get("reason") or attrs.get("reason", ""),
                         "failed_stage": stats.get("failed_stage") or attrs.get("failed_stage", "tile")})
            continue
        rows.append({
            "slide_id": stats["slide_id"], "n_tiles": n, "n_pieces": stats["n_pieces"],
            "n_holes": stats["n_holes"], "tissue_area_mm2": stats["tissue_area_mm2"],
            "pen_area_mm2": stats["pen_area_mm2"], "level0_mpp": stats["level0_mpp"],
            "patch_level": attrs.get("patch_level"), "patch_size_level0": attrs.get("patch_size_level0"),
            "status": "ok" if n else "no tiles", "failed_stage": "" if n else "tile",
            # regions OpenSlide could not decode, segmented as glass (level-0 x, y, w, h)
            "unreadable_regions": stats.get("unreadable_regions", 0),
            "unreadable_at": json.dumps(stats.get("unreadable_at", [])[:10]),
            "reason": "" if n else ("no tissue found" if stats["n_pieces"] == 0 else
                                    "no tile reaches tile.min_coverage"),
            **(_damage(features_paths[i]) if features_paths else {}),
        })
    return pd.DataFrame(rows)


def with_sheet_columns(table: pd.DataFrame, sheets: list) -> pd.DataFrame:
    """The table with each slide's case_id and the sheets' own extra columns (scanner, site, ...)."""
    from .sheet import COLUMNS, read_slides

    rows = {sid: row for sheet in sheets for sid, row in read_slides(sheet).items()}
    extra = list(dict.fromkeys(k for row in rows.values() for k in row if k not in COLUMNS))
    carried = pd.DataFrame([{"slide_id": sid, "case_id": row["case_id"], **{k: row.get(k, "") for k in extra}}
                            for sid, row in rows.items()], columns=["slide_id", "case_id", *extra])
    return carried.merge(table, on="slide_id", how="right")[["slide_id", "case_id", *extra, *table.columns[1:]]]


def qc_gallery(table: pd.DataFrame, qc_images: list[str], out_dir) -> list:
    """Contact sheets of every slide's QC images (`qc_images`: path templates with {slide}), each
    slide labelled with its tile count or why it has none: what the report shows of slide QC."""
    from .gallery import contact_sheets

    items = [(f"{r.slide_id}: {r.n_tiles} tiles" if r.status == "ok" else f"{r.slide_id}: {r.status}",
              [t.format(slide=r.slide_id) for t in qc_images]) for r in table.itertuples()]
    return contact_sheets(items, out_dir, name="slides")


def run(stats_paths: list, coords_paths: list, out_csv, sheets: list = (), qc_images: list = (),
        gallery_dir=None, features_paths: list | None = None) -> pd.DataFrame:
    table = slide_table(stats_paths, coords_paths, features_paths)
    if sheets:
        table = with_sheet_columns(table, sheets)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    if gallery_dir:
        qc_gallery(table, list(qc_images), gallery_dir)
    return table


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    p.add_argument("--stats", nargs="*", default=[], help="segment stats JSON files")
    p.add_argument("--coords", nargs="*", default=[], help="coords HDF5 files, same order")
    p.add_argument("--stats-pattern", default=None,
                   help="instead of --stats/--coords: the stats path with {slide}, for every slide of --sheets")
    p.add_argument("--coords-pattern", default=None, help="with --stats-pattern: the coords path with {slide}")
    p.add_argument("--features-pattern", default=None,
                   help="with --stats-pattern: the features path with {slide} (patches extraction left out)")
    p.add_argument("--sheets", nargs="*", default=[],
                   help="slide sheets whose case_id and extra columns (scanner, site, ...) the table carries")
    p.add_argument("--out", required=True)
    p.add_argument("--qc-images", nargs="*", default=[],
                   help="QC image paths with {slide} (segment's, tile's), shown side by side in the gallery")
    p.add_argument("--gallery-dir", default=None, help="write the QC contact sheets here")


def _run(args) -> None:
    import logging

    from .errors import GhanetError
    from .sheet import read_slides

    if args.stats_pattern:  # every slide of the sheets: a list of 10,000 paths would not fit a command line
        ids = list(dict.fromkeys(sid for sheet in args.sheets for sid in read_slides(sheet)))
        args.stats = [args.stats_pattern.format(slide=sid) for sid in ids]
        args.coords = [args.coords_pattern.format(slide=sid) for sid in ids]
    features = [args.features_pattern.format(slide=sid) for sid in ids] if args.features_pattern else None
    if len(args.stats) != len(args.coords):
        raise GhanetError("slide-report needs one --coords file per --stats file, in the same order")
    table = run(args.stats, args.coords, args.out, sheets=args.sheets, qc_images=args.qc_images,
                gallery_dir=args.gallery_dir, features_paths=features)
    empty = table[table.status != "ok"]
    logging.getLogger("ghanet").info("slide report: %d slides, %d without tiles%s", len(table), len(empty),
                                     f" ({', '.join(empty.slide_id)})" if len(empty) else "")


COMMANDS = {"slide-report": Command(_arguments, _run)}

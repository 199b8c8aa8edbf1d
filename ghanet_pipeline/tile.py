"""Stage `tile`: a physical grid of tiles over the tissue of one slide.

A tile is `target_patch_size` pixels at `target_mpp`, i.e. `patch_size_level0` level-0 pixels, read
as `patch_size` pixels at `patch_level` (CLAM's meaning of the attribute, so CLAM's readers take
the same region) and resized. TRIDENT's attributes (`level0_magnification`, `target_magnification`
as 10 / mpp) describe that same read: `patch_size` pixels at the magnification of `patch_level`,
which is the tiling's target whenever a level has it. The grid is
anchored at the slide origin (so pieces never get overlapping tiles), and a tile is kept when the
tissue polygons (holes excluded) cover at least `min_coverage` of it. Coverage is computed by
rasterising the polygons at 16 x 16 samples per tile and averaging blocks, vectorised. The
rasterisation is a scanline fill (each sample row's edge crossings, then the runs between them),
which gives scikit-image's `draw.polygon` pixel set exactly, samples on an edge included, at
a cost that grows with the outline's crossings instead of its bounding box x its vertices
(a 12,000-vertex outline: 35 ms instead of 3.4 s).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from . import commands, formats, slidejob, wsi
from .errors import GhanetError

SAMPLES_PER_TILE = 16


def _row_crossings(xs: np.ndarray, ys: np.ndarray, h: int, closed: bool, tol: float = 0.0) -> tuple:
    """(row, x) of each crossing of the ring's edges with the sample rows 0..h-1: rows in [lo, hi)
    of each non-horizontal edge (a vertex on a row counts once: the even-odd fill), or with
    `closed` rows in [lo - tol, hi + tol] (the candidates for samples on the ring)."""
    xj, yj = np.roll(xs, 1), np.roll(ys, 1)
    lo, hi = np.minimum(ys, yj), np.maximum(ys, yj)
    start, stop = (np.ceil(lo - tol), np.floor(hi + tol) + 1) if closed else (np.ceil(lo), np.ceil(hi))
    start = np.maximum(start, 0).astype(np.int64)
    n = np.where(lo < hi, np.maximum(np.minimum(stop, h).astype(np.int64) - start, 0), 0)
    e = np.repeat(np.arange(len(xs)), n)
    y = start[e] + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    # the crossing as point-in-polygon tests write it, from the edge's vertex i towards i - 1
    x = xs[e] + (xj[e] - xs[e]) * (y - ys[e]) / (yj[e] - ys[e])
    return y, x


def _fill_ring(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray, value: bool, tol: float = 1e-6) -> None:
    """Set the samples (integer centres) inside the ring to `value`: skimage.draw.polygon's set.
    Samples clear of the outline by more than `tol` follow the even-odd rule on their row's
    crossings; the few within `tol` of it (on an edge or a vertex, where the rule's ties decide) are
    classified by scikit-image's own point test, which counts them as draw.polygon does."""
    from skimage.measure import points_in_poly

    h, w = mask.shape
    # the ring's bounding box: the work is the ring's size, not the slide's (a slide's many small
    # holes would each sweep the whole grid); the coordinates themselves stay as they are
    r0, r1 = max(0, int(np.floor(ys.min()))), min(h, int(np.ceil(ys.max())) + 1)
    c0, c1 = max(0, int(np.floor(xs.min()))), min(w, int(np.ceil(xs.max())) + 1)
    if r0 >= r1 or c0 >= c1:
        return
    inside = np.zeros((r1 - r0, c1 - c0), bool)
    y, x = _row_crossings(xs, ys, h, closed=False)
    if len(y):  # each row has an even number of crossings: consecutive pairs bound the runs inside
        order = np.lexsort((x, y))
        y, x = y[order].reshape(-1, 2)[:, 0] - r0, x[order].reshape(-1, 2)
        runs = np.zeros((r1 - r0, c1 - c0 + 1), np.int32)
        np.add.at(runs, (y, np.clip(np.ceil(x[:, 0]), c0, c1).astype(np.int64) - c0), 1)
        np.add.at(runs, (y, np.clip(np.ceil(x[:, 1]), c0, c1).astype(np.int64) - c0), -1)
        inside = np.cumsum(runs[:, :c1 - c0], axis=1) > 0
    yb, xb = _row_crossings(xs, ys, h, closed=True, tol=tol)
    on = np.abs(xb - np.round(xb)) <= tol
    near = [np.stack([yb[on], np.round(xb[on])], axis=1)]
    xj, yj = np.roll(xs, 1), np.roll(ys, 1)
    flat = (ys == yj) & (np.abs(ys - np.round(ys)) <= tol)  # horizontal edges on a sample row
    for row, a, b in zip(np.round(ys[flat]), np.minimum(xs, xj)[flat], np.maximum(xs, xj)[flat]):
        cols = np.arange(np.ceil(a - tol), np.floor(b + tol) + 1)
        near.append(np.stack([np.full(len(cols), row), cols], axis=1))
    near = np.concatenate(near).astype(np.int64)
    near = near[(near[:, 0] >= r0) & (near[:, 0] < r1) & (near[:, 1] >= c0) & (near[:, 1] < c1)]
    if len(near):
        near = np.unique(near, axis=0)
        inside[near[:, 0] - r0, near[:, 1] - c0] = points_in_poly(near[:, ::-1].astype(float),
                                                                  np.stack([xs, ys], axis=1))
    mask[r0:r1, c0:c1][inside] = value


def _coverage(polygons, nx: int, ny: int, patch_size_level0: int) -> np.ndarray:
    """Fraction of each grid tile (ny x nx) inside the polygons, holes excluded."""
    k = SAMPLES_PER_TILE
    scale = k / patch_size_level0
    mask = np.zeros((ny * k, nx * k), bool)

    def fill(ring, value):
        # sample i covers [i, i+1) and counts when its centre is inside the ring: shifting by half
        # a sample puts centres on integers, which the fill tests exactly (cv2 rounds edges outwards)
        uv = np.asarray(ring, np.float64) * scale - 0.5
        _fill_ring(mask, uv[:, 0], uv[:, 1], value)

    for rings in polygons:  # outer ring fills, holes clear
        fill(rings[0], True)
        for hole in rings[1:]:
            fill(hole, False)
    return mask.reshape(ny, k, nx, k).mean(axis=(1, 3))


def tile_grid(polygons, level0_size, patch_size_level0: int, min_coverage: float, ink=(),
              max_ink_fraction: float = 1.0):
    """Top-left level-0 coords (N x 2, int64) and coverage of kept tiles, row-major order. A tile is
    kept when tissue covers at least `min_coverage` of it and marker ink (`ink` polygons) at most
    `max_ink_fraction` (the tissue polygons already exclude the ink)."""
    w0, h0 = level0_size
    nx, ny = w0 // patch_size_level0, h0 // patch_size_level0
    if nx == 0 or ny == 0 or not polygons:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    coverage = _coverage(polygons, nx, ny, patch_size_level0)
    keep = coverage >= max(min_coverage, 1e-9)
    if len(ink) and max_ink_fraction < 1.0:
        keep &= _coverage(ink, nx, ny, patch_size_level0) <= max_ink_fraction
    iy, ix = np.nonzero(keep)
    coords = np.stack([ix, iy], axis=1).astype(np.int64) * patch_size_level0
    return coords, coverage[iy, ix]


def record_failure(slide_id: str, reason: str, *, coords_h5: str, qc_png: str, stage: str = "tile") -> None:
    """An empty coords file that says the slide failed, why, and at which stage it first failed
    (cohort.on_slide_error: skip)."""
    formats.write_coords(coords_h5, np.zeros((0, 2), np.int64), {"slide_id": slide_id, "status": "failed",
                                                                  "reason": reason, "failed_stage": stage,
                                                                  "patch_size": 0})
    formats.write_image(qc_png, np.full((64, 64, 3), 200, np.uint8))


def _qc_base(slide, slide_id: str, slide_path, segment_qc) -> np.ndarray:
    """The image the grid is drawn on: segmentation's QC image where there is one of this slide's
    shape (the same 1,024 px thumbnail, outlined), else a thumbnail read from the slide."""
    size = wsi.thumbnail_size(slide, 1024)
    if segment_qc is not None:
        image = cv2.imread(str(segment_qc), cv2.IMREAD_COLOR)
        if image is not None and image.shape[1::-1] == tuple(size):
            return np.ascontiguousarray(image[..., ::-1])  # BGR -> RGB
    return wsi.read_rgb_at(slide, size, slide_id, slide_path)


def run(slide_path: str, slide_id: str, params: dict, *, contours: str, coords_h5: str, qc_png: str,
        sheet_mpp: float | None = None, default_mpp: float | None = None, segment_stats=None,
        mpp_range=None, segment_qc=None) -> dict:
    """With `segment_stats` (the workflow's way) the level-0 mpp and the segmentation settings are
    the ones segmentation used; else the mpp is resolved here from the sheet, file or default.
    With `segment_qc` the QC grid is drawn on segmentation's QC image (the slide with its outlines)
    instead of a thumbnail read from the slide again: on a single-level slide that read decodes the
    whole of level 0 a second time."""
    settings = {}
    if segment_stats is not None:
        stats = json.loads(Path(segment_stats).read_text())
        if stats.get("status") == "failed":  # recorded by segmentation (cohort.on_slide_error: skip)
            record_failure(slide_id, stats["reason"], coords_h5=coords_h5, qc_png=qc_png,
                           stage=stats.get("failed_stage", "segment"))
            return {"slide_id": slide_id, "n_tiles": 0, "patch_level": -1, "patch_size_level0": 0, "failed": True}
    slide = wsi.open_slide(slide_path, slide_id)
    if segment_stats is not None:
        mpp0, settings = float(stats["level0_mpp"]), stats.get("settings", {})
    else:
        mpp0, _ = wsi.resolve_mpp(slide, slide_id, sheet_mpp, default_mpp, mpp_range or wsi.MPP_RANGE)
    target, patch = params["target_mpp"], params["patch_size"]
    level = wsi.level_for_mpp(slide, mpp0, target, params["mpp_tolerance"])
    downsample = float(slide.level_downsamples[level])
    # a level within tolerance of the target is read as-is, not resized by a hair
    if abs(mpp0 * downsample / target - 1) <= params["mpp_tolerance"]:
        ps0 = int(round(patch * downsample))
    else:
        ps0 = max(1, int(round(patch * target / mpp0)))  # a coarse slide still gets whole pixels
    read_size = max(1, int(round(ps0 / downsample)))

    polygons = formats.read_contours(contours)
    ink = formats.read_contours(contours, "Pen")
    coords, coverage = tile_grid(polygons, slide.dimensions, ps0, params["min_coverage"], ink,
                                 params["max_ink_fraction"])
    if len(coords) == 0 and params["on_empty"] == "fail":
        raise GhanetError(
            f"slide {slide_id}: no tile reaches min_coverage {params['min_coverage']} "
            f"({len(polygons)} tissue piece(s) found); check its QC thumbnail, or set "
            "tile.on_empty: record to keep going with zero tiles for this slide"
        )
    attrs = {
        "patch_size": read_size, "patch_level": level, "downsample": downsample,
        "target_patch_size": patch, "target_mpp": target, "level0_mpp": mpp0, "patch_size_level0": ps0,
        "read_size": read_size, "level_dim": list(slide.level_dimensions[level]),
        "level0_magnification": 10.0 / mpp0, "target_magnification": 10.0 / (mpp0 * downsample),
        "level0_width": int(slide.dimensions[0]), "level0_height": int(slide.dimensions[1]), "overlap": 0,
        "slide_id": slide_id, "name": slide_id,
        # provenance: the settings behind these tiles, carried on into the feature file
        "settings": json.dumps({**settings, "tile": params}, sort_keys=True),
    }
    formats.write_coords(coords_h5, coords, attrs)

    w0 = slide.dimensions[0]  # read first: a handle that met a corrupt tile answers nothing after
    thumb = _qc_base(slide, slide_id, slide_path, segment_qc)
    f = thumb.shape[1] / w0
    for x, y in coords:  # orange: segmentation's outlines are green, its holes blue, ink magenta
        cv2.rectangle(thumb, (int(x * f), int(y * f)), (int((x + ps0) * f), int((y + ps0) * f)),
                      (255, 140, 0), 1)
    formats.write_image(qc_png, thumb)
    return {"slide_id": slide_id, "n_tiles": int(len(coords)), "patch_level": level,
            "patch_size_level0": ps0, "mean_coverage": float(coverage.mean()) if len(coverage) else 0.0}


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    slidejob.slide_args(p)
    commands.stage_args(p)
    p.add_argument("--contours", required=True, help="GeoJSON written by `ghanet segment`")
    p.add_argument("--segment-stats", default=None,
                   help="stats JSON written by `ghanet segment`: take its level-0 mpp (instead of --mpp)")
    p.add_argument("--segment-qc", default=None,
                   help="QC image written by `ghanet segment`: the grid is drawn on it (else the slide is read again)")
    p.add_argument("--coords", required=True)
    p.add_argument("--qc", required=True)


def _one_slide(args) -> None:
    res = run(args.slide, args.slide_id, commands.section(args, "tile"), contours=args.contours,
              coords_h5=args.coords, qc_png=args.qc, sheet_mpp=args.mpp, default_mpp=args.default_mpp,
              segment_stats=args.segment_stats, mpp_range=args.mpp_range, segment_qc=args.segment_qc)
    logging.getLogger("ghanet").info("tile %s: %d tiles of %d level-0 px read at level %d", args.slide_id,
                                     res["n_tiles"], res["patch_size_level0"], res["patch_level"])


def _record(args, why: str) -> None:
    record_failure(args.slide_id, why, coords_h5=args.coords, qc_png=args.qc)


COMMANDS = {"tile": slidejob.command(_arguments, _one_slide, inputs=("contours", "segment_stats", "segment_qc"),
                                     outputs=("coords", "qc"), record=_record)}

"""Stage `segment`: tissue contours of one slide.

Works on an image at `seg_mpp` (the pyramid level is chosen by physical size, then resized).
Tissue = saturated pixels (Otsu on HSV saturation, as CLAM), minus pen ink (blue/green hues that
H&E never has, and near-black marker), smoothed, traced with holes, and filtered by physical area:
pieces under `min_tissue_area_mm2` are dust, holes under `min_hole_area_mm2` are filled.

Outputs: a QuPath-readable GeoJSON FeatureCollection (level-0 pixel coordinates), a QC PNG and
stats JSON.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from . import commands, formats, slidejob, wsi
from .io import atomic_path, write_json

# OpenCV hue is 0-180. Eosin/haematoxylin sit at 125-180 and 0-15 (pink to purple); marker
# ink is green (35-90) or blue (90-125). Purple nuclei blurred at ~8 um/px stay above 125.
PEN_HUE_RANGE = (35, 124)
PEN_MIN_SATURATION = 60
BLACK_INK_MAX_VALUE = 70
BLACK_INK_MAX_SATURATION = 90  # dense haematoxylin is dark too, but strongly saturated
TRACE_UPSAMPLE = 4
SATURATION_FLOOR = 20  # Otsu on a blank slide splits noise; glass never exceeds this
# faint tissue: above the glass peak by this much (or 6 spreads), never below FAINT_FLOOR; a piece
# counts as faint when under FAINT_MAX_STRONG of it passes Otsu's split
GLASS_SEARCH, GLASS_MARGIN, FAINT_FLOOR, FAINT_MAX_STRONG = 40, 10, 10, 0.1


def segment_image(rgb: np.ndarray, seg_mpp: float, params: dict) -> dict:
    """Segment an RGB image at `seg_mpp`. Returns pixel-space contours and masks."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    k = _odd(params["smoothing_um"] / seg_mpp)
    sat_blur = cv2.medianBlur(sat, k) if k > 1 else sat

    pen = np.zeros(sat.shape, bool)
    if params["remove_pen"]:
        coloured = (hue >= PEN_HUE_RANGE[0]) & (hue <= PEN_HUE_RANGE[1]) & (sat >= PEN_MIN_SATURATION)
        black = (val <= BLACK_INK_MAX_VALUE) & (sat <= BLACK_INK_MAX_SATURATION)
        pen = coloured | black
        # ink edges blend into the glass or tissue: widen the mask a little
        pen = cv2.dilate(pen.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        # isolated dark pixels are dust or nuclei, not ink; ink strokes are wide
        pen = _drop_small(pen, (60 / seg_mpp) ** 2)

    if params["saturation_threshold"] is None:
        # Otsu without the ink: strongly saturated ink would otherwise pull the split above tissue
        values = sat_blur[~pen]
        otsu = _otsu(values) if values.size else 255.0
        threshold = max(otsu, SATURATION_FLOOR)
        tissue = (sat_blur > threshold) & ~pen
        tissue |= _faint_pieces(sat_blur, tissue, pen, threshold)
    else:
        threshold = float(params["saturation_threshold"])
        tissue = (sat_blur > threshold) & ~pen

    mask = tissue.astype(np.uint8)
    if k > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        mask &= (~pen).astype(np.uint8)

    px_area_mm2 = (seg_mpp / 1000.0) ** 2
    min_piece_px = params["min_tissue_area_mm2"] / px_area_mm2 * TRACE_UPSAMPLE**2
    min_hole_px = params["min_hole_area_mm2"] / px_area_mm2 * TRACE_UPSAMPLE**2
    contours, hierarchy = _trace(mask, cv2.RETR_CCOMP)
    pieces, dropped = [], 0
    if hierarchy is not None:
        hier = hierarchy[0]
        for i, c in enumerate(contours):
            if hier[i][3] != -1:
                continue  # a hole; handled with its parent
            holes = []
            child = hier[i][2]
            while child != -1:
                if cv2.contourArea(contours[child]) >= min_hole_px:
                    holes.append(contours[child])
                child = hier[child][0]
            area = cv2.contourArea(c) - sum(cv2.contourArea(h) for h in holes)
            if area < min_piece_px:
                dropped += 1
                continue
            pieces.append((c, holes, area / TRACE_UPSAMPLE**2))
    ink = []
    if pen.any():  # the ink as polygons too: tiling drops tiles it covers, QuPath shows it
        ink = [c for c in _trace(pen.astype(np.uint8), cv2.RETR_EXTERNAL)[0] if len(c) >= 3]
    return {"pieces": pieces, "threshold": threshold, "pen_px": int(pen.sum()),
            "dropped_pieces": dropped, "ink": ink}


def _trace(mask: np.ndarray, mode: int):
    """Contours and hierarchy of a 0/1 mask, traced on its 4x nearest-upsampled copy (contours run
    through boundary-pixel centres, which would shrink every piece by half a pixel at the
    segmentation resolution), in upsampled pixels. Only the box around what is set (and a pixel of
    glass) is upsampled and traced: the same contours, without sweeping the glass."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return (), None
    x0, y0 = max(0, x - 1), max(0, y - 1)
    box = mask[y0:y + h + 1, x0:x + w + 1]
    up = cv2.resize(box, None, fx=TRACE_UPSAMPLE, fy=TRACE_UPSAMPLE, interpolation=cv2.INTER_NEAREST)
    return cv2.findContours(up, mode, cv2.CHAIN_APPROX_SIMPLE, offset=(x0 * TRACE_UPSAMPLE, y0 * TRACE_UPSAMPLE))


def glass_bound(sat: np.ndarray) -> float:
    """The saturation above which a pixel is not glass: the glass peak (the histogram's mode among
    weakly saturated pixels) plus a margin of several times its spread."""
    hist = np.bincount(sat.ravel(), minlength=256)
    mode = int(np.argmax(hist[:GLASS_SEARCH]))
    # the median absolute deviation of the pixels within 8 of the mode, from the histogram
    dev = np.array([hist[mode]] + [hist[mode + d] + (hist[mode - d] if mode >= d else 0) for d in range(1, 9)])
    n, below = int(dev.sum()), np.cumsum(dev)
    middle = [int(np.searchsorted(below, k, side="right")) for k in {(n - 1) // 2, n // 2}]
    spread = 1.4826 * float(np.mean(middle)) if n else 0.0
    return max(mode + max(GLASS_MARGIN, 6 * spread), FAINT_FLOOR)


def _faint_pieces(sat: np.ndarray, tissue: np.ndarray, pen: np.ndarray, threshold: float) -> np.ndarray:
    """Whole pieces that stand out from the glass but not from Otsu's split: faded or lightly stained
    tissue beside well-stained tissue, which a per-slide threshold between the two would drop.
    Only pieces with (almost) no Otsu tissue are added; well-stained pieces keep Otsu's outline."""
    low = glass_bound(sat)
    if low >= threshold:
        return np.zeros_like(tissue)
    faint = (sat > low) & ~pen
    n, labels = cv2.connectedComponents(faint.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(tissue)
    size = np.bincount(labels.ravel(), minlength=n)
    strong = np.bincount(labels[tissue], minlength=n)
    keep = strong < FAINT_MAX_STRONG * np.maximum(size, 1)
    keep[0] = False
    pieces = keep[labels]
    if not pieces.any():
        return pieces
    # each faint piece outlined by its own Otsu split against the glass around it, as the
    # well-stained tissue is by the slide's, so a faded piece is not outlined more generously;
    # each region is handled in its bounding box (a dusty slide has many small ones)
    out = np.zeros_like(pieces)
    n2, regions, stats, _ = cv2.connectedComponentsWithStats(
        cv2.dilate(pieces.astype(np.uint8), np.ones((15, 15), np.uint8)), connectivity=8)
    for i in range(1, n2):
        x, y, w, h = stats[i, :4]
        box = (slice(y, y + h), slice(x, x + w))
        region = regions[box] == i
        split = max(_otsu(sat[box][region]), low)
        out[box] |= region & pieces[box] & (sat[box] > split)
    return out


def _otsu(values: np.ndarray) -> float:
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    # a constant image has no split (all NaN): 0, and the saturation floor decides
    return float(np.argmax(np.nan_to_num(between, nan=0.0)))


def _odd(x: float) -> int:
    k = int(round(x))
    return k + 1 if k % 2 == 0 else k


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_px
    return keep[labels]


def _ring(contour: np.ndarray, scale: np.ndarray, size0) -> list[list[float]]:
    # traced pixel i (upsampled) covers [i, i+1): its centre is (i + 0.5) / TRACE_UPSAMPLE seg px
    pts = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / TRACE_UPSAMPLE * scale
    pts = np.clip(pts, 0, size0)
    ring = [[round(float(x), 1), round(float(y), 1)] for x, y in pts]
    if len(ring) < 3:
        ring = ring + ring[: 3 - len(ring)]
    return ring + [ring[0]]


QC_PX = 1024  # long side of the QC image: readable whatever the slide's size


def _qc_image(slide, rgb: np.ndarray, features: list[dict], slide_id: str, slide_path) -> np.ndarray:
    """The slide at QC_PX on its long side with the tissue outlines (green), holes (blue) and ink
    (magenta): from the segmentation image when it is large enough, else read anew."""
    w0 = slide.dimensions[0]
    size = wsi.thumbnail_size(slide, QC_PX)
    if max(rgb.shape[:2]) >= QC_PX:
        qc = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    else:
        qc = wsi.read_rgb_at(slide, size, slide_id, slide_path)
    f = qc.shape[1] / w0
    width = max(2, qc.shape[1] // 400)
    for feat in features:
        rings = [np.round(np.asarray(r) * f).astype(np.int32) for r in feat["geometry"]["coordinates"]]
        ink = feat["properties"]["classification"]["name"] == "Pen"
        cv2.polylines(qc, rings[:1], True, (200, 0, 200) if ink else (0, 160, 0), width)
        cv2.polylines(qc, rings[1:], True, (0, 0, 255), max(1, width // 2))
    return qc


def record_failure(slide_id: str, reason: str, *, geojson: str, qc_png: str, stats_json: str) -> None:
    """cohort.on_slide_error: skip: outputs that say the slide failed, and why; the later stages
    pass it on and the slide report lists it."""
    formats.write_contours(geojson, [])
    with atomic_path(qc_png) as tmp:
        formats.write_image(tmp, np.full((64, 64, 3), 200, np.uint8), fmt=Path(qc_png).suffix)
    write_json(stats_json, {"slide_id": slide_id, "status": "failed", "reason": reason, "failed_stage": "segment",
                            "n_pieces": 0, "n_holes": 0,
                            "tissue_area_mm2": 0.0, "pen_area_mm2": 0.0, "level0_mpp": None})


def run(slide_path: str, slide_id: str, params: dict, *, geojson: str, qc_png: str, stats_json: str,
        sheet_mpp: float | None = None, default_mpp: float | None = None, mpp_range=None) -> dict:
    slide = wsi.open_slide(slide_path, slide_id)
    mpp0, mpp_source = wsi.resolve_mpp(slide, slide_id, sheet_mpp, default_mpp, mpp_range or wsi.MPP_RANGE)
    seg_mpp = params["seg_mpp"]
    level = wsi.level_for_mpp(slide, mpp0, seg_mpp, 0.0)
    level_mpp = mpp0 * slide.level_downsamples[level]
    w0, h0 = slide.dimensions
    # a level at seg_mpp (or coarser, when level 0 is) is read as it is; else downsampled on the fly
    size = slide.level_dimensions[level] if level_mpp >= seg_mpp else (
        max(1, round(w0 * mpp0 / seg_mpp)), max(1, round(h0 * mpp0 / seg_mpp)))
    unreadable: list = []  # what OpenSlide cannot decode (corrupt stored tiles): read around, as glass
    rgb = wsi.read_rgb_at(slide, size, slide_id, slide_path, unreadable)
    if unreadable:
        at = "; ".join(f"x {x}, y {y} ({w} x {h} px)" for x, y, w, h in unreadable[:5])
        print(f"ghanet segment: warning: slide {slide_id}: {len(unreadable)} region(s) OpenSlide cannot decode, "
              f"segmented as glass: level-0 {at}{'; ...' if len(unreadable) > 5 else ''}", file=sys.stderr)
        slide.close()  # a handle that met a corrupt tile answers nothing after: the QC image takes a new one
        slide = wsi.open_slide(slide_path, slide_id)
    eff_mpp = mpp0 * w0 / rgb.shape[1]  # effective after rounding
    result = segment_image(rgb, eff_mpp, params)
    # per-axis level-0 pixels per segmentation pixel (rounding makes them differ slightly)
    scale = np.array([w0 / rgb.shape[1], h0 / rgb.shape[0]])

    features = []
    for c, holes, _ in result["pieces"]:
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_ring(c, scale, (w0, h0))]
                         + [_ring(h, scale, (w0, h0)) for h in holes]},
            "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}},
        })
    for c in result["ink"]:
        features.append({
            "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(c, scale, (w0, h0))]},
            "properties": {"objectType": "annotation", "classification": {"name": "Pen"}},
        })
    px_area_mm2 = (eff_mpp / 1000.0) ** 2
    stats = {
        "slide_id": slide_id,
        "status": "ok",
        "n_pieces": len(result["pieces"]),
        "n_holes": sum(len(h) for _, h, _ in result["pieces"]),
        "tissue_area_mm2": round(sum(a for *_, a in result["pieces"]) * px_area_mm2, 6),
        "pen_area_mm2": round(result["pen_px"] * px_area_mm2, 6),
        "dropped_pieces": result["dropped_pieces"],
        "saturation_threshold": result["threshold"],
        "level0_mpp": mpp0,
        # where the resolution came from, and the default the job was given: the workflow reruns
        # a slide for a new cohort.default_mpp only when its resolution came from the default
        "mpp_source": mpp_source,
        "default_mpp_given": default_mpp,
        # provenance, carried on to the coords and features (and so into checkpoints)
        "settings": {"segment": params, "cohort": {"mpp_range": list(mpp_range or wsi.MPP_RANGE)}},
        "seg_level": level,
        "seg_mpp": eff_mpp,
        "level0_size": [w0, h0],
        "unreadable_regions": len(unreadable),
        "unreadable_at": unreadable[:50],  # level-0 x, y, w, h
    }

    qc = _qc_image(slide, rgb, features, slide_id, slide_path)
    formats.write_contours(geojson, features)
    with atomic_path(qc_png) as tmp:
        formats.write_image(tmp, qc, fmt=Path(qc_png).suffix)
    write_json(stats_json, stats)
    return stats


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    slidejob.slide_args(p)
    commands.stage_args(p)
    p.add_argument("--geojson", required=True)
    p.add_argument("--qc", required=True)
    p.add_argument("--stats", required=True)


def _one_slide(args) -> None:
    stats = run(args.slide, args.slide_id, commands.section(args, "segment"), geojson=args.geojson, qc_png=args.qc,
                stats_json=args.stats, sheet_mpp=args.mpp, default_mpp=args.default_mpp, mpp_range=args.mpp_range)
    logging.getLogger("ghanet").info("segment %s: %d piece(s), %d hole(s), %.3f mm2 tissue", args.slide_id,
                                     stats["n_pieces"], stats["n_holes"], stats["tissue_area_mm2"])


def _record(args, why: str) -> None:
    record_failure(args.slide_id, why, geojson=args.geojson, qc_png=args.qc, stats_json=args.stats)


COMMANDS = {"segment": slidejob.command(_arguments, _one_slide, outputs=("geojson", "qc", "stats"), record=_record)}
